//! The shared store steps (`platform::store`) against real SQLite and PostgreSQL: a
//! version-checked update that lost its race changes nothing and says so, insert-once
//! keeps one row per key, a page says whether more follow, a walk moves past
//! unreadable rows (a state no variant has among them), and on PostgreSQL a row lock makes a second writer wait.

use std::time::Duration;

use platform::store::{self, Lock};
use sea_orm::entity::prelude::*;
use sea_orm::{Condition, ConnectionTrait, DatabaseConnection, Set, TransactionTrait};
use testkit::{Backend, TestDatabase, on_both_backends};
use uuid::Uuid;

/// A table with what the services' tables have in common: a UUID text key, a unique
/// idempotency key, a status stored as text, and a version.
mod thing {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Copy, Debug, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
    #[sea_orm(rs_type = "String", db_type = "String(StringLen::N(8))")]
    pub enum State {
        #[sea_orm(string_value = "OPEN")]
        Open,
        #[sea_orm(string_value = "SHUT")]
        Shut,
    }

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "things")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        #[sea_orm(unique)]
        pub slot: String,
        pub owner: String,
        pub state: String,
        pub version: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

use thing::State;

async fn things(backend: Backend) -> (TestDatabase, DatabaseConnection) {
    let db = TestDatabase::create(backend).await;
    let conn = db.connect().await;
    conn.execute_unprepared(
        "CREATE TABLE things (id VARCHAR(36) PRIMARY KEY, slot VARCHAR(36) NOT NULL UNIQUE, \
         owner VARCHAR(16) NOT NULL, state VARCHAR(8) NOT NULL, version BIGINT NOT NULL)",
    )
    .await
    .expect("create things");
    (db, conn)
}

fn row(id: Uuid, owner: &str, state: State, version: i64) -> thing::ActiveModel {
    thing::ActiveModel {
        id: Set(id.to_string()),
        slot: Set(id.to_string()),
        owner: Set(owner.to_owned()),
        state: Set(store::stored::<State>(state)),
        version: Set(version),
    }
}

/// Inserts `n` things of `owner`, oldest first, and returns their ids in that order.
async fn insert_things(conn: &DatabaseConnection, owner: &str, n: usize) -> Vec<Uuid> {
    let mut ids = Vec::new();
    for _ in 0..n {
        let id = Uuid::now_v7();
        thing::Entity::insert(row(id, owner, State::Open, 1))
            .exec_without_returning(conn)
            .await
            .expect("insert");
        ids.push(id);
    }
    ids
}

/// A store's error: the database's, or a row it cannot read.
#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error(transparent)]
    Db(#[from] DbErr),
    #[error("thing {0} is unreadable")]
    Unreadable(String),
}

/// Reads a thing; one owned by "bad", or in a state no variant has, stands for a row
/// that does not parse.
fn convert(m: thing::Model) -> Result<Uuid, ReadError> {
    if m.owner == "bad" || store::read_stored::<State>(&m.state).is_none() {
        return Err(ReadError::Unreadable(m.id));
    }
    Uuid::parse_str(&m.id).map_err(|_| ReadError::Unreadable(m.id))
}

async fn find(conn: &DatabaseConnection, id: Uuid) -> Option<thing::Model> {
    store::find_one(
        conn,
        thing::Entity::find_by_id(id.to_string()),
        Lock::Unlocked,
        Ok::<_, DbErr>,
    )
    .await
    .expect("find")
}

async fn a_version_checked_update_that_lost_its_race_changes_nothing(backend: Backend) {
    let (db, conn) = things(backend).await;
    let id = Uuid::now_v7();
    thing::Entity::insert(row(id, "a", State::Open, 1))
        .exec_without_returning(&conn)
        .await
        .expect("insert");
    let read_at = |version: i64| {
        Condition::all()
            .add(thing::Column::Version.eq(version))
            .add(thing::Column::State.eq(State::Open))
    };

    // Two writers read version 1; the first to write wins.
    store::update_if_unchanged(&conn, row(id, "winner", State::Shut, 2), read_at(1))
        .await
        .expect("the first write");
    let lost = store::update_if_unchanged(&conn, row(id, "loser", State::Shut, 2), read_at(1))
        .await
        .expect_err("the second write read a version that is gone");

    assert!(matches!(lost, DbErr::RecordNotUpdated), "{lost:?}");
    let stored = find(&conn, id).await.expect("the row");
    assert_eq!(
        (
            stored.owner.as_str(),
            store::read_stored::<State>(&stored.state),
            stored.version
        ),
        ("winner", Some(State::Shut), 2),
        "the winner's write stands"
    );
    let missing =
        store::update_if_unchanged(&conn, row(Uuid::now_v7(), "x", State::Open, 2), read_at(1))
            .await
            .expect_err("no such row");
    assert!(matches!(missing, DbErr::RecordNotUpdated), "{missing:?}");
    drop(conn);
    db.drop_database().await;
}

async fn insert_once_keeps_one_row_per_unique_key(backend: Backend) {
    let (db, conn) = things(backend).await;
    let first = row(Uuid::now_v7(), "a", State::Open, 1);
    let mut same_slot = row(Uuid::now_v7(), "b", State::Open, 1);
    same_slot.slot = first.slot.clone();

    let inserted = store::insert_once(&conn, first, thing::Column::Slot)
        .await
        .expect("first insert");
    let again = store::insert_once(&conn, same_slot, thing::Column::Slot)
        .await
        .expect("second insert");

    assert!(inserted, "the first call inserts");
    assert!(!again, "the second finds the slot taken");
    let rows = thing::Entity::find().all(&conn).await.expect("rows");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].owner, "a", "the first row stands");
    drop(conn);
    db.drop_database().await;
}

async fn pages_run_newest_first_and_say_whether_more_follow(backend: Backend) {
    let (db, conn) = things(backend).await;
    let mine = insert_things(&conn, "me", 5).await;
    insert_things(&conn, "other", 2).await;
    let select = || thing::Entity::find().filter(thing::Column::Owner.eq("me"));
    let page = |after: Option<Uuid>, limit: u64| {
        store::page_newest_first(&conn, select(), thing::Column::Id, after, limit, convert)
    };

    let (first, more) = page(None, 2).await.expect("page 1");
    assert_eq!((first.as_slice(), more), (&[mine[4], mine[3]][..], true));
    let (second, more) = page(Some(mine[3]), 2).await.expect("page 2");
    assert_eq!((second.as_slice(), more), (&[mine[2], mine[1]][..], true));
    let (last, more) = page(Some(mine[1]), 2).await.expect("page 3");
    assert_eq!((last.as_slice(), more), (&[mine[0]][..], false));
    let (exact, more) = page(Some(mine[2]), 2).await.expect("an exact last page");
    assert_eq!(
        (exact.as_slice(), more),
        (&[mine[1], mine[0]][..], false),
        "a page that ends exactly at the last row says nothing more follows"
    );
    let (all, more) = page(None, 10).await.expect("one page");
    assert_eq!((all.len(), more), (5, false));
    drop(conn);
    db.drop_database().await;
}

async fn a_walk_skips_unreadable_rows_and_still_moves_past_them(backend: Backend) {
    let (db, conn) = things(backend).await;
    let good = insert_things(&conn, "good", 1).await;
    let bad = insert_things(&conn, "bad", 1).await;
    let later = insert_things(&conn, "good", 1).await;
    // A state written by a newer version (or by hand): one unreadable row, not a
    // query that fails for the whole page.
    let unknown = insert_things(&conn, "good", 1).await;
    conn.execute_unprepared(&format!(
        "UPDATE things SET state = 'LOST' WHERE id = '{}'",
        unknown[0]
    ))
    .await
    .expect("an unknown state");
    let step = |after: Option<Uuid>| {
        store::walk_step(
            &conn,
            "things",
            thing::Entity::find(),
            thing::Column::Id,
            after,
            2,
            convert,
        )
    };

    let (first, next) = step(None).await.expect("step 1");
    assert_eq!(first, good, "the unreadable row is skipped");
    assert_eq!(
        next,
        Some(bad[0]),
        "a full step continues after its last row"
    );
    let (second, next) = step(next).await.expect("step 2");
    assert_eq!(second, later, "the row in an unknown state is skipped");
    assert_eq!(next, Some(unknown[0]));
    let (third, next) = step(next).await.expect("step 3");
    assert!(third.is_empty());
    assert_eq!(next, None, "a short step ends the walk");

    let batch = store::batch(&conn, "things", thing::Entity::find(), 10, convert)
        .await
        .expect("batch");
    assert_eq!(batch, vec![good[0], later[0]], "a batch skips it too");
    drop(conn);
    db.drop_database().await;
}

on_both_backends!(
    a_version_checked_update_that_lost_its_race_changes_nothing,
    insert_once_keeps_one_row_per_unique_key,
    pages_run_newest_first_and_say_whether_more_follow,
    a_walk_skips_unreadable_rows_and_still_moves_past_them,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_a_row_lock_makes_a_second_writer_wait_for_the_first() {
    let (db, conn) = things(Backend::Postgres).await;
    let id = insert_things(&conn, "a", 1).await[0];
    let lock = |conn: DatabaseConnection| async move {
        let txn = conn.begin().await.expect("begin");
        store::find_one(
            &txn,
            thing::Entity::find_by_id(id.to_string()),
            Lock::ForUpdate,
            Ok::<_, DbErr>,
        )
        .await
        .expect("locked read")
        .expect("the row");
        txn
    };

    let first = lock(conn.clone()).await;
    let mut second = tokio::spawn(lock(conn.clone()));
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut second)
            .await
            .is_err(),
        "the second locked read waits while the first transaction holds the row"
    );
    first.commit().await.expect("commit");
    let second = tokio::time::timeout(Duration::from_secs(10), second)
        .await
        .expect("the second read goes on once the first commits")
        .expect("task");
    second.commit().await.expect("commit");
    drop(conn);
    db.drop_database().await;
}
