//! Short bench runs against the real system: the bench binary spawns the four service
//! binaries built next to it (same profile: `cargo test --workspace` builds them,
//! `--release` the release ones), loads them for a few seconds and must see no
//! error, every event consumed, every lag sample reach its final state on my page,
//! a chart and (on PostgreSQL) reference figures. Timing is never asserted: this
//! machine is shared.

use std::path::Path;
use std::process::Command;

/// Runs the bench with `args`, its report going to `out`; returns report.json after
/// checking what every run must show.
fn bench(out: &Path, args: &[&str]) -> serde_json::Value {
    let status = Command::new(env!("CARGO_BIN_EXE_bench"))
        .args(args)
        .args(["--drain-timeout", "30s", "--require-steady", "--out"])
        .arg(out)
        .status()
        .expect("run bench");
    let report: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.join("report.json")).expect("report.json written"),
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
    let lag = &report["lag"];
    assert!(lag["samples"].as_u64().unwrap() > 0, "no lag sample: {lag}");
    assert_eq!(lag["never_reached"], 0, "lag: {lag}");
    assert_eq!(lag["reached"], lag["samples"], "lag: {lag}");
    let chart = std::fs::read_to_string(out.join("chart.svg")).expect("chart.svg written");
    assert!(chart.starts_with("<svg") && chart.trim_end().ends_with("</svg>"));
    let markdown = std::fs::read_to_string(out.join("report.md")).expect("report.md written");
    assert!(
        markdown.contains("p99.9"),
        "the Markdown report has the percentile table"
    );
    assert!(
        markdown.contains("(chart.svg)"),
        "the Markdown report links the chart"
    );
    report
}

#[test]
fn a_short_closed_loop_has_no_errors_and_consumes_everything() {
    let out = tempfile::tempdir().expect("temp dir");
    let report = bench(
        out.path(),
        &[
            "--spawn",
            "postgres",
            "--concurrency",
            "4",
            "--duration",
            "3s",
            // Short: the reference step runs before the load and delays it.
            "--reference-duration",
            "200ms",
        ],
    );
    let reference = &report["reference"];
    assert!(
        reference["echo_latency_ms"]["p50"].as_f64().unwrap() > 0.0
            && reference["echo_per_second"].as_f64().unwrap() > 0.0
            && reference["pg"]["commits_per_second_1"].as_f64().unwrap() > 0.0
            && reference["pg"]["commits_per_second_n"].as_f64().unwrap() > 0.0,
        "reference: {reference}"
    );
    assert!(
        report["ratios"]["placeorder_p50_over_echo_p50"]
            .as_f64()
            .unwrap()
            > 0.0
            && report["ratios"]["orders_per_pg_commit"].as_f64().unwrap() > 0.0,
        "ratios: {}",
        report["ratios"]
    );
    // Each order commits at least three times that no batching can merge: its
    // insert and its settlement in order-svc, its payment in payment-svc.
    let cost = &report["cost"];
    assert!(
        cost["pg_commits_per_order"].as_f64().unwrap() >= 3.0
            && cost["cpu_ms_per_order"].as_f64().unwrap() > 0.0
            && cost["cpu_ms_by_part"]["PostgreSQL"].as_f64().unwrap() > 0.0
            && cost["cpu_ms_by_part"]["order-svc"].as_f64().unwrap() > 0.0,
        "cost: {cost}"
    );
    for (name, p) in report["processes"].as_object().unwrap() {
        assert!(p["rss_mib_start"].as_f64().unwrap() > 0.0, "{name}: {p}");
    }
}

#[test]
fn a_mixed_story_on_sqlite_has_no_errors_and_consumes_everything() {
    let out = tempfile::tempdir().expect("temp dir");
    let report = bench(
        out.path(),
        &[
            "--spawn",
            "sqlite",
            "--story",
            "mixed",
            "--concurrency",
            "4",
            "--duration",
            "3s",
            "--no-reference",
        ],
    );
    assert_eq!(
        report["story_errors_total"], 0,
        "errors: {}",
        report["rpcs"]
    );
    assert!(report["reference"].is_null(), "--no-reference skips it");
    assert!(
        report["samples"][0]["outbox"].as_object().unwrap().len() == 4,
        "the SQLite outboxes are sampled: {}",
        report["samples"][0]
    );
    assert!(
        report["cost"]["cpu_ms_per_order"].as_f64().unwrap() > 0.0
            && report["cost"]["pg_commits_per_order"].is_null(),
        "on SQLite the cost has CPU and no commit count: {}",
        report["cost"]
    );
}
