//! What every service's sea-orm store does the same way, written once and generic over
//! the entity: read one row (row-locked when it is about to change), insert a row once
//! per unique key, write a change only over the row as it was read, read one page of a
//! listing by keyset, and read the batches of a background pass without letting one
//! unreadable row stop it.
//!
//! The services keep their ids as UUID v7 text (canonical, lower case) in a string
//! primary key, so text order is creation order on every backend; the paging helpers
//! rely on that and take their cursor as a [`Uuid`].
//!
//! Times compare in SQL on both backends: on SQLite sea-orm keeps a `DateTimeUtc` as
//! RFC 3339 text ending in `+00:00`, and such text sorts in time order even when the
//! fraction has a varying number of digits ('+' sorts before every digit), so a store
//! may filter a time column with `<` and `>` (NULL never passes either).
//!
//! Status columns are sea-orm active enums ([`stored`], [`read_stored`]) kept in plain
//! text columns: filters name the enum, and a row whose text no variant has is one
//! corrupt row, reported and skipped like any other, not a query that fails for every
//! row of its page.
//!
//! Nothing here knows a table or a business rule: the stores say which rows, and how a
//! row becomes a domain value (`convert`, which reports a row it cannot read).

use std::fmt::Display;

use sea_orm::sea_query::{LockType, OnConflict, ValueType};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DbBackend, DbErr, EntityTrait,
    Iterable, ModelTrait, PrimaryKeyToColumn, QueryFilter, QueryOrder, QuerySelect, Select,
};
use uuid::Uuid;

/// Whether a read takes the row lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lock {
    /// A plain read.
    Unlocked,
    /// `SELECT … FOR UPDATE` on PostgreSQL, held until the transaction ends, so that
    /// concurrent read-decide-write transactions on one row take turns. SQLite has no
    /// row locks and needs none: it runs one writer at a time (and the pool has a
    /// single connection, see [`crate::db::connect_url`]).
    ForUpdate,
}

/// Reads the one row `select` finds, locked as `lock` says, and converts it.
///
/// # Errors
///
/// The database's error, or `convert`'s for a row it cannot read.
pub async fn find_one<E, C, T, Err>(
    conn: &C,
    select: Select<E>,
    lock: Lock,
    convert: impl FnOnce(E::Model) -> Result<T, Err>,
) -> Result<Option<T>, Err>
where
    E: EntityTrait,
    C: ConnectionTrait,
    Err: From<DbErr>,
{
    locked(conn, select, lock)
        .one(conn)
        .await?
        .map(convert)
        .transpose()
}

/// Reads every row `select` finds, locked as `lock` says, and converts them. Give
/// `select` an order when it locks several rows, so that transactions locking
/// overlapping sets take them in the same order and wait instead of deadlocking.
///
/// # Errors
///
/// The database's error, or `convert`'s for a row it cannot read.
pub async fn find_all<E, C, T, Err>(
    conn: &C,
    select: Select<E>,
    lock: Lock,
    convert: impl Fn(E::Model) -> Result<T, Err>,
) -> Result<Vec<T>, Err>
where
    E: EntityTrait,
    C: ConnectionTrait,
    Err: From<DbErr>,
{
    locked(conn, select, lock)
        .all(conn)
        .await?
        .into_iter()
        .map(convert)
        .collect()
}

/// `select` with the row lock `lock` asks for, where the backend has row locks.
fn locked<E: EntityTrait, C: ConnectionTrait>(
    conn: &C,
    select: Select<E>,
    lock: Lock,
) -> Select<E> {
    match lock {
        Lock::ForUpdate if conn.get_database_backend() == DbBackend::Postgres => {
            select.lock(LockType::Update)
        }
        _ => select,
    }
}

/// Inserts `row` unless a row with the same `unique` value exists
/// (`ON CONFLICT (unique) DO NOTHING`). Returns whether this call inserted it: of any
/// number of concurrent calls with one key exactly one does, and the others (which
/// waited for it to commit) can read the winner.
///
/// # Errors
///
/// The database's error.
pub async fn insert_once<A, C>(
    conn: &C,
    row: A,
    unique: <A::Entity as EntityTrait>::Column,
) -> Result<bool, DbErr>
where
    A: ActiveModelTrait,
    C: ConnectionTrait,
{
    let inserted = A::Entity::insert(row)
        .on_conflict(OnConflict::column(unique).do_nothing().to_owned())
        .exec_without_returning(conn)
        .await?;
    Ok(inserted == 1)
}

/// Writes `row` over the row with its primary key, only while that row still matches
/// `expected`: at least the version it was read with, plus whatever else a change
/// may not be made without (its status, a pending claim). `UPDATE … WHERE id = ? AND
/// version = ? …`.
///
/// Under [`Lock::ForUpdate`] the condition always holds; it is what turns a race lost
/// without that lock (a read outside the transaction, a backend without row locks)
/// into an error instead of a lost update.
///
/// # Errors
///
/// [`DbErr::RecordNotUpdated`] when no row matched `expected`;
/// [`DbErr::PrimaryKeyNotSet`] when `row` lacks its key; else the database's error.
pub async fn update_if_unchanged<A, C>(conn: &C, row: A, expected: Condition) -> Result<(), DbErr>
where
    A: ActiveModelTrait,
    C: ConnectionTrait,
{
    // Filtered by the primary key, so at most one row matches; none is the error.
    A::Entity::update(row)
        .validate()?
        .filter(expected)
        .exec_without_returning(conn)
        .await?;
    Ok(())
}

/// One page of a listing, newest first: up to `limit` rows of `select` whose `id` is
/// below `after` (the last id of the previous page), and whether more follow. Reads
/// `limit + 1` rows to know that without a count.
///
/// A listing answers a caller, so an unreadable row fails the page rather than
/// quietly leaving a hole in it.
///
/// # Errors
///
/// The database's error, or `convert`'s for a row it cannot read.
pub async fn page_newest_first<E, C, T, Err>(
    conn: &C,
    select: Select<E>,
    id: E::Column,
    after: Option<Uuid>,
    limit: u64,
    convert: impl Fn(E::Model) -> Result<T, Err>,
) -> Result<(Vec<T>, bool), Err>
where
    E: EntityTrait,
    C: ConnectionTrait,
    Err: From<DbErr>,
{
    let mut select = select.order_by_desc(id);
    if let Some(after) = after {
        select = select.filter(id.lt(after.to_string()));
    }
    let rows = select.limit(limit.saturating_add(1)).all(conn).await?;
    let more = rows.len() as u64 > limit;
    let items = rows
        .into_iter()
        .take(usize::try_from(limit).unwrap_or(usize::MAX))
        .map(convert)
        .collect::<Result<Vec<_>, _>>()?;
    Ok((items, more))
}

/// One batch of a background pass: up to `limit` rows of `select` (which orders
/// them), each unreadable one skipped and reported (see [`readable_rows`]).
///
/// # Errors
///
/// The database's error.
pub async fn batch<E, C, T, Err>(
    conn: &C,
    pass: &str,
    select: Select<E>,
    limit: u64,
    convert: impl Fn(E::Model) -> Result<T, Err>,
) -> Result<Vec<T>, DbErr>
where
    E: EntityTrait,
    C: ConnectionTrait,
    Err: Display,
{
    let rows = select.limit(limit).all(conn).await?;
    Ok(readable_rows(pass, rows, row_key, convert))
}

/// One step of a walk over `select`'s rows in `id` order (the anti-entropy passes):
/// up to `limit` rows after `after`, each unreadable one skipped and reported, and the
/// id the next step starts after, `None` once the walk has reached the end. A skipped
/// row still moves the walk on.
///
/// # Errors
///
/// The database's error.
pub async fn walk_step<E, C, T, Err>(
    conn: &C,
    pass: &str,
    select: Select<E>,
    id: E::Column,
    after: Option<Uuid>,
    limit: u64,
    convert: impl Fn(E::Model) -> Result<T, Err>,
) -> Result<(Vec<T>, Option<Uuid>), DbErr>
where
    E: EntityTrait,
    C: ConnectionTrait,
    Err: Display,
{
    let mut select = select.order_by_asc(id);
    if let Some(after) = after {
        select = select.filter(id.gt(after.to_string()));
    }
    let rows = select.limit(limit).all(conn).await?;
    // A short step is the last; a full one may be followed by more. An id that is not
    // a UUID cannot be a cursor: the walk then starts over, as at its end.
    let next = if (rows.len() as u64) < limit {
        None
    } else {
        rows.last()
            .and_then(|m| <String as ValueType>::try_from(m.get(id)).ok())
            .and_then(|s| Uuid::parse_str(&s).ok())
    };
    Ok((readable_rows(pass, rows, row_key, convert), next))
}

/// Converts the rows a background pass read into domain values, skipping each one that
/// cannot be read and reporting it by id, so one bad row cannot stop every later pass
/// (it stays in the table for an operator; the pass goes on with the others).
pub fn readable_rows<M, T, E: Display>(
    pass: &str,
    rows: Vec<M>,
    id: impl Fn(&M) -> String,
    convert: impl Fn(M) -> Result<T, E>,
) -> Vec<T> {
    rows.into_iter()
        .filter_map(|row| {
            let row_id = id(&row);
            convert(row)
                .map_err(|e| {
                    tracing::error!(pass, id = %row_id, error = %e, "unreadable row skipped");
                })
                .ok()
        })
        .collect()
}

/// Reads a nullable UUID text column.
///
/// # Errors
///
/// The parse error of text that is not a UUID.
pub fn optional_uuid(text: Option<&str>) -> Result<Option<Uuid>, uuid::Error> {
    text.map(Uuid::parse_str).transpose()
}

/// The primary key of `model` as text, for a log line.
fn row_key<M: ModelTrait>(model: &M) -> String {
    <M::Entity as EntityTrait>::PrimaryKey::iter()
        .map(|key| {
            let value = model.get(key.into_column());
            <String as ValueType>::try_from(value.clone()).unwrap_or_else(|_| format!("{value:?}"))
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The text an active enum is stored as.
pub fn stored<E: sea_orm::ActiveEnum<Value = String>>(value: impl Into<E>) -> String {
    value.into().to_value()
}

/// Reads a stored active enum; `None` for text no variant has (a corrupt row).
pub fn read_stored<E: sea_orm::ActiveEnum<Value = String>>(text: &str) -> Option<E> {
    E::try_from_value(&text.to_owned()).ok()
}

/// The booking kept in three nullable columns (talent, session start, minutes): all
/// three or none. Returns the column at fault for a row that breaks that.
pub fn booking_columns(
    talent_id: Option<&str>,
    session_start: Option<chrono::DateTime<chrono::Utc>>,
    session_minutes: Option<i32>,
) -> Result<Option<crate::values::Booking>, &'static str> {
    match (talent_id, session_start, session_minutes) {
        (None, None, None) => Ok(None),
        (Some(talent), Some(session_start), Some(session_minutes)) => {
            Ok(Some(crate::values::Booking {
                talent_id: crate::values::ExternalId::try_from(talent.to_owned())
                    .map_err(|_| "talent_id")?,
                session_start,
                session_minutes,
            }))
        }
        _ => Err("booking columns are partly empty"),
    }
}
