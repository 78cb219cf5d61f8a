//! Unit tests of the embedded store: stored forms, layouts, views across a crash.

use super::*;
use warden_core::domain::{Balance, stamp};

#[test]
fn an_event_round_trips_through_its_stored_form() {
    let id = ResourceId::new();
    let command = CommandId::new();
    let events = stamp(
        id,
        41,
        command,
        warden_core::domain::Role::Player,
        Timestamp(7),
        vec![
            ResourceEvent::ResourceAllocated {
                amount: 3,
                reason: "shop".into(),
                balance: Balance {
                    amount: 9,
                    regen_carry: 12,
                    regen_at: Timestamp(7),
                },
                by: PlayerId::new("alice"),
            },
            ResourceEvent::ResourceLockExpired {
                expired_at: Timestamp(8),
            },
        ],
    );
    for e in &events {
        let stored = encode_event(e, &mut Vec::new()).unwrap();
        let back = decode_event(&event_key(id, e.version), &stored).unwrap();
        assert_eq!(&back, e);
    }
}

#[test]
fn a_data_dir_in_the_old_redb_layout_is_refused_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(LEGACY_FILE), b"redb").unwrap();
    let Err(err) = EmbeddedStore::open(dir.path()) else {
        panic!("an old data directory must not be opened as a new one");
    };
    let text = err.to_string();
    assert!(
        text.contains("warden export") && text.contains("warden import"),
        "{text}"
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "nothing written beside it"
    );
}

/// A directory as a build of key layout 1 left it: a log, no layout record.
fn write_layout_1_dir(dir: &Path) {
    let db = Database::builder(dir).open().unwrap();
    let events = db
        .keyspace("events", KeyspaceCreateOptions::default)
        .unwrap();
    let id = ResourceId::new();
    let mut key = id.0.as_bytes().to_vec();
    key.extend_from_slice(&1u64.to_be_bytes());
    events.insert(key, [FORMAT_V1]).unwrap();
    db.persist(PersistMode::SyncAll).unwrap();
}

#[test]
fn a_data_dir_in_key_layout_1_is_refused_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    write_layout_1_dir(dir.path());
    let Err(err) = EmbeddedStore::open(dir.path()) else {
        panic!("a layout-1 directory must not be read with layout-2 keys");
    };
    assert!(
        matches!(err, OpenError::KeyLayout { found: 1, .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("layout 1")
            && text.contains("warden export")
            && text.contains("warden import"),
        "{text}"
    );
    // Refused, not converted: it is refused again.
    assert!(EmbeddedStore::open(dir.path()).is_err());
}

#[test]
fn a_new_data_dir_records_its_key_layout_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    drop(EmbeddedStore::open(dir.path()).unwrap());
    let db = Database::builder(dir.path()).open().unwrap();
    let meta = db.keyspace("meta", KeyspaceCreateOptions::default).unwrap();
    assert_eq!(
        meta.get(KEY_LAYOUT_KEY).unwrap().as_deref(),
        Some(&[KEY_LAYOUT][..])
    );
    // A layout this version does not know (a newer one) is refused, naming it.
    meta.insert(KEY_LAYOUT_KEY, [9]).unwrap();
    db.persist(PersistMode::SyncAll).unwrap();
    drop((meta, db));
    let Err(err) = EmbeddedStore::open(dir.path()) else {
        panic!("an unknown layout must be refused");
    };
    assert!(err.to_string().contains("key layout 9"), "{err}");
}

#[test]
fn resource_keys_invert_and_part_in_their_first_bytes() {
    // Ids made in the same millisecond share their first six bytes; their keys must not
    // (the engine compares a 4-byte prefix first).
    let (a, b) = (ResourceId::new(), ResourceId::new());
    assert_eq!(a.0.as_bytes()[..4], b.0.as_bytes()[..4]);
    assert_ne!(resource_key(a)[..4], resource_key(b)[..4]);
    // Layout 2 exactly: the id's bytes 8..16, then 0..8 (what is on disk must not drift).
    let bytes = a.0.as_bytes();
    assert_eq!(resource_key(a)[..], [&bytes[8..], &bytes[..8]].concat()[..]);
    assert_eq!(resource_from_key(&resource_key(a)), a);
    assert_eq!(split_event_key(&event_key(b, 7)).unwrap(), (b, 7));
    // Events of one resource stay together and in version order.
    assert!(event_key(a, 9) < event_key(a, 10));
    assert_eq!(event_key(a, 1)[..16], resource_key(a));
}

#[test]
fn a_view_round_trips_and_one_stored_in_format_1_still_reads() {
    let locked = ClientResource {
        name: None,
        regen_carry: None,
        id: ResourceId::new(),
        owner: PlayerId::new("alice"),
        resource_type: "gold".into(),
        amount: 850,
        amount_at: Timestamp(7),
        max_amount: 1_000,
        regen_milli: Some(500),
        locked: true,
        lock_reason: Some("trade".into()),
        lock_expires_at: Some(Timestamp(9)),
        version: 3,
        updated_at: Timestamp(7),
    };
    let spectated = ClientResource {
        regen_milli: None,
        locked: false,
        lock_reason: None,
        lock_expires_at: None,
        ..locked.clone()
    };
    for view in [locked, spectated] {
        let stored = encode_view(&view).unwrap();
        assert_eq!(stored[0], FORMAT_V2);
        assert_eq!(decode_view(&stored).unwrap(), view);
        // What format 1 wrote: the named map.
        let mut v1 = vec![FORMAT_V1];
        v1.extend(rmp_serde::to_vec_named(&view).unwrap());
        assert_eq!(decode_view(&v1).unwrap(), view);
        assert!(
            stored.len() * 3 < v1.len() * 2,
            "{} vs {}",
            stored.len(),
            v1.len()
        );
    }
}

#[test]
fn a_value_of_an_unknown_format_is_refused_not_misread() {
    let id = ResourceId::new();
    let err = decode_event(&event_key(id, 1), &[9, 1, 2]).unwrap_err();
    assert!(
        matches!(err, StoreError::Corrupt { what: "event", .. }),
        "{err:?}"
    );
    // The log line says what and why; the cause stays reachable as the source.
    assert_eq!(err.to_string(), "corrupt event: unknown stored format 9");
    let source = std::error::Error::source(&err).expect("the cause is kept");
    assert!(source.downcast_ref::<Layout>().is_some(), "{source:?}");
}

/// Commits a resource at versions 1 to 4 (a create, then three adds) on `store`, its states
/// replayed from the events as an actor would; returns the id and the last state.
async fn four_versions(store: &EmbeddedStore) -> (ResourceId, ServerResource) {
    use warden_testkit::conformance::{added, created, request};
    let id = ResourceId::new();
    let mut state = None;
    for v in 0..4u64 {
        let events = match v {
            0 => vec![created("vera", 3)],
            _ => vec![added(1, v + 3)],
        };
        let mut req = request(id, v, events);
        state = warden_core::domain::replay(state, &req.events);
        req.state = state.clone().expect("a state");
        EventStore::append(store, req).await.unwrap();
    }
    (id, state.expect("a state"))
}

fn deferred() -> EmbeddedOptions {
    EmbeddedOptions {
        view_checkpoint: Duration::from_secs(3600),
        ..EmbeddedOptions::default()
    }
}

/// `want` is what a read of its resource and a list of its owner's resources give.
async fn assert_served(store: &EmbeddedStore, want: &ClientResource) {
    assert_eq!(
        ReadModelStore::get(store, want.id).await.unwrap().as_ref(),
        Some(want)
    );
    assert_eq!(
        store.list_by_owner(&want.owner).await.unwrap(),
        vec![want.clone()]
    );
}

/// The view as stored in `views`, not as served.
fn stored_view(store: &EmbeddedStore, id: ResourceId) -> Option<ClientResource> {
    let bytes = store.ks.views.get(resource_key(id)).unwrap()?;
    Some(decode_view(&bytes).unwrap())
}

/// Guards against: a read that returns the view of an older version because the newest one
/// waits in memory for its checkpoint; and a checkpoint that never stores it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_is_read_at_once_and_stored_by_the_checkpoint_at_close() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open_with(dir.path(), deferred()).unwrap();
    let (id, state) = four_versions(&store).await;
    let want = ClientResource::from_server(&state);
    assert_eq!(
        stored_view(&store, id),
        None,
        "not stored before the checkpoint"
    );
    assert_served(&store, &want).await;
    drop(store);

    let store = EmbeddedStore::open_with(dir.path(), deferred()).unwrap();
    assert_eq!(stored_view(&store, id), Some(want.clone()));
    assert!(store.fresh.is_empty(), "a clean close leaves nothing stale");
    assert_eq!(store.ks.stale_views.iter().count(), 0);
}

/// Guards against: a view left behind by a crash before its checkpoint (served stale after the
/// reopen, or never stored).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_a_crash_left_unstored_is_built_from_the_log_and_then_stored() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open_with(dir.path(), deferred()).unwrap();
    let (id, state) = four_versions(&store).await;
    let want = ClientResource::from_server(&state);
    store.close_as_if_killed();

    let store = EmbeddedStore::open_with(dir.path(), deferred()).unwrap();
    assert_served(&store, &want).await;
    // The writer stores what a crash left behind when it starts, before any command.
    store.close_as_if_killed();
    let store = EmbeddedStore::open_with(dir.path(), deferred()).unwrap();
    assert_eq!(stored_view(&store, id), Some(want));
    assert!(store.fresh.is_empty());
}

/// Guards against: Bloom filters built for `events` (never read by a point lookup, so pure
/// cost at every flush and compaction), and reads of a resource's log that relied on them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_has_no_bloom_filters_and_reads_the_same_from_its_tables() {
    use fjall::AbstractTree;
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    let (id, state) = four_versions(&store).await;
    store.major_compact().unwrap();
    assert!(
        store.ks.events.tree.table_count() > 0,
        "the log is in tables"
    );
    assert_eq!(store.ks.events.tree.filter_size(), 0);
    assert!(
        store.ks.commands.tree.filter_size() > 0,
        "command ids are looked up one by one and keep their filters"
    );
    let events = EventStore::events(&store, id, 0, usize::MAX).await.unwrap();
    assert_eq!(
        events.iter().map(|e| e.version).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    assert_eq!(EventStore::head(&store, id).await.unwrap(), state.version);
    assert_eq!(store.load(id).await.unwrap().state(), Some(state));
}

#[test]
fn a_data_dir_another_store_holds_is_refused_as_in_use() {
    // Guards against a second server on the same data directory failing with the engine's bare
    // "Locked" instead of saying what holds it.
    let dir = tempfile::tempdir().unwrap();
    let first = EmbeddedStore::open(dir.path()).unwrap();
    let second = EmbeddedStore::open(dir.path()).unwrap_err();
    assert!(matches!(second, OpenError::InUse { .. }), "{second:?}");
    assert!(
        second
            .to_string()
            .contains("in use by another Warden process"),
        "{second}"
    );
    drop(first);
    EmbeddedStore::open(dir.path()).expect("free again once the first is closed");
}
