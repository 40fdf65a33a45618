//! A TCP proxy a test puts between a service and a server (RabbitMQ, say) to cut the
//! link and restore it without touching the shared server, or to make it slow: every
//! byte held for a set delay in each direction, as a congested or distant network
//! would.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
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
    /// Milliseconds each chunk is held in each direction.
    delay_ms: Arc<AtomicU64>,
    /// Bytes written to the upstream so far, over every connection.
    upstream_bytes: Arc<AtomicU64>,
    /// Bytes read from the upstream so far (before any delay), over every connection.
    answered_bytes: Arc<AtomicU64>,
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
            delay_ms: Arc::new(AtomicU64::new(0)),
            upstream_bytes: Arc::new(AtomicU64::new(0)),
            answered_bytes: Arc::new(AtomicU64::new(0)),
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
            delay_ms: Arc::new(AtomicU64::new(0)),
            upstream_bytes: Arc::new(AtomicU64::new(0)),
            answered_bytes: Arc::new(AtomicU64::new(0)),
            current: Mutex::new(None),
        }
    }

    /// Bytes delivered to the upstream so far (after any delay): a test can see that a
    /// held request did reach the server, and when.
    pub fn bytes_to_upstream(&self) -> u64 {
        self.upstream_bytes.load(Ordering::SeqCst)
    }

    /// Bytes the upstream has sent so far, counted when read (before any delay): a
    /// test can see that the server answered a held request, however long the answer
    /// then takes to reach the client.
    pub fn bytes_from_upstream(&self) -> u64 {
        self.answered_bytes.load(Ordering::SeqCst)
    }

    /// Holds every chunk read from then on for `delay` before it is passed on, in
    /// both directions (so a request/response round trip costs twice `delay`), on
    /// open connections too. Order within a connection is kept. Zero: no delay.
    pub fn set_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.delay_ms.store(ms, Ordering::SeqCst);
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
        let delay_ms = self.delay_ms.clone();
        let upstream_bytes = self.upstream_bytes.clone();
        let answered_bytes = self.answered_bytes.clone();
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
                let delay_ms = delay_ms.clone();
                let upstream_bytes = upstream_bytes.clone();
                let answered_bytes = answered_bytes.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::select! {
                        _ = conn_token.cancelled() => {}
                        _ = async {
                            tokio::join!(
                                pump(client_read, server_write, delay_ms.clone(), None, Some(upstream_bytes)),
                                pump(server_read, client_write, delay_ms, Some(answered_bytes), None),
                            )
                        } => {}
                    }
                });
            }
        });
    }
}

/// Copies `from` to `to`, each chunk held until the delay set when it was read has
/// passed; a reader task and a writer task, so later chunks keep flowing in behind.
async fn pump<R, W>(
    mut from: R,
    mut to: W,
    delay_ms: Arc<AtomicU64>,
    read: Option<Arc<AtomicU64>>,
    written: Option<Arc<AtomicU64>>,
) where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let reader = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if let Some(read) = &read {
                        read.fetch_add(n as u64, Ordering::SeqCst);
                    }
                    let due = tokio::time::Instant::now()
                        + Duration::from_millis(delay_ms.load(Ordering::SeqCst));
                    if tx.send((due, buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
            }
        }
    };
    let writer = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
            if let Some(written) = &written {
                written.fetch_add(chunk.len() as u64, Ordering::SeqCst);
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}
