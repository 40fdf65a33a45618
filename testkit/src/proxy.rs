//! A TCP proxy a test puts between a service and a server (RabbitMQ, say) to cut the
//! link and restore it without touching the shared server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

/// Forwards connections on `addr()` to `upstream` while up. [`TcpProxy::cut`] closes
/// the listener and every open connection, so clients see the server vanish;
/// [`TcpProxy::restore`] listens again on the same port.
pub struct TcpProxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    up: Arc<AtomicBool>,
    current: Mutex<Option<CancellationToken>>,
}

impl TcpProxy {
    /// A proxy to `upstream`, listening at once.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let proxy = Self {
            addr,
            upstream,
            up: Arc::new(AtomicBool::new(false)),
            current: Mutex::new(None),
        };
        proxy.serve(listener).await;
        proxy
    }

    /// A proxy whose port is reserved but closed: connections are refused until
    /// [`TcpProxy::restore`].
    pub async fn start_cut(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        drop(listener);
        Self {
            addr,
            upstream,
            up: Arc::new(AtomicBool::new(false)),
            current: Mutex::new(None),
        }
    }

    /// Where clients should connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether connections are forwarded now.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::SeqCst)
    }

    /// Drops the listener and every forwarded connection.
    pub async fn cut(&self) {
        if let Some(token) = self.current.lock().await.take() {
            token.cancel();
        }
        self.up.store(false, Ordering::SeqCst);
    }

    /// Listens again on the same port.
    pub async fn restore(&self) {
        if self.is_up() {
            return;
        }
        // The port was ours a moment ago; retry briefly in case the OS holds it.
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if tries < 100 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                Err(e) => panic!("cannot re-bind proxy port {}: {e}", self.addr),
            }
        };
        self.serve(listener).await;
    }

    async fn serve(&self, listener: TcpListener) {
        let token = CancellationToken::new();
        *self.current.lock().await = Some(token.clone());
        self.up.store(true, Ordering::SeqCst);
        let upstream = self.upstream;
        tokio::spawn(async move {
            loop {
                let (client, _) = tokio::select! {
                    _ = token.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok(c) => c,
                        Err(_) => continue,
                    },
                };
                let conn_token = token.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (mut c, mut s) = (client, server);
                    tokio::select! {
                        _ = conn_token.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut c, &mut s) => {}
                    }
                });
            }
        });
    }
}
