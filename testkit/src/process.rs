//! Runs a service binary as a real process: captures its output, finds the address
//! it listens on from its JSON log line, and sends it signals.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A service process started by a test.
pub struct ServiceProcess {
    child: Child,
    /// Where its gRPC server listens.
    pub addr: SocketAddr,
    output: Arc<Mutex<String>>,
}

impl ServiceProcess {
    /// Starts `bin` with `envs` added to a clean environment (plus PATH), JSON logs,
    /// and `GRPC_ADDR=127.0.0.1:0`; waits for its "listening" log line.
    pub async fn spawn(bin: &str, envs: &[(&str, String)]) -> Self {
        let mut cmd = Command::new(bin);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("LOG_FORMAT", "json")
            // The "listening" line (DEBUG) says which port 0 became.
            .env("RUST_LOG", "info,platform::host=debug")
            .env("GRPC_ADDR", "127.0.0.1:0")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {bin}: {e}"));
        let output = Arc::new(Mutex::new(String::new()));
        let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
        let mut addr_tx = Some(addr_tx);
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let out = output.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains("\"listening\"")
                    && let Some(addr) = json_field(&line, "addr")
                    && let Some(tx) = addr_tx.take()
                {
                    let _ = tx.send(addr);
                }
                out.lock().unwrap().push_str(&line);
                out.lock().unwrap().push('\n');
            }
        });
        let err = output.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                err.lock().unwrap().push_str(&line);
                err.lock().unwrap().push('\n');
            }
        });
        let addr = match tokio::time::timeout(Duration::from_secs(30), addr_rx).await {
            Ok(Ok(a)) => a.parse().expect("listening addr parses"),
            _ => panic!(
                "{bin} did not report its address; output:\n{}",
                output.lock().unwrap()
            ),
        };
        Self {
            child,
            addr,
            output,
        }
    }

    /// Everything the process printed so far.
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("process still running")
    }

    /// Sends a signal by name (`TERM`, `KILL`, `INT`).
    pub fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .args([format!("-{name}"), self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits for the process to exit, up to `timeout`; returns its exit code.
    pub async fn wait(&mut self, timeout: Duration) -> Option<i32> {
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(Ok(status)) => status.code(),
            _ => panic!(
                "process did not exit within {timeout:?}; output:\n{}",
                self.output()
            ),
        }
    }

    /// A gRPC channel to the process.
    pub async fn channel(&self) -> tonic::transport::Channel {
        tonic::transport::Channel::from_shared(format!("http://{}", self.addr))
            .expect("uri")
            .connect()
            .await
            .expect("connect to service process")
    }
}

/// The string value of `"key":"value"` in a JSON log line.
fn json_field(line: &str, key: &str) -> Option<String> {
    let pat = format!("\"{key}\":\"");
    let start = line.find(&pat)? + pat.len();
    let end = line[start..].find('"')? + start;
    Some(line[start..end].to_owned())
}

/// The grpcurl binary: `GRPCURL`, else the repo's `.venv/bin/grpcurl`, else `PATH`.
pub fn grpcurl() -> String {
    if let Ok(p) = std::env::var("GRPCURL") {
        return p;
    }
    let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/../.venv/bin/grpcurl");
    if std::path::Path::new(venv).exists() {
        return venv.to_owned();
    }
    "grpcurl".to_owned()
}
