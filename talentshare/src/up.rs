//! `talentshare up`: the four services in one process, sharing one shutdown signal.
//!
//! Each service is built from the same `Settings` its own binary parses, so what runs
//! here is what runs in a container; only the listen address, the data directory, the
//! broker, the payment URL and the token verification are set by `up`.
//!
//! Identity: on first start `up` creates a development signing key and its JWKS in
//! the data directory; the public services verify tokens against that JWKS, and
//! `talentshare token` mints tokens with the key. payment-svc, internal, listens on
//! loopback only.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser};
use platform::auth::dev::DevIssuer;
use platform::settings::{LogFormat, SecretUrl, TelemetrySettings};

/// Flags of `talentshare up`.
#[derive(Args, Debug)]
pub struct UpArgs {
    /// Directory of the four SQLite files (created if missing).
    #[arg(long, env = "DATA_DIR", default_value = "data")]
    data_dir: PathBuf,
    /// RabbitMQ URL shared by the four services.
    #[arg(
        long,
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
        hide_env_values = true
    )]
    amqp_url: SecretUrl,
    /// Events exchange (queue names derive from it).
    #[arg(long, env = "EVENTS_EXCHANGE", default_value = "talentshare.events")]
    events_exchange: String,
    /// Address the three public gRPC servers bind (payment-svc, internal, always binds
    /// 127.0.0.1).
    #[arg(long, env = "HOST", default_value = "127.0.0.1")]
    host: IpAddr,
    /// order-svc port.
    #[arg(long, default_value_t = 50051)]
    order_port: u16,
    /// payment-svc port.
    #[arg(long, default_value_t = 50052)]
    payment_port: u16,
    /// reservation-svc port.
    #[arg(long, default_value_t = 50053)]
    reservation_port: u16,
    /// mypage-svc port.
    #[arg(long, default_value_t = 50054)]
    mypage_port: u16,
    /// First of four ports where the services serve Prometheus metrics on `--host`
    /// (order, payment, reservation, my page, in that order); 0 serves none.
    #[arg(long, default_value_t = 9461)]
    metrics_port: u16,
    /// Log filter.
    #[arg(long = "log-filter", env = "RUST_LOG", default_value = "info")]
    log_filter: String,
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
}

/// The flags every service gets from `up`. Parsing them like the binaries do applies
/// the same validation and defaults.
fn common_args(args: &UpArgs, host: IpAddr, port: u16) -> Vec<String> {
    vec![
        "--grpc-addr".into(),
        SocketAddr::new(host, port).to_string(),
        "--data-dir".into(),
        args.data_dir.display().to_string(),
        "--amqp-url".into(),
        args.amqp_url.expose().to_owned(),
        "--events-exchange".into(),
        args.events_exchange.clone(),
    ]
}

fn parse<S: Parser>(name: &str, args: Vec<String>) -> anyhow::Result<S> {
    S::try_parse_from(std::iter::once(name.to_owned()).chain(args))
        .map_err(|e| anyhow::anyhow!("{name}: {e}"))
}

/// Runs until Ctrl-C or SIGTERM, then drains all four.
pub async fn run(args: UpArgs) -> anyhow::Result<ExitCode> {
    // One process, so one resource name for all four; each span names its RPC or event.
    let telemetry = platform::telemetry::init(
        &TelemetrySettings {
            log_filter: args.log_filter.clone(),
            log_format: args.log_format,
            otlp_endpoint: std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
                .ok()
                .filter(|v| !v.trim().is_empty())
                .map(|v| platform::settings::parse_otlp_endpoint(&v))
                .transpose()
                .map_err(|e| anyhow::anyhow!(e))?,
        },
        "talentshare",
    )?;
    // payment-svc is internal: only the other services, on this machine, call it.
    let loopback = IpAddr::from([127, 0, 0, 1]);
    let payment_url = format!("http://{loopback}:{}", args.payment_port);
    let issuer = DevIssuer::load_or_create(&args.data_dir)?;
    let public = |port| {
        let mut a = common_args(&args, args.host, port);
        a.extend([
            "--auth-jwks".into(),
            DevIssuer::jwks_path(&args.data_dir).display().to_string(),
            "--auth-issuer".into(),
            issuer.issuer().to_owned(),
            "--auth-audience".into(),
            issuer.audience().to_owned(),
        ]);
        a
    };
    let with_payment = |port| {
        let mut a = public(port);
        a.extend(["--payment-url".into(), payment_url.clone()]);
        a
    };

    let mut payment: payment_svc::Settings = parse(
        "payment-svc",
        common_args(&args, loopback, args.payment_port),
    )?;
    let mut order: order_svc::Settings = parse("order-svc", with_payment(args.order_port))?;
    let mut reservation: reservation_svc::Settings =
        parse("reservation-svc", with_payment(args.reservation_port))?;
    let mut mypage: mypage_svc::Settings = parse("mypage-svc", public(args.mypage_port))?;
    // Each service owns its own database: a DATABASE_URL in the environment would make
    // the four share one, so `up` always uses the per-service SQLite files.
    payment.platform.database.database_url = None;
    order.platform.database.database_url = None;
    reservation.platform.database.database_url = None;
    mypage.platform.database.database_url = None;
    // Likewise one METRICS_ADDR in the environment would make all four bind it.
    let metrics = |offset: u16| {
        (args.metrics_port != 0).then(|| SocketAddr::new(args.host, args.metrics_port + offset))
    };
    order.platform.server.metrics_addr = metrics(0);
    payment.platform.server.metrics_addr = metrics(1);
    reservation.platform.server.metrics_addr = metrics(2);
    mypage.platform.server.metrics_addr = metrics(3);

    report_broker(&args.amqp_url).await;

    let shutdown = platform::shutdown::on_signal();
    let services = vec![
        (
            "payment",
            payment_svc::start(payment, shutdown.clone()).await?,
        ),
        ("order", order_svc::start(order, shutdown.clone()).await?),
        (
            "reservation",
            reservation_svc::start(reservation, shutdown.clone()).await?,
        ),
        ("mypage", mypage_svc::start(mypage, shutdown.clone()).await?),
    ];
    let summary: Vec<String> = services
        .iter()
        .map(|(name, s)| format!("{name} {}", s.local_addr))
        .collect();
    tracing::info!(data_dir = %args.data_dir.display(), "talentshare is up ({}); Ctrl-C to stop", summary.join(", "));

    // One service failing (or a task of it dying) takes the other three down with it
    // at once, so `up` never runs on with part of the system gone.
    let result = platform::run_together(services, shutdown).await;
    telemetry.shutdown().await;
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "talentshare up stopped");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Says in one line whether RabbitMQ answers; the services run either way.
async fn report_broker(url: &SecretUrl) {
    let attempt = tokio::time::timeout(
        Duration::from_secs(3),
        platform::amqp::connect(url, "talentshare-up-check"),
    )
    .await;
    match attempt {
        Ok(Ok(conn)) => {
            let _ = conn.close(200, "check done".into()).await;
        }
        Ok(Err(e)) => platform::amqp::report_unreachable("talentshare up", &format!("{url}: {e}")),
        Err(_) => platform::amqp::report_unreachable(
            "talentshare up",
            &format!("{url}: no answer within 3s"),
        ),
    }
}
