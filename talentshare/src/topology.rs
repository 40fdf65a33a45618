//! `talentshare topology`: declares the whole RabbitMQ topology (events exchange,
//! dead-letter exchange, each consumer's queue and dead-letter queue, the bindings)
//! with an admin user, once per deployment and before the services start.
//!
//! It exists for least privilege on the broker: in production each service connects
//! as its own user with no configure permission and `AMQP_DECLARE_TOPOLOGY=false`, so
//! it only checks that the topology is there. `--print-permissions <VHOST>` prints the
//! `rabbitmqctl` commands that grant those users exactly what they need, from the same
//! table the services and tests use ([`platform::amqp::SERVICES`]).

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use platform::amqp::{self, CONSUMERS, DELIVERY_LIMIT, SERVICES, Topology};
use platform::settings::{SecretUrl, parse_amqp_name};

/// How long connecting and declaring may take before the command gives up; a Job
/// or an operator retries, a hung command helps nobody.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Flags of `talentshare topology`.
#[derive(Args, Debug)]
#[command(
    about = "Declare the RabbitMQ topology (exchanges, queues, bindings) with an admin user",
    long_about = "Declare the RabbitMQ topology (exchanges, queues, bindings) with an admin user.\n\n\
        Run it once per deployment (and after upgrades) before services that run with \
        AMQP_DECLARE_TOPOLOGY=false: their own users may not declare anything. Declaring is \
        idempotent; the arguments must match what already exists. Exits 0 when everything is \
        declared, 1 with one line saying why otherwise."
)]
pub struct TopologyArgs {
    /// RabbitMQ URL of a user allowed to declare (configure, write and read on the vhost,
    /// e.g. an administrator). The value is never printed.
    #[arg(
        long,
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
        hide_env_values = true
    )]
    amqp_url: SecretUrl,
    /// Events exchange; queue and dead-letter names derive from it. Must match the
    /// services' EVENTS_EXCHANGE.
    #[arg(long, env = "EVENTS_EXCHANGE", default_value = "talentshare.events", value_parser = parse_amqp_name)]
    events_exchange: String,
    /// Do not connect: print the `rabbitmqctl` commands that give each service's own
    /// user (order-svc, payment-svc, reservation-svc, mypage-svc) its permissions on
    /// VHOST, then exit.
    #[arg(long, value_name = "VHOST")]
    print_permissions: Option<String>,
}

/// Runs the command.
pub async fn run(args: TopologyArgs) -> anyhow::Result<ExitCode> {
    let topology = Topology::new(args.events_exchange.clone());
    if let Some(vhost) = &args.print_permissions {
        print!("{}", permission_commands(&topology, vhost));
        return Ok(ExitCode::SUCCESS);
    }
    match tokio::time::timeout(TIMEOUT, declare(&args.amqp_url, &topology)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            let hint = if amqp::is_access_refused(&e) {
                " (this user may not declare: AMQP_URL must be an admin user, not a service's)"
            } else {
                ""
            };
            anyhow::bail!(
                "declaring the RabbitMQ topology on {} failed: {e}{hint}",
                args.amqp_url
            );
        }
        Err(_) => anyhow::bail!(
            "declaring the RabbitMQ topology on {} did not finish within {TIMEOUT:?}",
            args.amqp_url
        ),
    }
    println!("declared on {}:", args.amqp_url);
    print!("{}", describe(&topology));
    Ok(ExitCode::SUCCESS)
}

async fn declare(url: &SecretUrl, topology: &Topology) -> lapin::Result<()> {
    let conn = amqp::connect(url, "talentshare-topology").await?;
    let declared = async {
        let channel = conn.create_channel().await?;
        topology.declare(&channel).await
    }
    .await;
    amqp::close_quietly(&conn, "topology declared").await;
    declared
}

/// What [`Topology::declare`] declares, one line per exchange and queue.
fn describe(topology: &Topology) -> String {
    let dlx = topology.dead_letter_exchange();
    let mut out = format!(
        "  exchange {} (topic, durable)\n  exchange {dlx} (direct, durable)\n",
        topology.exchange()
    );
    for spec in CONSUMERS {
        out += &format!(
            "  queue {} (quorum; bound to {} with {}; dead-letters to {dlx} after {DELIVERY_LIMIT} deliveries)\n",
            topology.queue(spec.name),
            topology.exchange(),
            spec.bindings.join(", "),
        );
        out += &format!(
            "  queue {} (quorum; bound to {dlx} with {})\n",
            topology.dead_letter_queue(spec.name),
            spec.name,
        );
    }
    out
}

/// The `rabbitmqctl` commands granting every service user its permissions on `vhost`,
/// ready to paste into a shell.
fn permission_commands(topology: &Topology, vhost: &str) -> String {
    let mut out = format!(
        "# Permissions of the talentshare service users on vhost {}, exchange {}.\n\
         # Create each user first: rabbitmqctl add_user <user> <password>\n\
         # The services then run with AMQP_DECLARE_TOPOLOGY=false; `talentshare topology`\n\
         # declares the topology with an admin user.\n",
        shell_quote(vhost),
        topology.exchange()
    );
    for access in SERVICES {
        let publishes = access
            .publishes
            .map_or_else(|| "nothing".to_owned(), |a| format!("{a}.*"));
        let consumes = access
            .consumes
            .map_or_else(|| "nothing".to_owned(), |c| topology.queue(c));
        out += &format!(
            "# {}: publishes {publishes}, consumes {consumes}\n",
            access.service
        );
        for args in topology
            .permissions(access)
            .rabbitmqctl_args(vhost, access.service)
        {
            let line: Vec<String> = args.iter().map(|a| shell_quote(a)).collect();
            out += &format!("rabbitmqctl {}\n", line.join(" "));
        }
    }
    out
}

/// Quotes `s` for a POSIX shell when it holds anything but plain name characters
/// (the regexes hold `^`, `$` and `\`).
fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'));
    if plain {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_commands_quote_the_regexes() {
        let out = permission_commands(&Topology::new("talentshare.events"), "/");
        assert!(
            out.contains(
                r"rabbitmqctl set_permissions -p / order-svc '^$' '^talentshare\.events$' '^talentshare\.events\.order$'"
            ),
            "{out}"
        );
        assert!(
            out.contains(
                r"rabbitmqctl set_topic_permissions -p / payment-svc talentshare.events '^payment\..*' '^$'"
            ),
            "{out}"
        );
        assert!(
            out.contains("rabbitmqctl set_permissions -p / mypage-svc '^$' '^$' '^talentshare\\.events\\.mypage$'"),
            "{out}"
        );
    }

    #[test]
    fn shell_quote_leaves_names_and_quotes_the_rest() {
        assert_eq!(shell_quote("order-svc"), "order-svc");
        assert_eq!(shell_quote("^$"), "'^$'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
