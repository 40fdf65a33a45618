//! A short bench run against the real system: the bench binary spawns the four
//! service binaries built next to it (same profile: `cargo test --workspace` builds
//! them, `--release` the release ones), loads them for three seconds and must see no
//! error and every event consumed. Timing is never asserted: this machine is shared.

use std::process::Command;

#[test]
fn a_short_closed_loop_has_no_errors_and_consumes_everything() {
    let out = tempfile::tempdir().expect("temp dir");
    let status = Command::new(env!("CARGO_BIN_EXE_bench"))
        .args([
            "--spawn",
            "postgres",
            "--concurrency",
            "4",
            "--duration",
            "3s",
        ])
        .args(["--drain-timeout", "30s", "--require-steady", "--out"])
        .arg(out.path())
        .status()
        .expect("run bench");
    let report: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.path().join("report.json")).expect("report.json written"),
    )
    .expect("report.json parses");
    assert!(status.success(), "bench failed: {report:#}");
    assert!(
        report["answered"].as_u64().unwrap() > 0,
        "no order answered"
    );
    assert_eq!(report["errors_total"], 0, "errors: {}", report["errors"]);
    assert_eq!(
        report["drain"]["consumed"], true,
        "left: {}",
        report["drain"]
    );
    assert!(
        std::fs::read_to_string(out.path().join("report.md"))
            .expect("report.md written")
            .contains("p99.9"),
        "the Markdown report has the percentile table"
    );
}
