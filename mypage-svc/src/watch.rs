//! The `WatchMyPage` stream: every current entry of one customer, newest order
//! first, then each entry again whenever a committed event changes it.
//!
//! A producer task reads the store and feeds a small buffer; [`WatchStream`] hands
//! the buffer to tonic. Changes come from [`crate::changes`], whichever replica
//! consumed the event. The producer reads the current entries only once the
//! change feed is live, and reads (and sends) again those changed since its
//! position whenever the feed reconnects in a later epoch, since changes
//! committed while it was down were never announced: a client may then get an
//! entry it already holds, never a stale one. How a stream ends:
//!
//! - the service shuts down: UNAVAILABLE at once, even with items still buffered,
//!   so the server's graceful drain never waits for a watcher;
//! - the client reads so slowly that the producer misses changes (the change
//!   fan-out keeps a bounded backlog): ABORTED; a new stream, resumed from the
//!   last token or started afresh, loses nothing;
//! - the client goes away: the producer notices the closed buffer and stops;
//! - the store fails: the error's status (UNAVAILABLE or INTERNAL); so does a
//!   change feed that stays down for [`FEED_WAIT`] when the stream starts;
//! - the caller's token expires ([`WatchStream::until`]): UNAUTHENTICATED, so a
//!   stream never outlives the credential that opened it; reconnect with a fresh one.
//!
//! The producer holds one permit of the watcher limit for its whole life.
//!
//! Two markers are opt-in ([`Markers`]), so clients that never asked see only
//! entries: one after each full send of the current entries (the client then holds
//! the whole page), and heartbeats whenever the stream has sent nothing for the
//! interval asked, so a client or a proxy can tell a quiet stream from a dead one.
//!
//! Resuming: every change to a customer's rows commits under the customer's next
//! change number, in order (`store::next_change_numbers`), and each notification
//! carries it. The stream keeps a position `p`: every change numbered below `p` has
//! been sent. The current entries are read after the customer's latest number `n`,
//! so once they are sent `p` is `n + 1`; a notification numbered `s` arrives after
//! every lower one (commit order), so once its entry is sent `p` is at least `s`.
//! Messages carry `p` as their resume token, and a stream opened with one sends
//! only the rows changed at `p` or later instead of every entry; so does a
//! resynchronisation after the change feed reconnected. A number shared by several
//! rows (one transaction) is sent again whole, never half.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use platform::paging::encode_resume_token;
use platform::values::ExternalId;
use talentshare_proto::mypage::WatchMyPageResponse;
use tokio::sync::{OwnedSemaphorePermit, broadcast, mpsc};
use tokio::time::Instant;
use tokio_stream::Stream;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tonic::Status;

use crate::changes::{Signal, Subscription};
use crate::domain::Entry;
use crate::grpc::{ApiError, to_proto};
use crate::store::MyPageStore;

/// The shortest and longest heartbeat interval a client may ask for.
pub const HEARTBEAT_RANGE: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_secs(300);

/// Where a stream resumes, and what its tokens are valid for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resume {
    /// The position of the client's resume token; `None` to start afresh.
    pub from: Option<i64>,
    /// `MyPageStore::resume_scope` of the stream's customer.
    pub scope: String,
}

/// The opt-in markers of one stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Markers {
    /// Send a `snapshot_end` marker after each full send of the current entries.
    pub snapshot_end: bool,
    /// Send a `heartbeat` marker after this long without any message.
    pub heartbeat: Option<Duration>,
}

/// Messages buffered between the producer and the HTTP/2 stream. Small: the
/// change fan-out's backlog, not this buffer, decides how far a client may lag.
const BUFFER: usize = 16;

/// Rows read per query while sending the current entries.
const INITIAL_PAGE: u64 = 100;

/// How long a new stream waits for the change feed to be live (the PostgreSQL
/// listener connecting, at start-up or after losing its connection) before it
/// ends with UNAVAILABLE.
pub const FEED_WAIT: Duration = Duration::from_secs(10);

type Item = Result<WatchMyPageResponse, Status>;

/// Starts watching `customer`'s page. `changes` must have been subscribed before
/// this call reads anything, so no change committed meanwhile is missed.
pub fn watch(
    store: MyPageStore,
    customer: ExternalId,
    markers: Markers,
    resume: Resume,
    changes: Subscription,
    shutdown: CancellationToken,
    permit: OwnedSemaphorePermit,
) -> WatchStream {
    let (tx, rx) = mpsc::channel(BUFFER);
    let producer = Producer {
        store,
        customer,
        markers,
        changes,
        tx,
        last_sent: Instant::now(),
        position: resume.from.unwrap_or(0),
        scope: resume.scope,
    };
    tokio::spawn(producer.run(shutdown.clone(), permit));
    WatchStream {
        items: rx,
        shutdown: Box::pin(shutdown.cancelled_owned()),
        expires: None,
        finished: false,
    }
}

/// The response stream of one `WatchMyPage` call.
pub struct WatchStream {
    items: mpsc::Receiver<Item>,
    shutdown: Pin<Box<WaitForCancellationFutureOwned>>,
    /// When the caller's token expires.
    expires: Option<Pin<Box<tokio::time::Sleep>>>,
    finished: bool,
}

impl WatchStream {
    /// Ends the stream with UNAUTHENTICATED at `expiry` (the token's `exp`).
    pub fn until(mut self, expiry: std::time::SystemTime) -> Self {
        let left = expiry
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default();
        self.expires = Some(Box::pin(tokio::time::sleep(left)));
        self
    }
}

impl Stream for WatchStream {
    type Item = Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Item>> {
        if self.finished {
            return Poll::Ready(None);
        }
        // Shutdown first: buffered entries are not worth delaying the drain for.
        if self.shutdown.as_mut().poll(cx).is_ready() {
            self.finished = true;
            return Poll::Ready(Some(Err(ApiError::ShuttingDown.into())));
        }
        if let Some(expires) = self.expires.as_mut()
            && expires.as_mut().poll(cx).is_ready()
        {
            self.finished = true;
            return Poll::Ready(Some(Err(ApiError::TokenExpired.into())));
        }
        match self.items.poll_recv(cx) {
            Poll::Ready(Some(Ok(item))) => Poll::Ready(Some(Ok(item))),
            Poll::Ready(Some(Err(status))) => {
                self.finished = true;
                Poll::Ready(Some(Err(status)))
            }
            // The producer stops without a status only when it panicked.
            Poll::Ready(None) => {
                self.finished = true;
                Poll::Ready(Some(Err(ApiError::Internal(
                    "watch producer stopped unexpectedly".into(),
                )
                .into())))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A message without an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Marker {
    SnapshotEnd,
    Heartbeat,
}

/// Why feeding a stream stopped.
enum End {
    /// The client is gone: nobody to tell.
    ClientGone,
    /// Tell the client, then stop.
    Failed(ApiError),
}

struct Producer {
    store: MyPageStore,
    customer: ExternalId,
    markers: Markers,
    changes: Subscription,
    tx: mpsc::Sender<Item>,
    /// When the last message went into the buffer: heartbeats count from here.
    last_sent: Instant,
    /// Every change numbered below this has been sent; 0 while unknown.
    position: i64,
    /// What the stream's resume tokens are valid for (`MyPageStore::resume_scope`).
    scope: String,
}

impl Producer {
    async fn run(mut self, shutdown: CancellationToken, _permit: OwnedSemaphorePermit) {
        let tx = self.tx.clone();
        let end = tokio::select! {
            biased;
            // The stream itself reports the shutdown.
            _ = shutdown.cancelled() => return,
            _ = tx.closed() => return,
            end = self.feed() => end,
        };
        if let End::Failed(e) = end {
            // A stream's status comes after its headers, where the outcome layer does not
            // look, so a stream that fails is logged here, once, with its cause.
            let cause = platform::outcome::chain(&e);
            match e {
                ApiError::Internal(_) | ApiError::Unavailable(_) | ApiError::NotConnected => {
                    tracing::warn!(customer_id = %self.customer, cause, "watch failed");
                }
                _ => tracing::debug!(customer_id = %self.customer, cause, "watch ended"),
            }
            tokio::select! {
                _ = tx.send(Err(e.into())) => {}
                _ = shutdown.cancelled() => {}
            }
        }
    }

    /// Sends the current entries, then every change, until something ends it.
    async fn feed(&mut self) -> End {
        let mut epoch = match tokio::time::timeout(FEED_WAIT, self.changes.live_epoch()).await {
            Ok(Some(epoch)) => epoch,
            // The fan-out is gone only when the service is stopping.
            Ok(None) => return End::Failed(ApiError::ShuttingDown),
            Err(_) => {
                return End::Failed(ApiError::NotConnected);
            }
        };
        if let Err(end) = self.send_current().await {
            return end;
        }
        loop {
            let signal = match self.markers.heartbeat {
                None => self.changes.recv().await,
                Some(every) => {
                    match tokio::time::timeout_at(self.last_sent + every, self.changes.recv()).await
                    {
                        Ok(signal) => signal,
                        Err(_) => {
                            if !self.marker(Marker::Heartbeat).await {
                                return End::ClientGone;
                            }
                            continue;
                        }
                    }
                }
            };
            let changed = match signal {
                Ok(Signal::Changed(c)) => c,
                // Read in this epoch already (the feed turns live before it signals).
                Ok(Signal::Resync(e)) if e == epoch => continue,
                Ok(Signal::Resync(e)) => {
                    epoch = e;
                    if let Err(end) = self.send_current().await {
                        return end;
                    }
                    continue;
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    return End::Failed(ApiError::Lagging(format!(
                        "the stream fell {missed} changes behind; reconnect with the last resume_token"
                    )));
                }
                // The fan-out is gone only when the service is stopping.
                Err(broadcast::error::RecvError::Closed) => {
                    return End::Failed(ApiError::ShuttingDown);
                }
            };
            if *changed.customer_id != *self.customer.as_ref() {
                continue;
            }
            match self.store.get(changed.order_id).await {
                Ok(Some(entry)) => {
                    // Read after the notification, so the row holds change `s` or later.
                    if let Some(s) = changed.change_seq {
                        self.position = self.position.max(s);
                    }
                    if !self.send(&entry).await {
                        return End::ClientGone;
                    }
                }
                // Announced after commit, so it exists; nothing to send otherwise.
                Ok(None) => {}
                Err(e) => return End::Failed(e.into()),
            }
        }
    }

    /// Sends the customer's entries, newest order first: every one while the position
    /// is unknown, else those changed at the position or later; then the
    /// end-of-snapshot marker if the client asked for it.
    async fn send_current(&mut self) -> Result<(), End> {
        // Read before the rows: every change numbered up to it is in what follows.
        let latest = self
            .store
            .change_number(&self.customer)
            .await
            .map_err(|e| End::Failed(e.into()))?;
        let from = self.position;
        let mut after = None;
        loop {
            let (entries, more) = if from == 0 {
                self.store.page(&self.customer, after, INITIAL_PAGE).await
            } else {
                self.store
                    .changed_from(&self.customer, from, after, INITIAL_PAGE)
                    .await
            }
            .map_err(|e| End::Failed(e.into()))?;
            after = entries.last().map(|e| e.order_id());
            for (i, entry) in entries.iter().enumerate() {
                if !more && i + 1 == entries.len() {
                    // The last one: the client now holds everything up to `latest`.
                    self.position = self.position.max(latest + 1);
                }
                if !self.send(entry).await {
                    return Err(End::ClientGone);
                }
            }
            if !more {
                break;
            }
        }
        self.position = self.position.max(latest + 1);
        if self.markers.snapshot_end && !self.marker(Marker::SnapshotEnd).await {
            return Err(End::ClientGone);
        }
        Ok(())
    }

    async fn send(&mut self, entry: &Entry) -> bool {
        self.put(WatchMyPageResponse {
            entry: Some(to_proto(entry)),
            ..WatchMyPageResponse::default()
        })
        .await
    }

    async fn marker(&mut self, marker: Marker) -> bool {
        self.put(WatchMyPageResponse {
            entry: None,
            snapshot_end: marker == Marker::SnapshotEnd,
            heartbeat: marker == Marker::Heartbeat,
            resume_token: String::new(),
        })
        .await
    }

    /// Buffers one message; false when the client is gone.
    async fn put(&mut self, mut msg: WatchMyPageResponse) -> bool {
        if self.position > 0 {
            msg.resume_token = encode_resume_token(&self.scope, self.position);
        }
        let sent = self.tx.send(Ok(msg)).await.is_ok();
        self.last_sent = Instant::now();
        sent
    }
}
