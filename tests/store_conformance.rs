//! The storage conformance suite on the embedded backend. Guards against a backend that loses,
//! reorders or double-commits events, or lets a stale writer win.

use warden::store::conformance;
use warden::store::embedded::EmbeddedStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    conformance::run_all(&store).await;
}

#[cfg(feature = "mongodb")]
mod mongo_support;

/// The same suite on MongoDB (the test server named by `WARDEN_TEST_MONGODB_URI`), each run on a
/// database of its own.
#[cfg(feature = "mongodb")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_store_passes_the_conformance_suite() {
    let (store, _db) = mongo_support::fresh_store("conformance").await;
    conformance::run_all(store.as_ref()).await;
}

/// The same suite with snapshots and views written by one `update` command per collection, as on
/// a MongoDB before 8.0 (no `bulkWrite`).
#[cfg(feature = "mongodb")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongo_store_without_bulk_write_passes_the_conformance_suite() {
    let config = warden::store::mongo::MongoConfig {
        bulk_write: false,
        ..Default::default()
    };
    let store = warden::store::mongo::MongoStore::connect_to(
        &mongo_support::test_uri(),
        Some(&mongo_support::fresh_db_name("conformance_update")),
        config,
    )
    .await
    .expect("the test MongoDB is reachable");
    assert!(!store.uses_bulk_write());
    conformance::run_all(&store).await;
}
