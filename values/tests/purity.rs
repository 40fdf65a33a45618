//! Purity held by the compiler's inputs, not by discipline: this crate depends on no
//! runtime, network or database crate (checked on the resolved dependency graph,
//! transitively), and the four services' domain cores reach nothing of the platform,
//! storage or wire besides this crate.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Crates whose presence means I/O: an async runtime, gRPC, HTTP, a database, a broker.
const FORBIDDEN_CRATES: &[&str] = &[
    "tokio", "tonic", "hyper", "h2", "mio", "sea-orm", "sqlx", "lapin", "reqwest", "platform",
];

/// Paths a domain core must never name: the runtime, storage, the broker, the wire
/// types (messages are converted at the edge), and the service's own adapters.
const FORBIDDEN_IN_DOMAIN: &[&str] = &[
    "platform::",
    "sea_orm",
    "tonic",
    "lapin",
    "tokio",
    "talentshare_proto",
    "prost",
    "crate::store",
    "crate::grpc",
    "crate::events",
    "crate::consumer",
    "crate::payment",
];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace holds this crate")
        .to_path_buf()
}

#[test]
fn the_values_crate_depends_on_nothing_that_does_io() {
    // `cargo tree` resolves for this machine's target only (no download of crates for
    // other platforms), over normal dependencies, transitively.
    let out = Command::new(env!("CARGO"))
        .args([
            "tree",
            "-p",
            "talentshare-values",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--offline",
            "--locked",
        ])
        .current_dir(workspace_root())
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "cargo tree: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8_lossy(&out.stdout);
    let deps: HashSet<&str> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert!(deps.contains("chrono"), "the tree was read: {deps:?}");
    let found: Vec<&&str> = FORBIDDEN_CRATES
        .iter()
        .filter(|c| deps.contains(**c))
        .collect();
    assert!(found.is_empty(), "talentshare-values pulls in {found:?}");
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable directory") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn the_domain_cores_use_only_pure_crates() {
    let root = workspace_root();
    let mut checked = 0;
    for service in ["order-svc", "payment-svc", "reservation-svc", "mypage-svc"] {
        let mut files = Vec::new();
        rust_files(&root.join(service).join("src").join("domain"), &mut files);
        assert!(!files.is_empty(), "{service} has a domain core");
        for file in files {
            let text = std::fs::read_to_string(&file).expect("readable source");
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                for forbidden in FORBIDDEN_IN_DOMAIN {
                    assert!(
                        !code.contains(forbidden),
                        "{}:{}: the domain core names `{forbidden}`: {line}",
                        file.display(),
                        n + 1
                    );
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 5, "{checked} domain files checked");
}
