//! The my page use cases: reading a customer's page (a page token must be one this
//! service issued for that customer), one entry, and opening a live watch (bounded
//! by the number of streams one instance serves). Who may ask is the gRPC adapter's
//! business; folding events in is the consumer's.

use std::sync::Arc;

use platform::values::ExternalId;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::changes::Changes;
use crate::domain::Entry;
use crate::store::{MyPageStore, StoreError};
use crate::watch::{self, Markers, Resume, WatchStream};

/// Why a use case failed.
#[derive(Debug, thiserror::Error)]
pub enum MyPageError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The page token names an entry of another customer (or none at all).
    #[error("the page token was not issued for this customer")]
    ForeignToken,
    /// Every WatchMyPage slot of this instance is taken.
    #[error("too many WatchMyPage streams on this server")]
    TooManyWatchers,
}

/// The my page use cases. Cheap to clone.
#[derive(Clone)]
pub struct MyPage {
    store: MyPageStore,
    changes: Changes,
    /// One permit per open WatchMyPage stream.
    watchers: Arc<Semaphore>,
    /// The service's shutdown token: open streams end with UNAVAILABLE when it
    /// fires, so the server's graceful drain does not wait on them.
    shutdown: CancellationToken,
}

impl MyPage {
    /// Use cases over `store`, streaming `changes` to at most `max_watchers`
    /// watchers until `shutdown`.
    pub fn new(
        store: MyPageStore,
        changes: Changes,
        max_watchers: usize,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            store,
            changes,
            watchers: Arc::new(Semaphore::new(max_watchers)),
            shutdown,
        }
    }

    /// One page of the customer's entries, newest first, after the entry `after`
    /// (which must be the customer's), and whether more follow.
    pub async fn page(
        &self,
        customer: &ExternalId,
        after: Option<Uuid>,
        limit: u64,
    ) -> Result<(Vec<Entry>, bool), MyPageError> {
        if let Some(after) = after
            && !self.store.belongs_to(after, customer).await?
        {
            return Err(MyPageError::ForeignToken);
        }
        Ok(self.store.page(customer, after, limit).await?)
    }

    /// The entry of one order, if any event about it has arrived.
    pub async fn entry(&self, order_id: Uuid) -> Result<Option<Entry>, MyPageError> {
        Ok(self.store.get(order_id).await?)
    }

    /// The number of the customer's latest change: a stream position beyond it (plus
    /// one) was not issued by this store.
    pub async fn change_number(&self, customer: &ExternalId) -> Result<i64, MyPageError> {
        Ok(self.store.change_number(customer).await?)
    }

    /// What `customer`'s resume tokens are valid for (see `MyPageStore::resume_scope`).
    pub async fn resume_scope(&self, customer: &ExternalId) -> Result<String, MyPageError> {
        Ok(self.store.resume_scope(customer).await?)
    }

    /// Opens a live stream of the customer's page: the current entries, then every
    /// change.
    pub fn watch(
        &self,
        customer: ExternalId,
        markers: Markers,
        resume: Resume,
    ) -> Result<WatchStream, MyPageError> {
        let permit = self
            .watchers
            .clone()
            .try_acquire_owned()
            .map_err(|_| MyPageError::TooManyWatchers)?;
        // Subscribe before the stream reads the current rows, so a change that
        // commits in between is sent (perhaps twice) rather than lost.
        let changes = self.changes.subscribe();
        Ok(watch::watch(
            self.store.clone(),
            customer,
            markers,
            resume,
            changes,
            self.shutdown.clone(),
            permit,
        ))
    }
}
