//! The storage conformance suite (`warden_testkit::conformance`), one named test per check per
//! backend, so a failure names its check and does not hide the others. Guards against a backend
//! that loses, reorders or double-commits events, lets a stale writer win, or leaves the read
//! model behind the log.

use warden_testkit as support;

use std::sync::Arc;
use support::DataDir;
use warden_store_embedded::EmbeddedStore;
use warden_testkit::conformance;

/// For one backend (`$open`: an async fn giving a fresh, empty store and whatever must live as
/// long as it), a module with one test per listed check.
macro_rules! conformance_tests {
    ($backend:ident, $open:path) => {
        mod $backend {
            use super::*;
            conformance_tests!(@checks $open;
                append_and_load,
                expected_version_conflict_is_typed,
                one_winner_among_racing_appends,
                repeated_command_id_is_a_duplicate,
                a_command_commits_all_its_events_or_none,
                append_many_settles_each_command_in_order,
                history_pages_in_order,
                loaded_state_equals_full_replay,
                the_view_follows_each_commit,
                read_model_only_moves_forward,
                misnumbered_events_are_refused,
                a_broken_chain_commits_nothing_after_the_break,
            );
        }
    };
    (@checks $open:path; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let (store, _keep) = $open().await;
                conformance::$check(store.as_ref()).await;
            }
        )*
    };
}

async fn embedded_store() -> (Arc<EmbeddedStore>, DataDir) {
    let dir = DataDir::temp();
    (dir.open(), dir)
}

conformance_tests!(embedded, embedded_store);

/// Every check that `run_all` runs is listed above (a backend's own tests call `run_all`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_all_runs_on_a_fresh_embedded_store() {
    let (store, _dir) = embedded_store().await;
    conformance::run_all(store.as_ref()).await;
}

/// MongoDB: the test server named by `WARDEN_TEST_MONGODB_URI`, a database of its own per test.
#[cfg(feature = "mongodb")]
async fn mongo_store() -> (Arc<warden_store_mongo::MongoStore>, String) {
    support::mongo::fresh_store("conformance").await
}

/// MongoDB with snapshots and views written by one `update` command per collection, as on a
/// MongoDB before 8.0 (no `bulkWrite`).
#[cfg(feature = "mongodb")]
async fn mongo_store_without_bulk_write() -> (Arc<warden_store_mongo::MongoStore>, ()) {
    let config = warden_store_mongo::MongoConfig {
        bulk_write: false,
        ..Default::default()
    };
    let store = warden_store_mongo::MongoStore::connect_to(
        &support::mongo::test_uri(),
        Some(&support::mongo::fresh_db_name("conformance_update")),
        config,
    )
    .await
    .expect("the test MongoDB is reachable");
    assert!(!store.uses_bulk_write());
    (Arc::new(store), ())
}

#[cfg(feature = "mongodb")]
conformance_tests!(mongo, mongo_store);
#[cfg(feature = "mongodb")]
conformance_tests!(mongo_without_bulk_write, mongo_store_without_bulk_write);
