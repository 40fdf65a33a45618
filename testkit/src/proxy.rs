//! A TCP proxy a test puts between a service and a server (RabbitMQ, payment-svc) to
//! cut the link and restore it without touching the server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

/// Forwards connections on `addr()` to `upstream` while up. While cut, it closes every
/// forwarded connection and drops new ones at once, so clients see the server vanish.
/// The listener itself stays bound the whole time: no other process can take the port
/// between a cut and a restore.
pub struct TcpProxy {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    /// Cancelled on a cut; replaced by a fresh token on restore.
    links: Arc<Mutex<CancellationToken>>,
    stop: CancellationToken,
}

impl TcpProxy {
    /// A proxy to `upstream`, forwarding at once.
    pub async fn start(upstream: SocketAddr) -> Self {
        Self::spawn(upstream, true).await
    }

    /// A proxy that starts cut: connections are dropped until [`TcpProxy::restore`].
    pub async fn start_cut(upstream: SocketAddr) -> Self {
        Self::spawn(upstream, false).await
    }

    async fn spawn(upstream: SocketAddr, up: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let proxy = Self {
            addr,
            up: Arc::new(AtomicBool::new(up)),
            links: Arc::new(Mutex::new(CancellationToken::new())),
            stop: CancellationToken::new(),
        };
        let (up, links, stop) = (proxy.up.clone(), proxy.links.clone(), proxy.stop.clone());
        tokio::spawn(async move {
            loop {
                let (client, _) = tokio::select! {
                    _ = stop.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok(c) => c,
                        Err(_) => continue,
                    },
                };
                if !up.load(Ordering::SeqCst) {
                    // Cut: the client sees its connection closed straight away.
                    drop(client);
                    continue;
                }
                let link = links.lock().await.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (mut c, mut s) = (client, server);
                    tokio::select! {
                        _ = link.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut c, &mut s) => {}
                    }
                });
            }
        });
        proxy
    }

    /// Where clients should connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether connections are forwarded now.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::SeqCst)
    }

    /// Closes every forwarded connection and refuses new ones until restored.
    pub async fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        let mut links = self.links.lock().await;
        links.cancel();
        *links = CancellationToken::new();
    }

    /// Forwards new connections again.
    pub async fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Ok(links) = self.links.try_lock() {
            links.cancel();
        }
    }
}
