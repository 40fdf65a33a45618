//! `talentshare dlq`: the operator's view of the dead-letter queues, and the way back
//! out of them once the cause is fixed (a consumer upgraded to know a new event type,
//! a bug in a handler repaired).
//!
//! - `list` shows what rests in each consumer's dead-letter queue
//!   (`<exchange>.<consumer>.dlq`): which event, why the broker dead-lettered it
//!   (`rejected` by the consumer at once, or `delivery_limit` after its failed
//!   deliveries), how often and since when.
//! - `replay` hands chosen events back to the one consumer that dead-lettered them.
//!
//! # `list` takes nothing away
//!
//! AMQP 0-9-1 cannot peek at a queue, so `list` takes each message with `basic.get`
//! and does not acknowledge it. An unacknowledged message stays the broker's: while
//! `list` holds it nobody else gets it, and the broker puts it back the moment the
//! channel or connection closes, however the command ends (success, error, timeout,
//! Ctrl-C, SIGKILL; a link that just goes silent, at the heartbeat timeout). On the
//! normal path `list` hands every message back itself with
//! one `basic.nack` (multiple, requeue) before it closes the channel; the close is the
//! safety net. So `list` may change the order of a dead-letter queue, never its
//! contents.
//!
//! A requeue counts as a delivery of the message on the dead-letter queue, which is a
//! quorum queue (on RabbitMQ 3.10 each `list` adds one to its `x-delivery-count`).
//! That is harmless where nothing limits those deliveries: RabbitMQ 3.x
//! (no delivery limit unless one is declared, and the dead-letter queues declare none)
//! and 4.3 and later (`basic.nack` no longer counts; that is why `list` nacks rather
//! than rejects or simply closes). RabbitMQ 4.0 to 4.2, however, give every quorum
//! queue a default delivery limit of 20 and count every requeue, and a dead-letter
//! queue has nowhere to dead-letter to: there, give the dead-letter queues an
//! unlimited delivery limit by policy, or some twenty `list` runs would drop a dead
//! letter.
//!
//! # `replay` is idempotent
//!
//! `replay` publishes each chosen message again, with the same body and properties
//! (persistent, without the broker's `x-death`/`x-first-death-*`/`x-last-death-*`
//! history, so a new failure starts a fresh history), to the default exchange with the
//! consumer's own queue as routing key: only the consumer that dead-lettered it
//! receives it again, not every subscriber of the event. It waits for the publisher
//! confirm, and only then acknowledges the message off the dead-letter queue.
//!
//! A crash after the publish and before that acknowledgement can leave the event both
//! in the consumer's queue and, once the broker requeues the unacknowledged message,
//! still in the dead-letter queue; replaying it again delivers it a second time. That is safe
//! because every consumer records the event id in its inbox in the same transaction
//! as the event's effect, and acknowledges a known id without applying it again. The
//! other order (acknowledge, then publish) could lose the event, so it is not used.
//!
//! `replay` looks only at the messages present when it starts: an event that the
//! consumer dead-letters again while `replay --all` runs stays in the dead-letter
//! queue instead of going round in a loop. A body that does not decode as an event
//! is never replayed (it would only be dead-lettered again at once); `list` shows it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::builder::PossibleValuesParser;
use clap::{ArgGroup, Args, Subcommand};
use lapin::message::BasicGetMessage;
use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection};
use platform::amqp::{self, CONSUMERS, Topology};
use platform::settings::{SecretUrl, parse_amqp_name};
use prost::Message as _;
use talentshare_proto::events::EventEnvelope;

/// How long one exchange with the broker (one get, one publish and its confirm, one
/// acknowledgement) may take before the command gives up. Per step, not
/// per run, because a long dead-letter queue takes long to replay.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Flags of `talentshare dlq`.
#[derive(Args, Debug)]
#[command(
    about = "List dead-lettered events and replay them to their consumer",
    long_about = "List dead-lettered events and replay them to their consumer.\n\n\
        `list` shows every consumer's dead-letter queue without removing anything. \
        `replay --consumer NAME --event-id ID` (or `--all`) publishes those events again \
        to that consumer's queue only, and takes each off the dead-letter queue once the \
        broker confirmed it. Replaying an event the consumer already applied changes \
        nothing: consumers deduplicate by event id. AMQP_URL needs read and write on the \
        queues (an admin user, as for `talentshare topology`). Exits 0 on success, 1 with \
        one line saying why otherwise."
)]
pub struct DlqArgs {
    /// RabbitMQ URL of a user that may read and write the consumer queues and their
    /// dead-letter queues (e.g. an administrator). The value is never printed.
    #[arg(
        long,
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
        hide_env_values = true,
        global = true
    )]
    amqp_url: SecretUrl,
    /// Events exchange; queue and dead-letter names derive from it. Must match the
    /// services' EVENTS_EXCHANGE.
    #[arg(
        long,
        env = "EVENTS_EXCHANGE",
        default_value = "talentshare.events",
        value_parser = parse_amqp_name,
        global = true
    )]
    events_exchange: String,
    #[command(subcommand)]
    command: DlqCommand,
}

#[derive(Subcommand, Debug)]
enum DlqCommand {
    /// Show the dead-lettered events, leaving them where they are.
    List(ListArgs),
    /// Publish dead-lettered events again to their consumer's queue.
    Replay(ReplayArgs),
}

/// Flags of `talentshare dlq list`.
#[derive(Args, Debug)]
struct ListArgs {
    /// Only this consumer's dead-letter queue (default: every consumer's).
    #[arg(long, value_parser = consumer_names())]
    consumer: Option<String>,
    /// Show at most N messages per dead-letter queue; the count covers them all.
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    limit: u32,
    /// One JSON object per message instead of a table.
    #[arg(long)]
    json: bool,
}

/// Flags of `talentshare dlq replay`.
#[derive(Args, Debug)]
// Replaying a whole queue must be asked for: a bare `replay` replays nothing.
#[command(group(ArgGroup::new("events").required(true).args(["event_id", "all"])))]
struct ReplayArgs {
    /// The consumer whose dead-letter queue to replay; only its queue receives them.
    #[arg(long, value_parser = consumer_names())]
    consumer: String,
    /// Replay the event with this id (repeat the flag for several).
    #[arg(long = "event-id", value_name = "ID")]
    event_id: Vec<String>,
    /// Replay every event in the dead-letter queue (undecodable bodies stay).
    #[arg(long)]
    all: bool,
    /// Say what would be replayed; publish and remove nothing.
    #[arg(long)]
    dry_run: bool,
}

fn consumer_names() -> PossibleValuesParser {
    PossibleValuesParser::new(CONSUMERS.iter().map(|c| c.name))
}

/// Runs the command.
pub async fn run(args: DlqArgs) -> anyhow::Result<ExitCode> {
    let topology = Topology::new(args.events_exchange);
    // Not `bounded`: `connect` has its own deadline, and a refused login must not
    // read as a missing permission.
    let conn = amqp::connect(&args.amqp_url, "talentshare-dlq")
        .await
        .map_err(|e| anyhow::anyhow!("connecting to RabbitMQ at {} failed: {e}", args.amqp_url))?;
    let (what, result) = match &args.command {
        DlqCommand::List(list_args) => (
            "listing dead-lettered events".to_owned(),
            list(&conn, &topology, list_args).await,
        ),
        DlqCommand::Replay(replay_args) => (
            format!("replaying dead-lettered {} events", replay_args.consumer),
            replay(&conn, &topology, replay_args).await,
        ),
    };
    amqp::close_quietly(&conn, "dlq done").await;
    result.map_err(|e| anyhow::anyhow!("{what} on {} failed: {e:#}", args.amqp_url))
}

/// Awaits one broker step for at most [`TIMEOUT`]. The error carries lapin's message
/// only: it already says what its source says, and `{:#}` would repeat it.
async fn bounded<T>(step: impl Future<Output = lapin::Result<T>>) -> anyhow::Result<T> {
    match tokio::time::timeout(TIMEOUT, step).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) if amqp::is_access_refused(&e) => anyhow::bail!(
            "{e} (this user may not use the queues: AMQP_URL must be an admin user, not a service's)"
        ),
        Ok(Err(e)) => anyhow::bail!("{e}"),
        Err(_) => anyhow::bail!("RabbitMQ did not answer within {TIMEOUT:?}"),
    }
}

/// Why and how often a message was dead-lettered, from the headers the broker adds.
#[derive(Debug, Default, PartialEq, Eq)]
struct Death {
    /// `rejected`, `delivery_limit`, `expired`, …; `None` when the message carries no
    /// dead-letter history (published straight into the queue).
    reason: Option<String>,
    /// Times it was dead-lettered, over every queue and reason.
    count: i64,
    /// When it was first dead-lettered (seconds since the epoch).
    first_at: Option<u64>,
}

impl Death {
    fn from_headers(headers: Option<&FieldTable>) -> Self {
        let Some(headers) = headers.map(FieldTable::inner) else {
            return Self::default();
        };
        let mut death = Self::default();
        let mut oldest_reason = None;
        if let Some(AMQPValue::FieldArray(entries)) = headers.get("x-death") {
            // One entry per (queue, reason), the most recent first.
            for entry in entries.as_slice() {
                let AMQPValue::FieldTable(entry) = entry else {
                    continue;
                };
                let entry = entry.inner();
                death.count += entry.get("count").and_then(integer).unwrap_or(1);
                if let Some(AMQPValue::Timestamp(at)) = entry.get("time") {
                    death.first_at = Some(death.first_at.map_or(*at, |first| first.min(*at)));
                }
                oldest_reason = entry.get("reason").and_then(text).or(oldest_reason);
            }
        }
        death.reason = headers
            .get("x-first-death-reason")
            .and_then(text)
            .or(oldest_reason);
        death
    }
}

fn integer(value: &AMQPValue) -> Option<i64> {
    match value {
        AMQPValue::ShortShortInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortShortUInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortUInt(n) => Some(i64::from(*n)),
        AMQPValue::LongInt(n) => Some(i64::from(*n)),
        AMQPValue::LongUInt(n) => Some(i64::from(*n)),
        AMQPValue::LongLongInt(n) => Some(*n),
        _ => None,
    }
}

fn text(value: &AMQPValue) -> Option<String> {
    match value {
        AMQPValue::LongString(s) => Some(s.to_string()),
        AMQPValue::ShortString(s) => Some(s.to_string()),
        _ => None,
    }
}

/// Headers the broker wrote about this message's past life, not the publisher's: a
/// replay drops them so a new failure is counted from scratch. The delivery counts
/// are the dead-letter queue's (each `list` adds one); RabbitMQ 3.10 overwrites them
/// on delivery anyway, but no broker version should hand the consumer that count as
/// the event's own.
fn is_broker_history(header: &str) -> bool {
    header == "x-death"
        || header.starts_with("x-first-death-")
        || header.starts_with("x-last-death-")
        || header == "x-delivery-count"
        || header == "x-acquired-count"
}

/// The properties a replayed message is published with: the original ones, persistent,
/// without the broker's history headers.
fn replay_properties(original: &BasicProperties) -> BasicProperties {
    let mut properties = original.clone().with_delivery_mode(2);
    if let Some(headers) = original.headers() {
        let kept: BTreeMap<ShortString, AMQPValue> = headers
            .inner()
            .iter()
            .filter(|(name, _)| !is_broker_history(name.as_str()))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        properties = properties.with_headers(kept.into());
    }
    properties
}

/// One message taken from a dead-letter queue and not yet settled.
struct DeadLetter {
    delivery_tag: u64,
    properties: BasicProperties,
    body: Vec<u8>,
    /// `None` when the body is not an `EventEnvelope` (poison).
    envelope: Option<EventEnvelope>,
    death: Death,
}

impl DeadLetter {
    fn new(message: BasicGetMessage) -> Self {
        let delivery = message.delivery;
        // Deliberately not `platform::envelope::decode`: that also refuses envelopes
        // whose payload this build does not know, and those are exactly the events an
        // operator replays after upgrading the consumer.
        let envelope = EventEnvelope::decode(delivery.data.as_slice()).ok();
        let death = Death::from_headers(delivery.properties.headers().as_ref());
        Self {
            delivery_tag: delivery.delivery_tag,
            properties: delivery.properties,
            body: delivery.data,
            envelope,
            death,
        }
    }

    fn event_id(&self) -> Option<&str> {
        self.envelope.as_ref().map(|e| e.event_id.as_str())
    }
}

/// How a dead letter reads in a line of output: event id (or the undecodable body's
/// size), type and aggregate.
impl fmt::Display for DeadLetter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.envelope {
            Some(e) => write!(
                f,
                "{} {} aggregate {}",
                e.event_id, e.event_type, e.aggregate_id
            ),
            None => write!(f, "<undecodable: {} bytes>", self.body.len()),
        }
    }
}

/// Takes the next message of `queue` without acknowledging it.
async fn take(channel: &Channel, queue: &str) -> anyhow::Result<Option<DeadLetter>> {
    let message = bounded(channel.basic_get(queue.into(), BasicGetOptions { no_ack: false }))
        .await
        .with_context(|| format!("reading {queue}"))?;
    Ok(message.map(DeadLetter::new))
}

/// Hands every message up to `last_tag` that this channel still holds back to
/// `queue`, in one `basic.nack` (see the module doc for why nack and not reject), and
/// waits (a few seconds at most) until the broker counts them ready again.
///
/// The nack has no reply, and a quorum queue applies the requeue a moment after the
/// command returns: without the wait, `list` followed at once by `replay --all` could
/// find the queue empty and replay nothing.
async fn hand_back(
    channel: &Channel,
    queue: &str,
    last_tag: Option<u64>,
    held: u32,
) -> anyhow::Result<()> {
    let Some(tag) = last_tag else {
        return Ok(());
    };
    let expected = ready_count(channel, queue).await?.saturating_add(held);
    bounded(channel.basic_nack(
        tag,
        BasicNackOptions {
            multiple: true,
            requeue: true,
        },
    ))
    .await
    .context("handing messages back to the dead-letter queue")?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    // Another `replay` may take some meanwhile, so give up at the deadline rather
    // than insist on the count.
    while ready_count(channel, queue).await? < expected && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// How many messages wait in `queue` (a passive declare: it creates nothing).
async fn ready_count(channel: &Channel, queue: &str) -> anyhow::Result<u32> {
    let declared = bounded(channel.queue_declare(
        queue.into(),
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    ))
    .await
    .with_context(|| {
        format!("queue {queue} is not there (wrong EVENTS_EXCHANGE, or run `talentshare topology`)")
    })?;
    Ok(declared.message_count())
}

/// What `list` found in one dead-letter queue.
struct Browsed {
    consumer: &'static str,
    /// Messages waiting when it looked (more than `letters` when over `--limit`).
    total: u32,
    letters: Vec<DeadLetter>,
}

async fn list(conn: &Connection, topology: &Topology, args: &ListArgs) -> anyhow::Result<ExitCode> {
    let mut browsed = Vec::new();
    for spec in CONSUMERS
        .iter()
        .filter(|c| args.consumer.as_deref().is_none_or(|name| name == c.name))
    {
        let queue = topology.dead_letter_queue(spec.name);
        let channel = bounded(conn.create_channel()).await?;
        let total = ready_count(&channel, &queue).await?;
        let mut letters = Vec::new();
        let mut last_tag = None;
        let taken = async {
            while letters.len() < args.limit as usize {
                let Some(letter) = take(&channel, &queue).await? else {
                    break;
                };
                last_tag = Some(letter.delivery_tag);
                letters.push(letter);
            }
            anyhow::Ok(())
        }
        .await;
        // Hand back even after a failed get; if this fails too, closing does it.
        let held = u32::try_from(letters.len()).unwrap_or(u32::MAX);
        let handed_back = hand_back(&channel, &queue, last_tag, held).await;
        let _ = channel.close(200, "dlq listed".into()).await;
        taken?;
        handed_back?;
        browsed.push(Browsed {
            consumer: spec.name,
            total: total.max(letters.len() as u32),
            letters,
        });
    }
    if args.json {
        for b in &browsed {
            for letter in &b.letters {
                println!("{}", json_line(topology, b.consumer, letter));
            }
            if (b.letters.len() as u32) < b.total {
                eprintln!(
                    "{}: {} of {} shown (raise --limit)",
                    topology.dead_letter_queue(b.consumer),
                    b.letters.len(),
                    b.total
                );
            }
        }
    } else {
        print!("{}", table(&browsed));
        print!("{}", summary(topology, &browsed));
    }
    Ok(ExitCode::SUCCESS)
}

fn first_death(death: &Death) -> Option<String> {
    death.first_at.map(|at| {
        prost_types::Timestamp {
            seconds: i64::try_from(at).unwrap_or(i64::MAX),
            nanos: 0,
        }
        .to_string()
    })
}

fn json_line(topology: &Topology, consumer: &str, letter: &DeadLetter) -> serde_json::Value {
    let envelope = letter.envelope.as_ref();
    serde_json::json!({
        "consumer": consumer,
        "queue": topology.dead_letter_queue(consumer),
        "decodable": envelope.is_some(),
        "event_id": envelope.map(|e| &e.event_id),
        "event_type": envelope.map(|e| &e.event_type),
        "aggregate_id": envelope.map(|e| &e.aggregate_id),
        "aggregate_version": envelope.map(|e| e.aggregate_version),
        "occurred_at": envelope.and_then(|e| e.occurred_at).map(|t| t.to_string()),
        "reason": letter.death.reason,
        "death_count": letter.death.count,
        "first_death": first_death(&letter.death),
        "body_bytes": letter.body.len(),
    })
}

fn table(browsed: &[Browsed]) -> String {
    let header = [
        "CONSUMER",
        "EVENT_ID",
        "EVENT_TYPE",
        "AGGREGATE_ID",
        "REASON",
        "DEATHS",
        "FIRST_DEATH",
    ]
    .map(str::to_owned);
    let mut rows = vec![header];
    for b in browsed {
        for letter in &b.letters {
            let (id, kind, aggregate) = match &letter.envelope {
                Some(e) => (
                    e.event_id.clone(),
                    e.event_type.clone(),
                    e.aggregate_id.clone(),
                ),
                None => (letter.to_string(), "-".to_owned(), "-".to_owned()),
            };
            rows.push([
                b.consumer.to_owned(),
                id,
                kind,
                aggregate,
                letter
                    .death
                    .reason
                    .clone()
                    .unwrap_or_else(|| "-".to_owned()),
                letter.death.count.to_string(),
                first_death(&letter.death).unwrap_or_else(|| "-".to_owned()),
            ]);
        }
    }
    if rows.len() == 1 {
        return String::new();
    }
    let mut widths = [0; 7];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:width$}"))
            .collect();
        out += cells.join("  ").trim_end();
        out.push('\n');
    }
    out
}

/// One line per dead-letter queue: how many messages, and how many of those shown
/// were dead-lettered for each reason.
fn summary(topology: &Topology, browsed: &[Browsed]) -> String {
    let mut out = String::new();
    for b in browsed {
        let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
        for letter in &b.letters {
            *reasons
                .entry(letter.death.reason.as_deref().unwrap_or("unknown"))
                .or_default() += 1;
        }
        let reasons = reasons
            .iter()
            .map(|(reason, n)| format!("{reason} {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        let shown = b.letters.len();
        out += &match (shown, shown as u32 == b.total) {
            (0, _) => format!("{}: 0 dead-lettered\n", b.consumer),
            (_, true) => format!("{}: {} dead-lettered ({reasons})\n", b.consumer, b.total),
            (_, false) => format!(
                "{}: {} dead-lettered; of the {shown} shown: {reasons} (raise --limit to see more of {})\n",
                b.consumer,
                b.total,
                topology.dead_letter_queue(b.consumer)
            ),
        };
    }
    out
}

async fn replay(
    conn: &Connection,
    topology: &Topology,
    args: &ReplayArgs,
) -> anyhow::Result<ExitCode> {
    let dlq = topology.dead_letter_queue(&args.consumer);
    let target = topology.queue(&args.consumer);
    let channel = bounded(conn.create_channel()).await?;
    bounded(channel.confirm_select(ConfirmSelectOptions::default())).await?;
    // The target must exist: publishing to the default exchange with no such queue
    // would be returned unroutable, so refuse before taking anything.
    ready_count(&channel, &target).await?;
    let present = ready_count(&channel, &dlq).await?;
    let requested: BTreeSet<&str> = args.event_id.iter().map(String::as_str).collect();
    let mut found = BTreeSet::new();
    let (mut replayed, mut undecodable) = (0_u32, 0_u32);
    let mut last_kept = None;
    let mut kept = 0_u32;
    let verb = if args.dry_run {
        "would replay"
    } else {
        "replayed"
    };

    let outcome = async {
        for _ in 0..present {
            // Every message looked at is held until the end and then requeued, which
            // counts as a delivery on the dead-letter queue: look no further than needed.
            if !args.all && found.len() == requested.len() {
                break;
            }
            let Some(letter) = take(&channel, &dlq).await? else {
                break;
            };
            let chosen = match letter.event_id() {
                Some(id) if args.all => Some(id),
                Some(id) => requested.get(id).copied(),
                None => {
                    undecodable += 1;
                    None
                }
            };
            let Some(id) = chosen else {
                last_kept = Some(letter.delivery_tag);
                kept += 1;
                continue;
            };
            found.insert(id.to_owned());
            if args.dry_run {
                last_kept = Some(letter.delivery_tag);
                kept += 1;
            } else {
                republish(&channel, &target, &letter).await?;
                bounded(channel.basic_ack(letter.delivery_tag, BasicAckOptions::default()))
                    .await
                    .with_context(|| format!("removing {id} from {dlq} after replaying it"))?;
            }
            replayed += 1;
            println!("{verb} {letter} to {target}");
        }
        anyhow::Ok(())
    }
    .await;
    let handed_back = hand_back(&channel, &dlq, last_kept, kept).await;
    let _ = channel.close(200, "dlq replayed".into()).await;
    outcome?;
    handed_back?;

    let mut line = format!(
        "{verb} {replayed} event{} from {dlq} to {target}",
        if replayed == 1 { "" } else { "s" }
    );
    if args.dry_run {
        line += "; dry run, nothing changed";
    } else {
        let kept = present.saturating_sub(replayed);
        line += &format!("; {kept} kept in the dead-letter queue");
    }
    if undecodable > 0 {
        line += &format!(" (skipped {undecodable} undecodable)");
    }
    println!("{line}");
    let missing: Vec<&str> = requested
        .iter()
        .copied()
        .filter(|id| !found.contains(*id))
        .collect();
    if !missing.is_empty() {
        anyhow::bail!(
            "not in {dlq} (already replayed, or a wrong id): {}",
            missing.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Publishes `letter` to `queue` through the default exchange and waits for the
/// broker's confirm; an error means it may not have arrived, so the caller keeps the
/// dead letter.
async fn republish(channel: &Channel, queue: &str, letter: &DeadLetter) -> anyhow::Result<()> {
    let confirm = bounded(async {
        channel
            .basic_publish(
                "".into(),
                queue.into(),
                // Mandatory: a queue deleted meanwhile comes back as returned instead
                // of vanishing behind a positive confirm.
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                &letter.body,
                replay_properties(&letter.properties),
            )
            .await?
            .await
    })
    .await
    .with_context(|| format!("replaying {letter} to {queue}"))?;
    match confirm {
        Confirmation::Ack(None) => Ok(()),
        Confirmation::Ack(Some(_)) => {
            anyhow::bail!("replaying {letter}: {queue} is gone, the broker returned it")
        }
        Confirmation::Nack(_) => anyhow::bail!("replaying {letter}: the broker refused it"),
        Confirmation::NotRequested => {
            anyhow::bail!("replaying {letter}: the channel lost publisher confirms")
        }
    }
}

#[cfg(test)]
mod tests {
    use lapin::types::FieldArray;

    use super::*;

    fn long(s: &str) -> AMQPValue {
        AMQPValue::LongString(s.into())
    }

    fn death_entry(reason: &str, count: i64, time: u64) -> AMQPValue {
        let mut entry = FieldTable::default();
        entry.insert("reason".into(), long(reason));
        entry.insert("queue".into(), long("talentshare.events.order"));
        entry.insert("count".into(), AMQPValue::LongLongInt(count));
        entry.insert("time".into(), AMQPValue::Timestamp(time));
        AMQPValue::FieldTable(entry)
    }

    fn dead_letter_headers() -> FieldTable {
        let mut headers = FieldTable::default();
        headers.insert(
            "x-death".into(),
            AMQPValue::FieldArray(FieldArray::from(vec![
                death_entry("delivery_limit", 2, 1_700_000_100),
                death_entry("rejected", 1, 1_700_000_000),
            ])),
        );
        headers.insert("x-first-death-reason".into(), long("rejected"));
        headers.insert(
            "x-first-death-queue".into(),
            long("talentshare.events.order"),
        );
        headers.insert("x-last-death-reason".into(), long("delivery_limit"));
        headers.insert("x-delivery-count".into(), AMQPValue::LongLongInt(3));
        headers.insert("traceparent".into(), long("00-abc-def-01"));
        headers
    }

    #[test]
    fn death_sums_the_counts_and_takes_the_first_reason_and_time() {
        let death = Death::from_headers(Some(&dead_letter_headers()));
        assert_eq!(
            death,
            Death {
                reason: Some("rejected".into()),
                count: 3,
                first_at: Some(1_700_000_000),
            }
        );
        assert_eq!(first_death(&death).as_deref(), Some("2023-11-14T22:13:20Z"));
    }

    #[test]
    fn death_falls_back_to_the_oldest_entry_and_copes_with_no_history() {
        let mut headers = FieldTable::default();
        headers.insert(
            "x-death".into(),
            AMQPValue::FieldArray(FieldArray::from(vec![death_entry("delivery_limit", 1, 5)])),
        );
        assert_eq!(
            Death::from_headers(Some(&headers)).reason.as_deref(),
            Some("delivery_limit")
        );
        assert_eq!(Death::from_headers(None), Death::default());
        assert_eq!(
            Death::from_headers(Some(&FieldTable::default())),
            Death::default()
        );
    }

    #[test]
    fn a_replay_keeps_the_publishers_headers_and_drops_the_brokers_history() {
        let original = BasicProperties::default()
            .with_message_id("e-1".into())
            .with_delivery_mode(1)
            .with_headers(dead_letter_headers());
        let replayed = replay_properties(&original);
        let headers = replayed.headers().clone().unwrap();
        let names: Vec<&str> = headers.inner().keys().map(ShortString::as_str).collect();
        assert_eq!(names, ["traceparent"]);
        assert_eq!(replayed.message_id(), original.message_id());
        assert_eq!(*replayed.delivery_mode(), Some(2));
    }

    #[test]
    fn an_empty_listing_prints_no_table_but_still_counts() {
        let browsed = [Browsed {
            consumer: "order",
            total: 0,
            letters: Vec::new(),
        }];
        assert_eq!(table(&browsed), "");
        assert_eq!(
            summary(&Topology::new("talentshare.events"), &browsed),
            "order: 0 dead-lettered\n"
        );
    }
}
