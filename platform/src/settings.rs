//! Settings every service shares, parsed once at start by clap with environment
//! fallbacks. Each service flattens [`PlatformSettings`] into its own settings struct
//! and adds `GRPC_ADDR` (whose default differs per service) plus its own knobs.
//!
//! Every value is parsed into its typed form here, so a bad value stops the process
//! before it binds anything, with a message that names the setting and the value;
//! URLs, which may hold a password, are named without their value ([`SecretUrlParser`]).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, ValueEnum};

/// A URL that may carry a password. `Display` and `Debug` hide the password, so the
/// value can be logged; [`SecretUrl::expose`] hands out the real string to the one
/// place that needs it (the database driver or the AMQP client).
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(url::Url);

impl SecretUrl {
    /// The full URL, password included. Never log the result.
    pub fn expose(&self) -> &str {
        self.0.as_str()
    }

    /// The URL scheme (`postgres`, `sqlite`, `amqp`, …).
    pub fn scheme(&self) -> &str {
        self.0.scheme()
    }

    fn redacted(&self) -> String {
        let mut shown = self.0.clone();
        if shown.password().is_some() {
            // set_password only fails for URLs that cannot have one, which we ruled out above.
            let _ = shown.set_password(Some("***"));
        }
        shown.to_string()
    }
}

impl FromStr for SecretUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // The message must not echo the input: it may hold a password.
        url::Url::parse(s)
            .map(SecretUrl)
            .map_err(|e| format!("not a valid URL ({e})"))
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretUrl({})", self.redacted())
    }
}

/// clap's value parser for [`SecretUrl`]; clap picks it for every `SecretUrl`
/// argument through [`clap::builder::ValueParserFactory`], so no field needs to name it.
///
/// It exists because clap's own error for a value that fails to parse quotes the raw
/// value ("invalid value 'postgres://app:pw@…' for '--database-url'"), password
/// included, onto stderr and into log collectors. This one names the setting, its
/// environment variable and why the value is bad, never the value.
#[derive(Clone, Copy, Debug, Default)]
pub struct SecretUrlParser;

impl clap::builder::TypedValueParser for SecretUrlParser {
    type Value = SecretUrl;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<SecretUrl, clap::Error> {
        let why = match value.to_str() {
            Some(s) => match s.parse::<SecretUrl>() {
                Ok(url) => return Ok(url),
                Err(why) => why,
            },
            None => "not valid UTF-8".to_owned(),
        };
        let name = match arg {
            Some(arg) => {
                let flag = arg
                    .get_long()
                    .map_or_else(|| arg.get_id().to_string(), |l| format!("--{l}"));
                match arg.get_env() {
                    Some(env) => format!("'{flag}' (env {})", env.to_string_lossy()),
                    None => format!("'{flag}'"),
                }
            }
            None => "a URL argument".to_owned(),
        };
        Err(clap::Error::raw(
            clap::error::ErrorKind::ValueValidation,
            format!(
                "invalid value for {name}: {why}; the value is not shown, it may hold a password\n"
            ),
        )
        .with_cmd(cmd))
    }
}

impl clap::builder::ValueParserFactory for SecretUrl {
    type Parser = SecretUrlParser;

    fn value_parser() -> Self::Parser {
        SecretUrlParser
    }
}

/// Parses a duration with its unit: `250ms`, `10s`, `2m`, `24h`, `1h 30m` (the
/// `humantime` grammar). A bare number is refused: "10" could mean anything.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("`{s}` is not a duration ({e}); use e.g. 500ms, 10s, 2m, 24h"))
}

/// Names on the broker: letters, digits, `.`, `_`, `-`; at most 200 bytes so derived
/// queue names stay under AMQP's 255-byte limit. Public for `talentshare topology`,
/// which must accept exactly the `EVENTS_EXCHANGE` values the services accept.
pub fn parse_amqp_name(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > 200 {
        return Err("must be 1 to 200 characters".into());
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err("may only hold letters, digits, '.', '_' and '-'".into());
    }
    Ok(s.to_owned())
}

/// Output format of the logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines for a terminal.
    Human,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Logging and tracing settings.
#[derive(Args, Clone, Debug)]
pub struct TelemetrySettings {
    /// Log filter in `tracing` EnvFilter syntax, e.g. `info` or `info,payment_svc=debug`.
    #[arg(long = "log-filter", env = "RUST_LOG", default_value = "info", value_parser = parse_filter)]
    pub log_filter: String,
    /// Log output format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
    /// OTLP/gRPC collector to export spans to (e.g. `http://otel-collector:4317`);
    /// unset, nothing is exported. The other standard `OTEL_*` variables apply too
    /// (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` wins over this one).
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_parser = parse_otlp_endpoint)]
    pub otlp_endpoint: Option<String>,
}

pub fn parse_otlp_endpoint(s: &str) -> Result<String, String> {
    let url = url::Url::parse(s).map_err(|e| format!("OTEL_EXPORTER_OTLP_ENDPOINT {s}: {e}"))?;
    // The exporter is built without TLS: inside a mesh the sidecar adds mTLS to a
    // plaintext http:// connection; an https:// collector would fail at start.
    if url.scheme() != "http" || url.host_str().is_none() || url.port().is_none() {
        return Err(format!(
            "OTEL_EXPORTER_OTLP_ENDPOINT {s}: expected http://host:port (OTLP/gRPC, usually port 4317; https is not built in)"
        ));
    }
    Ok(s.to_owned())
}

fn parse_filter(s: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::try_new(s)
        .map(|_| s.to_owned())
        .map_err(|e| e.to_string())
}

/// gRPC server limits and the shutdown sequence.
#[derive(Args, Clone, Debug)]
pub struct ServerSettings {
    /// Deadline for one unary call on the server side; a shorter client `grpc-timeout` wins.
    #[arg(long, env = "REQUEST_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// Largest accepted or sent gRPC message, in bytes.
    #[arg(long, env = "MAX_MESSAGE_BYTES", default_value_t = 1024 * 1024,
          value_parser = clap::value_parser!(u32).range(1024..=64 * 1024 * 1024))]
    pub max_message_bytes: u32,
    /// Where to serve Prometheus metrics (`GET /metrics`, OpenMetrics text); unset,
    /// none are served. The chart sets `0.0.0.0:9464`.
    #[arg(long, env = "METRICS_ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// In-flight calls allowed per client connection; more wait for a slot.
    #[arg(long, env = "MAX_CONCURRENT_REQUESTS", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_concurrent_requests: u32,
    /// After SIGTERM, how long readiness reports NOT_SERVING before the listener closes,
    /// so load balancers stop sending new calls (set to a few seconds on Kubernetes).
    #[arg(long, env = "SHUTDOWN_DELAY", default_value = "0s", value_parser = parse_duration)]
    pub shutdown_delay: Duration,
    /// Deadline for draining in-flight calls, the consumer and the outbox relay on shutdown.
    #[arg(long, env = "SHUTDOWN_GRACE", default_value = "20s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
    /// Browser origins that may call this service over gRPC-Web, comma-separated
    /// (`https://app.example.com,http://localhost:8080`): CORS answers name only these.
    /// Empty (the default): none, which leaves same-origin pages and every non-browser
    /// client unaffected. Public services only; never `*`.
    #[arg(long, env = "CORS_ALLOWED_ORIGINS", value_delimiter = ',', value_parser = parse_origin)]
    pub cors_allowed_origins: Vec<String>,
}

/// One browser origin, `scheme://host[:port]`, in its canonical form.
pub fn parse_origin(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s == "*" {
        return Err("`*` is not allowed: list each origin".into());
    }
    let url = url::Url::parse(s).map_err(|e| format!("`{s}` is not an origin ({e})"))?;
    let bare = matches!(url.scheme(), "http" | "https")
        && url.username().is_empty()
        && url.password().is_none()
        && url.path() == "/"
        && !s.ends_with('/')
        && url.query().is_none()
        && url.fragment().is_none();
    if !bare {
        return Err(format!(
            "`{s}` is not an origin: expected http(s)://host[:port], nothing after it"
        ));
    }
    Ok(url.origin().ascii_serialization())
}

/// Where the service keeps its data.
#[derive(Args, Clone, Debug)]
pub struct DatabaseSettings {
    /// Database URL: `postgres://user:password@host/db` or `sqlite://path/file.db`.
    /// Unset: a SQLite file named after the service under DATA_DIR.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<SecretUrl>,
    /// Directory for the default SQLite files.
    #[arg(long, env = "DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    /// How often readiness re-checks that the database answers (NOT_SERVING while it
    /// does not).
    #[arg(long, env = "DATABASE_CHECK_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub database_check_interval: Duration,
    /// Connection pool size (PostgreSQL; SQLite always uses one writer connection).
    /// Every replica may hold this many connections at once: on Kubernetes the chart
    /// sets it and checks replicas × pool size against the server's budget.
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub database_max_connections: u32,
    /// How long a pooled connection may sit unused before the pool closes it
    /// (PostgreSQL), so a pool that grew under a burst gives its connections back.
    #[arg(long, env = "DATABASE_IDLE_TIMEOUT", default_value = "1m", value_parser = parse_pool_duration)]
    pub database_idle_timeout: Duration,
    /// Longest life of a pooled connection (PostgreSQL), used or not. Needed besides
    /// the idle timeout: the pool hands out its idle connections oldest first, so the
    /// service's own periodic queries (outbox poll, readiness check) touch every one
    /// in turn and none ever counts as idle; retiring them by age lets the pool shrink
    /// to what the load needs.
    #[arg(long, env = "DATABASE_MAX_LIFETIME", default_value = "5m", value_parser = parse_pool_duration)]
    pub database_max_lifetime: Duration,
}

/// The shortest and longest idle timeout or lifetime a pool accepts: below a second
/// the pool would reconnect all the time, and past a day it would never shrink.
const POOL_DURATIONS: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_secs(24 * 60 * 60);

fn parse_pool_duration(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if POOL_DURATIONS.contains(&d) {
        Ok(d)
    } else {
        Err(format!("`{s}` is out of range: use 1s to 24h"))
    }
}

/// How a PostgreSQL pool grows and shrinks ([`crate::db::connect_url`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolSettings {
    /// Most connections open at once.
    pub max_connections: u32,
    /// An unused connection is closed after this long.
    pub idle_timeout: Duration,
    /// Any connection is closed (when next returned or checked) after this long.
    pub max_lifetime: Duration,
}

impl Default for PoolSettings {
    /// The defaults of the `DATABASE_*` settings (a test checks they agree).
    fn default() -> Self {
        Self {
            max_connections: 10,
            idle_timeout: Duration::from_secs(60),
            max_lifetime: Duration::from_secs(5 * 60),
        }
    }
}

/// How the service reaches RabbitMQ and what it calls things there.
#[derive(Args, Clone, Debug)]
pub struct MessagingSettings {
    /// RabbitMQ URL (AMQP 0-9-1); the vhost is URL-encoded, `%2f` is `/`.
    #[arg(
        long,
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
        hide_env_values = true
    )]
    pub amqp_url: SecretUrl,
    /// Topic exchange for domain events. Queue and dead-letter names derive from it, so a
    /// different value gives a fully separate topology (used by tests).
    #[arg(long, env = "EVENTS_EXCHANGE", default_value = "talentshare.events", value_parser = parse_amqp_name)]
    pub events_exchange: String,
    /// Whether this service declares the RabbitMQ topology (exchanges, queues, bindings)
    /// when it connects. Set to false when its AMQP user has no configure permission:
    /// it then only checks that the topology exists, and until `talentshare topology`
    /// has declared it (with an admin user) it logs what is missing and retries.
    #[arg(long, env = "AMQP_DECLARE_TOPOLOGY", default_value_t = true,
          action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub amqp_declare_topology: bool,
    /// How often the outbox relay looks for unpublished events when nothing woke it.
    #[arg(long, env = "OUTBOX_POLL_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub outbox_poll_interval: Duration,
    /// Most events the relay publishes per batch.
    #[arg(long, env = "OUTBOX_BATCH_SIZE", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub outbox_batch_size: u32,
    /// Longest pause before a consumer retries a message that failed for a transient
    /// reason (pauses double from 1/50 of this). After the queue's delivery limit
    /// the message goes to the dead-letter queue.
    #[arg(long, env = "CONSUMER_RETRY_MAX_DELAY", default_value = "5s", value_parser = parse_duration)]
    pub consumer_retry_max_delay: Duration,
    /// Deliveries a consumer holds unacknowledged at once (AMQP prefetch). Those
    /// already waiting when it takes the next one are applied together, in one
    /// database transaction and one acknowledgement, so a backlog drains in batches
    /// while a quiet queue still handles each event as it arrives.
    #[arg(long, env = "CONSUMER_PREFETCH", default_value_t = 64,
          value_parser = clap::value_parser!(u16).range(1..=1_000))]
    pub consumer_prefetch: u16,
}

/// Everything a service needs from the platform, flattened into its own settings.
#[derive(Args, Clone, Debug)]
pub struct PlatformSettings {
    #[command(flatten)]
    pub telemetry: TelemetrySettings,
    #[command(flatten)]
    pub server: ServerSettings,
    #[command(flatten)]
    pub database: DatabaseSettings,
    #[command(flatten)]
    pub messaging: MessagingSettings,
}

impl DatabaseSettings {
    /// The pool's size and how it shrinks.
    pub fn pool(&self) -> PoolSettings {
        PoolSettings {
            max_connections: self.database_max_connections,
            idle_timeout: self.database_idle_timeout,
            max_lifetime: self.database_max_lifetime,
        }
    }

    /// The URL to connect to: the configured one, or `sqlite://<DATA_DIR>/<slug>.db`.
    pub fn url_for(&self, slug: &str) -> anyhow::Result<SecretUrl> {
        if let Some(url) = &self.database_url {
            return match url.scheme() {
                "postgres" | "postgresql" | "sqlite" => Ok(url.clone()),
                other => anyhow::bail!(
                    "DATABASE_URL: unsupported scheme `{other}` (use postgres:// or sqlite://)"
                ),
            };
        }
        let path = self.data_dir.join(format!("{slug}.db"));
        let url = format!("sqlite://{}?mode=rwc", path.display());
        url.parse()
            .map_err(|e| anyhow::anyhow!("DATA_DIR: `{}` {e}", self.data_dir.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cors_origin_is_a_bare_http_origin_never_a_wildcard() {
        assert_eq!(
            parse_origin(" https://App.Example.com:8443 "),
            Ok("https://app.example.com:8443".to_owned())
        );
        assert_eq!(
            parse_origin("http://127.0.0.1:8123"),
            Ok("http://127.0.0.1:8123".to_owned())
        );
        for bad in [
            "*",
            "https://x.example/path",
            "https://x.example/",
            "https://x.example?q=1",
            "https://user:pw@x.example",
            "ftp://x.example",
            "x.example",
        ] {
            assert!(parse_origin(bad).is_err(), "{bad}");
        }
    }
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Probe {
        #[command(flatten)]
        platform: PlatformSettings,
    }

    #[test]
    fn secret_url_hides_the_password_in_display_and_debug() {
        let url: SecretUrl = "postgres://app:hunter2@db:5432/orders".parse().unwrap();
        assert!(!url.to_string().contains("hunter2"));
        assert!(!format!("{url:?}").contains("hunter2"));
        assert!(url.expose().contains("hunter2"));
    }

    #[test]
    fn durations_accept_units_and_reject_garbage() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("75").is_err(), "a unit is required");
        assert!(parse_duration("ten").is_err());
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert!(parse_duration("5x").is_err());
    }

    #[test]
    fn defaults_parse_with_no_arguments() {
        let p = Probe::try_parse_from(["x"]).unwrap();
        assert_eq!(p.platform.messaging.events_exchange, "talentshare.events");
        let url = p.platform.database.url_for("payment").unwrap();
        assert_eq!(url.expose(), "sqlite://data/payment.db?mode=rwc");
    }

    #[test]
    fn a_bad_value_names_the_setting() {
        let err = Probe::try_parse_from(["x", "--request-timeout", "soon"]).unwrap_err();
        assert!(err.to_string().contains("--request-timeout"), "{err}");
        let err = Probe::try_parse_from(["x", "--events-exchange", "bad name"]).unwrap_err();
        assert!(err.to_string().contains("--events-exchange"), "{err}");
        let err = Probe::try_parse_from(["x", "--max-message-bytes", "10"]).unwrap_err();
        assert!(err.to_string().contains("--max-message-bytes"), "{err}");
    }

    /// A URL that fails to parse (a space in the host) and carries a password.
    const BAD_URL: &str = "postgres://app:hunter2@db server:5432/orders";

    #[test]
    fn a_bad_url_flag_is_reported_by_name_never_by_value() {
        for flag in ["--database-url", "--amqp-url"] {
            let err = Probe::try_parse_from(["x", flag, BAD_URL]).unwrap_err();
            let shown = err.render().to_string();
            assert!(shown.contains(flag), "{shown}");
            assert!(shown.contains("not a valid URL"), "{shown}");
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(!shown.contains("db server"), "{shown}");
            assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
        }
    }

    #[test]
    fn declare_topology_defaults_to_true_and_accepts_false() {
        let p = Probe::try_parse_from(["x"]).unwrap();
        assert!(p.platform.messaging.amqp_declare_topology);
        let p = Probe::try_parse_from(["x", "--amqp-declare-topology", "false"]).unwrap();
        assert!(!p.platform.messaging.amqp_declare_topology);
        assert!(Probe::try_parse_from(["x", "--amqp-declare-topology", "maybe"]).is_err());
    }

    #[test]
    fn pool_defaults_agree_with_the_flags() {
        let p = Probe::try_parse_from(["x"]).unwrap();
        assert_eq!(p.platform.database.pool(), PoolSettings::default());
    }

    #[test]
    fn pool_durations_out_of_range_are_rejected_by_name() {
        let p = Probe::try_parse_from(["x", "--database-idle-timeout", "2s"]).unwrap();
        assert_eq!(
            p.platform.database.pool().idle_timeout,
            Duration::from_secs(2)
        );
        for (flag, bad) in [
            ("--database-idle-timeout", "0s"),
            ("--database-idle-timeout", "500ms"),
            ("--database-max-lifetime", "2d"),
            ("--database-max-lifetime", "soon"),
        ] {
            let err = Probe::try_parse_from(["x", flag, bad]).unwrap_err();
            assert!(err.to_string().contains(flag), "{flag} {bad}: {err}");
        }
    }

    #[test]
    fn unsupported_database_scheme_is_rejected_by_name() {
        let p = Probe::try_parse_from(["x", "--database-url", "mysql://u:p@h/db"]).unwrap();
        let err = p.platform.database.url_for("payment").unwrap_err();
        assert!(err.to_string().contains("DATABASE_URL"));
        assert!(!err.to_string().contains(":p@"));
    }
}
