//! The fan-out of committed changes to WatchMyPage streams, across every replica.
//!
//! Replicas share one queue, so the replica that consumes an event is often not
//! the one a watcher is connected to. Each replica has one in-process [`Changes`]
//! (a bounded broadcast its streams subscribe to); what feeds it depends on the
//! backend:
//!
//! - PostgreSQL: the consumer's transaction runs `pg_notify` ([`publish`]).
//!   PostgreSQL delivers a notification only if that transaction commits, and to
//!   every connection LISTENing on [`CHANNEL`]: one [`listener`] task per replica,
//!   which forwards it into that replica's [`Changes`]. The consumer does not ALSO
//!   notify in process, so each replica sees each change exactly once.
//! - SQLite: one process by definition; the consumer notifies [`Changes`] itself
//!   after the commit.
//!
//! Notifications sent while a listener is disconnected are lost for good. So the
//! feed has an *epoch*: every (re)connection of the listener starts a new one and
//! broadcasts [`Signal::Resync`], and a stream that read its rows in an older epoch
//! reads them again (see [`crate::watch`]). While the listener is disconnected the
//! feed is not live, and new streams wait for it before reading anything.

use std::sync::Arc;
use std::time::{Duration, Instant};

use platform::backoff::Backoff;
use platform::values::ExternalId;
use platform::{BackgroundTask, SecretUrl};
use sea_orm::sqlx::postgres::PgListener;
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement};
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The PostgreSQL notification channel. A constant is enough: each service owns
/// its database, and NOTIFY does not cross databases.
pub const CHANNEL: &str = "mypage_changes";

/// A listener connection that lasted this long was healthy: the next loss starts
/// the reconnect backoff from its shortest delay again.
const STABLE_SESSION: Duration = Duration::from_secs(30);

/// One committed change to an entry: whose page, which order, and the customer's
/// change number it committed under (see `store::next_change_numbers`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Changed {
    /// Shared between every watcher's copy of the message.
    pub customer_id: Arc<str>,
    pub order_id: Uuid,
    /// `None` from a replica older than change numbers (a rolling upgrade): the
    /// change is still sent, it only does not move a stream's resume position.
    pub change_seq: Option<i64>,
}

/// What a stream hears from [`Changes`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Signal {
    /// A change committed.
    Changed(Changed),
    /// The feed (re)connected and started this epoch: changes of an older epoch
    /// may have been missed, so re-read the rows unless they were read in it.
    Resync(u64),
}

/// Whether the feed delivers changes now, and since which (re)connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Feed {
    epoch: u64,
    live: bool,
}

/// The in-process fan-out of committed changes to WatchMyPage streams.
///
/// A bounded `broadcast`: a stream that falls more than `capacity` signals behind
/// (its client reads too slowly) sees `Lagged` and ends with ABORTED, so a slow
/// client costs the service a fixed amount of memory. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Changes {
    signals: broadcast::Sender<Signal>,
    feed: watch::Sender<Feed>,
    via_database: bool,
}

impl Changes {
    /// A fan-out fed in process (SQLite): live from the start, never resynchronised.
    pub fn in_process(capacity: usize) -> Self {
        Self::build(capacity, true, false)
    }

    /// A fan-out fed by a PostgreSQL [`listener`]: not live until it has connected.
    pub fn via_database(capacity: usize) -> Self {
        Self::build(capacity, false, true)
    }

    fn build(capacity: usize, live: bool, via_database: bool) -> Self {
        Self {
            signals: broadcast::channel(capacity).0,
            feed: watch::Sender::new(Feed { epoch: 0, live }),
            via_database,
        }
    }

    /// Whether changes travel through the database (the consumer then publishes
    /// them in its transaction instead of notifying in process).
    pub fn is_via_database(&self) -> bool {
        self.via_database
    }

    /// Receives every signal sent from now on.
    pub fn subscribe(&self) -> Subscription {
        Subscription {
            signals: self.signals.subscribe(),
            feed: self.feed.subscribe(),
        }
    }

    /// Announces a committed change. Call only after the commit, so that a
    /// subscriber re-reading the row sees it.
    pub fn notify(&self, changed: Changed) {
        // An error only means nobody is watching right now.
        let _ = self.signals.send(Signal::Changed(changed));
    }

    /// The listener listens again: start a new epoch and tell every stream. The
    /// feed turns live before the signal goes out, so a stream that reads the new
    /// epoch and then its rows ignores the signal, and one that read an older
    /// epoch resynchronises.
    fn connected(&self) -> u64 {
        let mut epoch = 0;
        self.feed.send_modify(|f| {
            f.epoch += 1;
            f.live = true;
            epoch = f.epoch;
        });
        let _ = self.signals.send(Signal::Resync(epoch));
        epoch
    }

    /// The listener lost its connection: changes may be going unheard.
    fn disconnected(&self) {
        self.feed.send_modify(|f| f.live = false);
    }
}

/// One stream's view of [`Changes`]: the signals, and the feed's state.
pub struct Subscription {
    signals: broadcast::Receiver<Signal>,
    feed: watch::Receiver<Feed>,
}

impl Subscription {
    /// The next signal; `Lagged` when this subscriber fell behind.
    pub(crate) async fn recv(&mut self) -> Result<Signal, broadcast::error::RecvError> {
        self.signals.recv().await
    }

    /// Waits until the feed is live and returns its epoch; `None` when the fan-out
    /// is gone (the service is stopping).
    pub(crate) async fn live_epoch(&mut self) -> Option<u64> {
        self.feed.wait_for(|f| f.live).await.ok().map(|f| f.epoch)
    }
}

/// Publishes a change from inside the consumer's PostgreSQL transaction: every
/// replica's [`listener`] hears it once, and only if the transaction commits.
pub async fn publish<C: ConnectionTrait>(
    txn: &C,
    customer: &ExternalId,
    order_id: Uuid,
    change_seq: i64,
) -> Result<(), DbErr> {
    let stmt = Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT pg_notify($1, $2)",
        [
            CHANNEL.into(),
            payload(customer.as_ref(), order_id, change_seq).into(),
        ],
    );
    txn.execute_raw(stmt).await?;
    Ok(())
}

/// [`publish`] for several changes in one statement.
pub async fn publish_all<C: ConnectionTrait>(
    txn: &C,
    changed: impl IntoIterator<Item = (&ExternalId, Uuid, i64)>,
) -> Result<(), DbErr> {
    let payloads: Vec<String> = changed
        .into_iter()
        .map(|(customer, order_id, seq)| payload(customer.as_ref(), order_id, seq))
        .collect();
    if payloads.is_empty() {
        return Ok(());
    }
    let stmt = Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p",
        [CHANNEL.into(), payloads.into()],
    );
    txn.execute_raw(stmt).await?;
    Ok(())
}

/// `<customer_id> <order_id> <change_seq>`. Customer ids hold no space (external
/// ids are `A-Z a-z 0-9 . _ -`); a payload without the number (`<customer_id>
/// <order_id>`) comes from a replica older than change numbers.
fn payload(customer: &str, order_id: Uuid, change_seq: i64) -> String {
    format!("{customer} {order_id} {change_seq}")
}

fn parse_payload(payload: &str) -> Option<Changed> {
    let mut parts = payload.split(' ');
    let customer = parts.next().filter(|c| !c.is_empty())?;
    let order_id = Uuid::parse_str(parts.next()?).ok()?;
    let change_seq = match parts.next() {
        None => None,
        Some(n) => Some(n.parse().ok().filter(|n: &i64| *n > 0)?),
    };
    if parts.next().is_some() {
        return None;
    }
    Some(Changed {
        customer_id: Arc::from(customer),
        order_id,
        change_seq,
    })
}

/// The task that forwards [`CHANNEL`] notifications on the database at `url` into
/// `changes`, reconnecting with backoff, until the service stops.
pub fn listener(url: SecretUrl, changes: Changes) -> BackgroundTask {
    BackgroundTask::new("change listener", move |stop| listen(url, changes, stop))
}

async fn listen(url: SecretUrl, changes: Changes, stop: CancellationToken) {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    loop {
        let session = tokio::select! {
            _ = stop.cancelled() => return,
            r = connect(&url) => r,
        };
        match session {
            Ok(mut listener) => {
                let since = Instant::now();
                let epoch = changes.connected();
                if epoch == 1 {
                    tracing::info!(channel = CHANNEL, "listening for changes");
                } else {
                    tracing::info!(
                        channel = CHANNEL,
                        epoch,
                        "listening for changes again; watchers resynchronise"
                    );
                }
                let lost = tokio::select! {
                    _ = stop.cancelled() => return,
                    lost = forward(&mut listener, &changes) => lost,
                };
                changes.disconnected();
                if since.elapsed() >= STABLE_SESSION {
                    backoff.reset();
                }
                tracing::warn!(error = %lost, "change listener lost its connection; reconnecting");
            }
            Err(e) => {
                if backoff.attempts() == 0 {
                    tracing::warn!(error = %e, "change listener cannot connect; retrying");
                } else {
                    tracing::debug!(error = %e, "change listener still cannot connect");
                }
            }
        }
        let delay = backoff.next_delay();
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// A new connection LISTENing on [`CHANNEL`].
async fn connect(url: &SecretUrl) -> Result<PgListener, sea_orm::sqlx::Error> {
    let mut listener = PgListener::connect(url.expose()).await?;
    // On a lost connection, return at once instead of reconnecting inside sqlx:
    // `listen` reconnects itself, with backoff, and starts a new epoch.
    listener.eager_reconnect(false);
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// Forwards notifications until the connection fails; returns why.
async fn forward(listener: &mut PgListener, changes: &Changes) -> String {
    loop {
        match listener.try_recv().await {
            Ok(Some(n)) => match parse_payload(n.payload()) {
                Some(changed) => changes.notify(changed),
                None => tracing::warn!(
                    payload = n.payload(),
                    "ignoring a malformed change notification"
                ),
            },
            Ok(None) => return "connection closed".to_owned(),
            Err(e) => return e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_parses_back_into_its_change() {
        let order_id = Uuid::now_v7();
        let parsed = parse_payload(&payload("cust-1.a_b", order_id, 7));
        assert_eq!(
            parsed,
            Some(Changed {
                customer_id: Arc::from("cust-1.a_b"),
                order_id,
                change_seq: Some(7),
            })
        );
        // From a replica older than change numbers.
        let old = parse_payload(&format!("cust-1 {order_id}"));
        assert_eq!(old.and_then(|c| c.change_seq), None);
    }

    #[test]
    fn a_malformed_payload_is_rejected() {
        for bad in [
            "",
            "cust-1",
            "cust-1 not-a-uuid",
            &format!(" {}", Uuid::nil()),
            &format!("cust-1 {} x", Uuid::nil()),
            &format!("cust-1 {} 0", Uuid::nil()),
            &format!("cust-1 {} 1 2", Uuid::nil()),
        ] {
            assert_eq!(parse_payload(bad), None, "{bad:?}");
        }
    }

    #[tokio::test]
    async fn an_in_process_feed_is_live_at_once_in_epoch_zero() {
        let changes = Changes::in_process(4);
        assert_eq!(changes.subscribe().live_epoch().await, Some(0));
    }

    #[tokio::test]
    async fn each_connection_of_the_listener_starts_a_new_epoch_and_signals_it() {
        let changes = Changes::via_database(4);
        let mut sub = changes.subscribe();
        assert!(
            !sub.feed.borrow().live,
            "not live before the listener connects"
        );
        assert_eq!(changes.connected(), 1);
        changes.disconnected();
        assert!(!sub.feed.borrow().live);
        assert_eq!(changes.connected(), 2);
        assert_eq!(sub.live_epoch().await, Some(2));
        assert_eq!(sub.recv().await.ok(), Some(Signal::Resync(1)));
        assert_eq!(sub.recv().await.ok(), Some(Signal::Resync(2)));
    }
}
