//! The helpers every service test stands on: `on_both_backends!` runs a test once
//! per engine, each on a fresh database of that engine, and `retry_write` rides out
//! transient write failures but not lasting ones.

use std::sync::atomic::{AtomicU32, Ordering};

use sea_orm::{ConnectionTrait, DbBackend};
use testkit::{Backend, TestDatabase, on_both_backends, retry_write};

on_both_backends!(each_test_gets_a_fresh_database_of_its_backend);

async fn each_test_gets_a_fresh_database_of_its_backend(backend: Backend) {
    let db = TestDatabase::create(backend).await;
    let conn = db.connect().await;
    let expected = match backend {
        Backend::Sqlite => DbBackend::Sqlite,
        Backend::Postgres => DbBackend::Postgres,
    };
    assert_eq!(conn.get_database_backend(), expected);
    conn.execute_unprepared("CREATE TABLE fresh (id INTEGER PRIMARY KEY)")
        .await
        .expect("a fresh database has no table of that name yet");
    let _ = conn.close().await;
    db.drop_database().await;
}

#[tokio::test]
async fn retry_write_returns_the_first_success() {
    let tries = AtomicU32::new(0);
    let got = retry_write("a write that fails twice", || async {
        match tries.fetch_add(1, Ordering::SeqCst) {
            0 | 1 => Err("busy"),
            n => Ok(n),
        }
    })
    .await;
    assert_eq!(got, 2);
}

#[tokio::test]
#[should_panic(expected = "a write that always fails: \"broken\"")]
async fn retry_write_gives_up_naming_the_write_and_the_error() {
    retry_write::<(), _, _, _>("a write that always fails", || async { Err("broken") }).await;
}
