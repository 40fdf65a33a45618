//! The binary's settings: `--help` documents every knob, and a bad value stops
//! start-up with a message naming it.

const BIN: &str = env!("CARGO_BIN_EXE_mypage-svc");

#[tokio::test]
async fn help_lists_every_setting() {
    let out = std::process::Command::new(BIN)
        .arg("--help")
        .output()
        .expect("run mypage-svc --help");
    let help = String::from_utf8(out.stdout).expect("help is UTF-8");
    for env in [
        "GRPC_ADDR",
        "MAX_WATCHERS",
        "DATABASE_URL",
        "DATA_DIR",
        "DATABASE_MAX_CONNECTIONS",
        "AMQP_URL",
        "EVENTS_EXCHANGE",
        "CONSUMER_RETRY_MAX_DELAY",
        "RUST_LOG",
        "LOG_FORMAT",
        "REQUEST_TIMEOUT",
        "MAX_MESSAGE_BYTES",
        "MAX_CONCURRENT_REQUESTS",
        "SHUTDOWN_DELAY",
        "SHUTDOWN_GRACE",
        "AUTH_JWKS",
        "AUTH_ISSUER",
        "AUTH_AUDIENCE",
        "AUTH_JWKS_REFRESH",
        "AUTH_LEEWAY",
    ] {
        assert!(
            help.contains(&format!("env: {env}")),
            "--help does not list {env}:\n{help}"
        );
    }
    assert!(help.contains("0.0.0.0:50054"), "default port 50054 shown");
}

#[tokio::test]
async fn a_bad_setting_stops_start_up_with_a_message_naming_it() {
    for (env, value) in [
        ("MAX_WATCHERS", "0"),
        ("MAX_WATCHERS", "many"),
        ("GRPC_ADDR", "nowhere"),
        ("EVENTS_EXCHANGE", "bad name"),
    ] {
        let out = std::process::Command::new(BIN)
            .env_clear()
            .env(env, value)
            .output()
            .expect("run mypage-svc");
        assert!(!out.status.success(), "{env}={value} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        let flag = format!("--{}", env.to_lowercase().replace('_', "-"));
        assert!(err.contains(&flag) || err.contains(env), "{env}: {err}");
        assert!(!err.contains("panicked"), "{env}: {err}");
    }
}
