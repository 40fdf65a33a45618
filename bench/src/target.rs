//! The system under load: either spawned here through [`e2e::System`] (own databases,
//! own exchange, a test identity, torn down at the end) or services already running
//! on this machine. Either way it hands out order-svc and mypage-svc clients, one
//! pair per customer, each with that customer's token, a manager's reservation-svc
//! client for the mixed story, and says what can be sampled (queues, outboxes,
//! processes).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use e2e::{Svc, System};
use platform::auth::dev::{DevIssuer, TokenSpec};
use talentshare_proto::mypage::my_page_service_client::MyPageServiceClient;
use talentshare_proto::order::order_service_client::OrderServiceClient;
use talentshare_proto::reservation::reservation_service_client::ReservationServiceClient;
use testkit::{AuthChannel, Bearer};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::load::TALENTS;
use crate::settings::{BenchArgs, Spawn, Story};

/// How many distinct customers the load spreads over: enough that no customer's rows
/// are a hot spot, few enough that minting their tokens up front is instant.
pub const CUSTOMERS: usize = 200;

/// How many HTTP/2 connections the clients share: a real client population opens
/// many; one connection would serialise every frame through one socket.
pub const CONNECTIONS: usize = 8;

/// The manager's id: the subject of its token, which manages every talent the load
/// books.
const MANAGER_ID: &str = "bench-manager";

/// Tokens live this long: longer than any bench, since a WatchMyPage stream ends
/// when the token that opened it expires.
const TOKEN_TTL: Duration = Duration::from_secs(6 * 3600);

/// One customer's clients; `id` is empty when the token's subject is used.
#[derive(Clone)]
pub struct Customer {
    pub id: String,
    pub client: OrderServiceClient<AuthChannel>,
    pub mypage: MyPageServiceClient<AuthChannel>,
}

/// Every client the load uses.
pub struct Clients {
    pub customers: Vec<Customer>,
    /// A manager of every talent the load books; only for `--story mixed`.
    pub manager: Option<ReservationServiceClient<AuthChannel>>,
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
    pub async fn open(args: &BenchArgs) -> anyhow::Result<(Target, Clients)> {
        if let Some(spawn) = args.spawn {
            let system = match spawn {
                Spawn::Postgres => System::start().await,
                Spawn::Sqlite => System::start_sqlite().await,
            };
            let addrs = Addrs {
                order: system.addr(Svc::Order),
                mypage: system.addr(Svc::MyPage),
                reservation: Some(system.addr(Svc::Reservation)),
            };
            let issuer = system.identity().issuer();
            let customers = customers(&addrs, |id| {
                issuer.mint(&TokenSpec::customer(id), TOKEN_TTL)
            })?;
            let manager = manager(args, &addrs, || issuer.mint(&manager_spec(), TOKEN_TTL))?;
            let clients = Clients { customers, manager };
            return Ok((Target::Spawned(Box::new(system)), clients));
        }
        let addrs = Addrs {
            order: args
                .target_order
                .context("--target-order or --spawn is required")?,
            mypage: args
                .target_mypage
                .context("--target-mypage goes with --target-order")?,
            reservation: args.target_reservation,
        };
        // Read lazily: a run with `--token` and the place story needs no key.
        let issuer = || {
            DevIssuer::load_or_create(&args.data_dir).with_context(|| {
                format!(
                    "reading the development key under {}",
                    args.data_dir.display()
                )
            })
        };
        let customers = match &args.token {
            Some(token) => {
                // One customer: the token's subject (an empty customer_id means "the
                // caller"), so the bench need not parse the token.
                let (order, mypage) = (channels(addrs.order)?, channels(addrs.mypage)?);
                order
                    .into_iter()
                    .zip(mypage)
                    .map(|(order, mypage)| Customer {
                        id: String::new(),
                        client: OrderServiceClient::new(InterceptedService::new(
                            order,
                            Bearer::new(token),
                        )),
                        mypage: MyPageServiceClient::new(InterceptedService::new(
                            mypage,
                            Bearer::new(token),
                        )),
                    })
                    .collect()
            }
            None => {
                let issuer = issuer()?;
                customers(&addrs, |id| {
                    issuer.mint(&TokenSpec::customer(id), TOKEN_TTL)
                })?
            }
        };
        let manager = manager(args, &addrs, || issuer()?.mint(&manager_spec(), TOKEN_TTL))?;
        Ok((Target::Running, Clients { customers, manager }))
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

/// Where the services the load calls listen.
struct Addrs {
    order: SocketAddr,
    mypage: SocketAddr,
    reservation: Option<SocketAddr>,
}

/// The manager's token claims: every talent the load books.
fn manager_spec() -> TokenSpec {
    let talents: Vec<String> = (0..TALENTS).map(|i| format!("talent-{i}")).collect();
    let talents: Vec<&str> = talents.iter().map(String::as_str).collect();
    TokenSpec::manager(MANAGER_ID, &talents)
}

fn channels(addr: SocketAddr) -> anyhow::Result<Vec<Channel>> {
    (0..CONNECTIONS)
        .map(|_| {
            Ok(Channel::from_shared(format!("http://{addr}"))?
                .connect_timeout(Duration::from_secs(2))
                .connect_lazy())
        })
        .collect()
}

fn customers(
    addrs: &Addrs,
    mut mint: impl FnMut(&str) -> anyhow::Result<String>,
) -> anyhow::Result<Vec<Customer>> {
    let (order, mypage) = (channels(addrs.order)?, channels(addrs.mypage)?);
    (0..CUSTOMERS)
        .map(|i| {
            let id = format!("bench-c{i}");
            let token = mint(&id)?;
            let with_token = |ch: &[Channel]| {
                InterceptedService::new(ch[i % ch.len()].clone(), Bearer::new(&token))
            };
            Ok(Customer {
                client: OrderServiceClient::new(with_token(&order)),
                mypage: MyPageServiceClient::new(with_token(&mypage)),
                id,
            })
        })
        .collect()
}

/// The manager's client, for the mixed story only.
fn manager(
    args: &BenchArgs,
    addrs: &Addrs,
    mint: impl FnOnce() -> anyhow::Result<String>,
) -> anyhow::Result<Option<ReservationServiceClient<AuthChannel>>> {
    if args.story != Story::Mixed {
        return Ok(None);
    }
    let addr = addrs
        .reservation
        .context("--story mixed against running services needs --target-reservation")?;
    let channel = channels(addr)?.remove(0);
    Ok(Some(ReservationServiceClient::new(
        InterceptedService::new(channel, Bearer::new(&mint()?)),
    )))
}
