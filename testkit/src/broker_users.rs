//! Per-test RabbitMQ users with least privilege: a vhost of the test's own, guest as
//! its admin, and one restricted user per service with exactly the permissions of
//! `platform::amqp::Topology::permissions`, granted with the same `rabbitmqctl`
//! commands `talentshare topology --print-permissions` prints. Dropping it deletes
//! the users and the vhost (and with it every exchange and queue declared in it).
//! Needs `rabbitmqctl` on PATH with rights on the local node (root, or the rabbitmq
//! user).

use std::process::Command;

use platform::amqp::{SERVICES, ServiceAccess, Topology};

/// The events exchange inside the test's vhost: the production name, since the vhost
/// already keeps the test apart.
pub const USERS_EXCHANGE: &str = "talentshare.events";

/// Runs `rabbitmqctl args…`, panicking with its output when it fails.
fn rabbitmqctl(args: &[String]) {
    let out = Command::new("rabbitmqctl")
        .arg("-q")
        .args(args)
        .output()
        .expect("rabbitmqctl is on PATH");
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn owned(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}

/// A vhost of the test's own, with guest as its admin and one restricted user per
/// requested service. Dropping it deletes the users and the vhost (and with it every
/// exchange and queue declared in it).
pub struct BrokerUsers {
    vhost: String,
    /// service name → (user, password).
    users: Vec<(&'static ServiceAccess, String, String)>,
    /// The topology in the vhost (exchange [`USERS_EXCHANGE`]).
    pub topology: Topology,
}

impl BrokerUsers {
    /// A fresh vhost with one restricted user per service named in `services`
    /// (`order-svc`, `payment-svc`, …).
    pub fn create(services: &[&str]) -> Self {
        let id = uuid::Uuid::now_v7().simple().to_string();
        let vhost = format!("t-perm-{id}");
        let topology = Topology::new(USERS_EXCHANGE);
        // The guard exists before anything is created, so a failure half-way through
        // still cleans up what was made.
        let mut guard = Self {
            vhost: vhost.clone(),
            users: Vec::new(),
            topology: topology.clone(),
        };
        rabbitmqctl(&owned(&["add_vhost", &vhost]));
        rabbitmqctl(&owned(&[
            "set_permissions",
            "-p",
            &vhost,
            "guest",
            ".*",
            ".*",
            ".*",
        ]));
        for access in SERVICES.iter().filter(|a| services.contains(&a.service)) {
            let user = format!("t-{}-{id}", access.service);
            let password = uuid::Uuid::new_v4().simple().to_string();
            guard.users.push((access, user, password));
        }
        // One rabbitmqctl call costs about half a second; the users are independent.
        std::thread::scope(|s| {
            for (access, user, password) in &guard.users {
                let topology = &topology;
                let vhost = &vhost;
                s.spawn(move || {
                    rabbitmqctl(&owned(&["add_user", user, password]));
                    for args in topology.permissions(access).rabbitmqctl_args(vhost, user) {
                        rabbitmqctl(&args);
                    }
                });
            }
        });
        guard
    }

    fn url(&self, user: &str, password: &str) -> String {
        let mut url = url::Url::parse(&crate::amqp_url()).expect("TEST_AMQP_URL parses");
        url.set_username(user).unwrap();
        url.set_password(Some(password)).unwrap();
        url.set_path(&format!("/{}", self.vhost));
        url.to_string()
    }

    /// The vhost's admin (guest), for declaring the topology.
    pub fn admin_url(&self) -> String {
        self.url("guest", "guest")
    }

    /// The URL of `service`'s restricted user.
    pub fn service_url(&self, service: &str) -> String {
        let (_, user, password) = self
            .users
            .iter()
            .find(|(a, _, _)| a.service == service)
            .unwrap_or_else(|| panic!("no user for {service}"));
        self.url(user, password)
    }

    /// Declares the topology as the admin, as `talentshare topology` does.
    pub async fn declare_topology(&self) {
        let conn = lapin::Connection::connect(&self.admin_url(), Default::default())
            .await
            .expect("connect to the test RabbitMQ as admin");
        let ch = conn.create_channel().await.unwrap();
        self.topology.declare(&ch).await.expect("admin declares");
        conn.close(200, "declared".into()).await.unwrap();
    }
}

impl Drop for BrokerUsers {
    fn drop(&mut self) {
        // Best effort, and never panicking inside a panic: the names are unique, so
        // a leftover does not disturb other tests.
        for (_, user, _) in &self.users {
            let _ = Command::new("rabbitmqctl")
                .args(["-q", "delete_user", user])
                .output();
        }
        let _ = Command::new("rabbitmqctl")
            .args(["-q", "delete_vhost", &self.vhost])
            .output();
    }
}
