//! The few calls this crate makes on a [`ProjectionStore`]: its lease, its checkpoint and a
//! unit of work. Kept in one place so that changes of that contract touch one file.

use eventsource_core::{Checkpoint, LogFilter, ProjectionStore, StoreError};

/// Ownership of a name (relay or projection) in the store, with the checkpoint under it.
pub(crate) struct Owned<S: ProjectionStore> {
    // Dropping it releases the name; each unit of work is fenced by it.
    pub(crate) lease: S::Lease,
}

/// Waits until the caller is the only holder of `name` in `store`.
pub(crate) async fn own<S: ProjectionStore>(
    store: &S,
    name: &str,
    filter: &LogFilter,
) -> Result<Owned<S>, StoreError> {
    Ok(Owned {
        lease: store.acquire_lease(name, filter).await?,
    })
}

/// Starts a unit of work for the holder of `owned`.
pub(crate) async fn begin<S: ProjectionStore>(
    store: &S,
    owned: &Owned<S>,
) -> Result<S::Tx, StoreError> {
    store.begin(&owned.lease).await
}

/// Moves `name`'s checkpoint from `expected` to `to` with nothing else in the unit of work.
pub(crate) async fn advance<S: ProjectionStore>(
    store: &S,
    owned: &Owned<S>,
    name: &str,
    expected: Option<Checkpoint>,
    to: Checkpoint,
) -> Result<(), StoreError> {
    let tx = begin(store, owned).await?;
    store.commit(tx, name, expected, to).await
}
