//! The system under load: either spawned here through [`e2e::System`] (own databases,
//! own exchange, a test identity, torn down at the end) or services already running
//! on this machine. Either way it hands out order-svc clients, one per customer, each
//! with that customer's token, and says what can be sampled (queues, outboxes,
//! processes).

use std::time::Duration;

use anyhow::Context;
use e2e::{Svc, System};
use platform::auth::dev::{DevIssuer, TokenSpec};
use talentshare_proto::order::order_service_client::OrderServiceClient;
use testkit::{AuthChannel, Bearer};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::settings::BenchArgs;

/// How many distinct customers the load spreads over: enough that no customer's rows
/// are a hot spot, few enough that minting their tokens up front is instant.
pub const CUSTOMERS: usize = 200;

/// How many HTTP/2 connections the clients share: a real client population opens
/// many; one connection would serialise every frame through one socket.
const CONNECTIONS: usize = 8;

/// One customer's order-svc client; `id` is empty when the token's subject is used.
#[derive(Clone)]
pub struct Customer {
    pub id: String,
    pub client: OrderServiceClient<AuthChannel>,
}

/// The system being measured.
pub enum Target {
    Spawned(Box<System>),
    Running,
}

impl Target {
    /// Starts or connects to the system the arguments name, and builds the customers'
    /// clients.
    ///
    /// # Errors
    /// When the development key cannot be read, or an address is not a valid URI.
    pub async fn open(args: &BenchArgs) -> anyhow::Result<(Target, Vec<Customer>)> {
        if args.spawn.is_some() {
            let system = System::start().await;
            let order = system.addr(Svc::Order);
            let identity = system.identity().clone();
            let customers = customers(order, |id| Ok(identity.customer(id)))?;
            return Ok((Target::Spawned(Box::new(system)), customers));
        }
        let order = args
            .target_order
            .context("--target-order or --spawn is required")?;
        let customers = match &args.token {
            Some(token) => {
                // One customer: the token's subject (an empty customer_id means "the
                // caller"), so the bench need not parse the token.
                let channels = channels(order)?;
                channels
                    .into_iter()
                    .map(|ch| Customer {
                        id: String::new(),
                        client: OrderServiceClient::new(InterceptedService::new(
                            ch,
                            Bearer::new(token),
                        )),
                    })
                    .collect()
            }
            None => {
                let issuer = DevIssuer::load_or_create(&args.data_dir).with_context(|| {
                    format!(
                        "reading the development key under {}",
                        args.data_dir.display()
                    )
                })?;
                customers(order, |id| {
                    issuer.mint(&TokenSpec::customer(id), Duration::from_secs(3600))
                })?
            }
        };
        Ok((Target::Running, customers))
    }

    /// The spawned system, if this run started one.
    pub fn system(&self) -> Option<&System> {
        match self {
            Target::Spawned(s) => Some(s),
            Target::Running => None,
        }
    }

    /// Stops a spawned system and removes its databases and topology.
    pub async fn close(self) {
        if let Target::Spawned(system) = self {
            system.shutdown().await;
        }
    }
}

fn channels(addr: std::net::SocketAddr) -> anyhow::Result<Vec<Channel>> {
    (0..CONNECTIONS)
        .map(|_| {
            Ok(Channel::from_shared(format!("http://{addr}"))?
                .connect_timeout(Duration::from_secs(2))
                .connect_lazy())
        })
        .collect()
}

fn customers(
    order: std::net::SocketAddr,
    mut mint: impl FnMut(&str) -> anyhow::Result<String>,
) -> anyhow::Result<Vec<Customer>> {
    let channels = channels(order)?;
    (0..CUSTOMERS)
        .map(|i| {
            let id = format!("bench-c{i}");
            let token = mint(&id)?;
            let channel = channels[i % channels.len()].clone();
            Ok(Customer {
                client: OrderServiceClient::new(InterceptedService::new(
                    channel,
                    Bearer::new(&token),
                )),
                id,
            })
        })
        .collect()
}
