//! Wallets by name, amounts as of the read, and who did what, over the wire.
//!
//! Guards against: two creations of one wallet making two (or one of them answered with another
//! id), a request by `{owner, name}` reaching anything but that wallet, reads that show an amount
//! other than the one the next command is decided on (regeneration not counted to the read, its
//! carry dropped, an expired lock still shown), the audit trail not saying who issued each event
//! (or saying it to a spectator), and a data directory written before wallets had names that does
//! not open or reads differently.

use warden_testkit as support;

use serde_json::json;
use support::{LocalServer, applied, error_code};
use warden_core::clock::Clock;
use warden_core::domain::{ClientResource, Issuer, ResourceId, Role, Wallet};
use warden_core::store::EventStore;
use warden_protocol::{ClientMessage, ErrorCode, ServerMessage};

/// Sends `msg` (a JSON object, sent as the MessagePack map a client would) with request id `req`
/// and returns the reply to it.
async fn send_map(c: &mut support::Client, mut msg: serde_json::Value) -> ServerMessage {
    let req = c.next_req();
    msg["req"] = json!(req);
    c.send_raw(rmp_serde::to_vec_named(&msg).unwrap()).await;
    c.reply_to(req).await
}

fn new_id() -> String {
    warden_protocol::CommandId::new().to_string()
}

fn resource(msg: &ServerMessage) -> &ClientResource {
    match msg {
        ServerMessage::Applied { resource, .. }
        | ServerMessage::Resource { resource, .. }
        | ServerMessage::State { resource, .. } => resource,
        other => panic!("expected a resource, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sessions_creating_one_wallet_at_once_end_with_one_wallet() {
    let server = LocalServer::start().await;
    for round in 0..100 {
        let player = format!("racer-{round}");
        let mut one = server.connect(&player, Role::Player).await;
        let mut two = server.connect(&player, Role::Player).await;
        // Both creates are on the wire before either is answered.
        let create = |req| {
            rmp_serde::to_vec_named(&json!({
                "type": "create", "req": req, "command_id": new_id(), "resource_type": "gold",
            }))
            .unwrap()
        };
        one.send_raw(create(1)).await;
        two.send_raw(create(1)).await;
        let (a, b) = tokio::join!(one.reply_to(1), two.reply_to(1));
        let ids: Vec<(ResourceId, bool, u64)> = [a, b]
            .into_iter()
            .map(|m| match m {
                ServerMessage::Applied {
                    resource_id,
                    existing,
                    version,
                    ..
                } => (resource_id, existing, version),
                other => panic!("round {round}: create refused: {other:?}"),
            })
            .collect();
        let wallet = Wallet::new(&player, "gold").id();
        assert!(
            ids.iter().all(|(id, _, v)| *id == wallet && *v == 1),
            "round {round}: both name the wallet at version 1: {ids:?}"
        );
        assert_eq!(
            ids.iter().filter(|(_, existing, _)| *existing).count(),
            1,
            "round {round}: one created it, the other found it: {ids:?}"
        );
        match one.list(None).await {
            ServerMessage::Resources { resources, .. } => {
                assert_eq!(resources.len(), 1, "round {round}: one wallet");
                assert_eq!(resources[0].name.as_deref(), Some("gold"));
            }
            other => panic!("list: {other:?}"),
        }
    }
    assert_eq!(
        server
            .store()
            .head(Wallet::new("racer-7", "gold").id())
            .await
            .unwrap(),
        1
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_and_reads_by_owner_and_name_reach_that_wallet() {
    let server = LocalServer::start().await;
    let mut alice = server.connect("alice", Role::Player).await;
    let mut shop = server.connect("shop", Role::Service).await;
    let gold = json!({"owner": "alice", "name": "gold"});

    let created = send_map(
        &mut alice,
        json!({"type": "create", "command_id": new_id(), "resource_type": "gold"}),
    )
    .await;
    assert_eq!(resource(&created).name.as_deref(), Some("gold"));
    let id = resource(&created).id;
    assert_eq!(id, Wallet::new("alice", "gold").id());

    let spent = send_map(&mut alice, json!({"type": "allocate", "command_id": new_id(), "wallet": gold, "amount": 200, "reason": "sword"})).await;
    assert_eq!(resource(&spent).amount, 800);
    let paid = send_map(&mut shop, json!({"type": "add", "command_id": new_id(), "wallet": gold, "amount": 50, "reason": "refund"})).await;
    assert_eq!(resource(&paid).amount, 850);
    let locked = send_map(&mut alice, json!({"type": "lock", "command_id": new_id(), "wallet": gold, "reason": "trade", "duration_ms": 60_000})).await;
    assert!(resource(&locked).locked);
    let refused = send_map(
        &mut alice,
        json!({"type": "allocate", "command_id": new_id(), "wallet": gold, "amount": 1}),
    )
    .await;
    assert_eq!(error_code(&refused), ErrorCode::Locked);
    let unlocked = send_map(
        &mut alice,
        json!({"type": "unlock", "command_id": new_id(), "wallet": gold}),
    )
    .await;
    assert!(!resource(&unlocked).locked);
    assert_eq!(resource(&unlocked).version, 5);

    let got = send_map(&mut alice, json!({"type": "get", "wallet": gold})).await;
    assert_eq!((resource(&got).id, resource(&got).amount), (id, 850));
    match send_map(&mut alice, json!({"type": "history", "wallet": gold})).await {
        ServerMessage::History {
            resource_id,
            events,
            ..
        } => {
            assert_eq!(resource_id, id);
            assert_eq!(events.len(), 5);
        }
        other => panic!("history: {other:?}"),
    }
    let past = send_map(
        &mut alice,
        json!({"type": "state_at", "wallet": gold, "version": 2}),
    )
    .await;
    assert_eq!(resource(&past).amount, 800);
    match send_map(&mut alice, json!({"type": "subscribe", "wallet": gold})).await {
        ServerMessage::Subscribed { resources, .. } => assert_eq!(resources[0].id, id),
        other => panic!("subscribe: {other:?}"),
    }

    // Another owner's name is another wallet: bob has no gold yet, and may not spend alice's.
    let missing = send_map(
        &mut alice,
        json!({"type": "get", "wallet": {"owner": "bob", "name": "gold"}}),
    )
    .await;
    assert_eq!(error_code(&missing), ErrorCode::NotFound);
    let mut bob = server.connect("bob", Role::Player).await;
    let theft = send_map(
        &mut bob,
        json!({"type": "allocate", "command_id": new_id(), "wallet": gold, "amount": 1}),
    )
    .await;
    assert_eq!(error_code(&theft), ErrorCode::Forbidden);
    // Nor create it for her.
    let forged = send_map(&mut bob, json!({"type": "create", "command_id": new_id(), "resource_type": "gold", "owner": "alice"})).await;
    assert_eq!(error_code(&forged), ErrorCode::Forbidden);

    // Both ways at once, or a half-named wallet, is a bad message.
    let both = send_map(
        &mut alice,
        json!({"type": "get", "wallet": gold, "resource_id": id.to_string()}),
    )
    .await;
    assert_eq!(error_code(&both), ErrorCode::BadMessage);
    let half = send_map(
        &mut alice,
        json!({"type": "get", "wallet": {"owner": "alice"}}),
    )
    .await;
    assert_eq!(error_code(&half), ErrorCode::BadMessage);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_type_held_many_times_is_named_by_the_client_and_one_held_once_by_its_type() {
    let server = LocalServer::start().await;
    let mut alice = server.connect("alice", Role::Player).await;
    let create = |name: Option<&str>, ty: &str| {
        let mut m = json!({"type": "create", "command_id": new_id(), "resource_type": ty});
        if let Some(name) = name {
            m["name"] = json!(name);
        }
        m
    };
    let camp3 = send_map(&mut alice, create(Some("wood:camp-3"), "wood")).await;
    let camp4 = send_map(&mut alice, create(Some("wood:camp-4"), "wood")).await;
    assert_ne!(resource(&camp3).id, resource(&camp4).id);
    assert_eq!(resource(&camp3).name.as_deref(), Some("wood:camp-3"));
    for (bad, ty) in [
        (None, "wood"),
        (Some("camp-3"), "wood"),
        (Some("wood:"), "wood"),
        (Some("coins"), "gold"),
        (Some("wood:a\u{0}b"), "wood"),
        // The name of an existing wallet of another type is not a way to reach it.
        (Some("wood:camp-3"), "gold"),
    ] {
        let refused = send_map(&mut alice, create(bad, ty)).await;
        assert_eq!(
            error_code(&refused),
            ErrorCode::InvalidParams,
            "{bad:?} for {ty}"
        );
    }
    // "gold" named as itself is the same wallet as gold unnamed.
    let named = send_map(&mut alice, create(Some("gold"), "gold")).await;
    let unnamed = send_map(&mut alice, create(None, "gold")).await;
    assert_eq!(resource(&named).id, resource(&unnamed).id);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_show_the_amount_the_next_command_is_decided_on() {
    let server = LocalServer::start().await;
    let clock = server.clock().clone();
    let mut alice = server.connect("alice", Role::Player).await;
    let mut watcher = server.connect("watcher", Role::Spectator).await;
    let id = alice.create_id("gold").await; // 1000 at t0, +0.5/s
    // Spent 1.001 s later: the regenerated half unit is kept as carry (0.5005 of a unit).
    clock.advance_ms(1_001);
    assert_eq!(applied(&alice.allocate(id, 200).await).amount, 800);
    // 0.999 s later the carry and the new 0.4995 make exactly one unit: 801, not 800.
    clock.advance_ms(999);
    let owner_get = resource(&alice.get(id).await).clone();
    let spectator_get = resource(&watcher.get(id).await).clone();
    let listed = match alice.list(None).await {
        ServerMessage::Resources { resources, .. } => resources[0].clone(),
        other => panic!("list: {other:?}"),
    };
    let subscribed = match alice.subscribe(id, None).await {
        ServerMessage::Subscribed { resources, .. } => resources[0].clone(),
        other => panic!("subscribe: {other:?}"),
    };
    let now = clock.now();
    let state_now = resource(
        &alice
            .request(|req| {
                ClientMessage::StateAt(warden_protocol::StateAt {
                    req,
                    resource_id: id,
                    version: None,
                    at: Some(now),
                })
            })
            .await,
    )
    .clone();
    for (what, view) in [
        ("get", &owner_get),
        ("spectator get", &spectator_get),
        ("list", &listed),
        ("subscribe", &subscribed),
        ("state_at now", &state_now),
    ] {
        assert_eq!(view.amount, 801, "{what}");
        assert_eq!(view.amount_at, now, "{what}: counted to the read");
        assert_eq!(view.version, 2, "{what}: reading records nothing");
    }
    // The next allocate is decided on exactly that amount.
    let refused = alice.allocate(id, 802).await;
    assert_eq!(error_code(&refused), ErrorCode::Insufficient);
    assert_eq!(applied(&alice.allocate(id, 801).await).amount, 0);

    // A lock whose time has passed reads as not held, before anything records its end.
    alice.lock(id, "raid", 5_000).await;
    assert!(resource(&alice.get(id).await).locked);
    clock.advance_ms(5_000);
    let after = resource(&alice.get(id).await).clone();
    assert!(!after.locked && after.lock_reason.is_none() && after.lock_expires_at.is_none());
    assert!(!resource(&watcher.get(id).await).locked);
    assert_eq!(
        server.store().head(id).await.unwrap(),
        4,
        "the expiry is not recorded by a read"
    );
    assert_eq!(
        applied(&alice.add(id, 1).await).amount,
        3,
        "5 s at 0.5/s, plus 1"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_and_state_at_say_who_issued_each_event_to_the_owner_and_services_only() {
    let server = LocalServer::start().await;
    let clock = server.clock().clone();
    let mut alice = server.connect("alice", Role::Player).await;
    let mut shop = server.connect("shop", Role::Service).await;
    let mut watcher = server.connect("watcher", Role::Spectator).await;
    let id = alice.create_id("gold").await;
    shop.add(id, 10).await;
    alice.lock(id, "trade", 1_000).await;
    clock.advance_ms(2_000);
    alice.allocate(id, 5).await; // records the lock's expiry (by the server) first

    let expected = [
        ("ResourceCreated", "alice", Issuer::Player),
        ("ResourceAdded", "shop", Issuer::Service),
        ("ResourceLocked", "alice", Issuer::Player),
        ("ResourceLockExpired", "server", Issuer::Server),
        ("ResourceAllocated", "alice", Issuer::Player),
    ];
    for reader in [&mut alice, &mut shop] {
        match reader.history(id).await {
            ServerMessage::History { events, .. } => {
                let seen: Vec<_> = events
                    .iter()
                    .map(|e| (e.event_type.as_str(), e.by.as_str(), e.by_role))
                    .collect();
                assert_eq!(seen, expected);
            }
            other => panic!("history: {other:?}"),
        }
    }
    assert_eq!(error_code(&watcher.history(id).await), ErrorCode::Forbidden);

    let state_at = |v| {
        move |req| {
            ClientMessage::StateAt(warden_protocol::StateAt {
                req,
                resource_id: id,
                version: Some(v),
                at: None,
            })
        }
    };
    match alice.request(state_at(2)).await {
        ServerMessage::State { by, by_role, .. } => {
            assert_eq!(
                (by.unwrap().as_str(), by_role),
                ("shop", Some(Issuer::Service))
            );
        }
        other => panic!("state: {other:?}"),
    }
    match watcher.request(state_at(2)).await {
        ServerMessage::State {
            by,
            by_role,
            resource,
            ..
        } => {
            assert_eq!((by, by_role), (None, None), "a spectator is not told who");
            assert_eq!(resource.amount, 1010);
        }
        other => panic!("state: {other:?}"),
    }
    server.stop().await;
}

/// `tests/fixtures/embedded-store-before-wallets.tar.gz` is a data directory written by the
/// build before wallets, amounts as of the read and issuer roles existed: the commits of
/// `embedded-store-before-wallets.jsonl` imported with that build's `warden import`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_written_before_wallets_opens_and_reads_as_it_did() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/embedded-store-before-wallets.tar.gz"
    );
    let status = std::process::Command::new("tar")
        .args(["-xzf", fixture, "-C"])
        .arg(dir.path())
        .status()
        .expect("tar runs");
    assert!(status.success());
    let data = support::DataDir::at(dir.path());
    let node = support::TestNode::reopen(data.clone(), |_| {});
    node.clock.set(support::T0 + 10_000);
    let server = LocalServer::serve(node, Default::default()).await;
    reads_as_before_wallets(&server).await;
    server.stop().await;
}

/// What a store written before wallets holds (the fixture's commits), read by this build: the
/// server's clock at T0 + 10 s.
async fn reads_as_before_wallets(server: &LocalServer) {
    let gold: ResourceId =
        serde_json::from_value(json!("0190c3e2-0000-7000-8000-00000000a11c")).unwrap();
    let mut alice = server.connect("alice", Role::Player).await;

    // The log reads as written, the issuers' roles unknown (the lock expiry is the server's).
    match alice.history(gold).await {
        ServerMessage::History { events, .. } => {
            let seen: Vec<_> = events
                .iter()
                .map(|e| (e.version, e.balance, e.by.as_str(), e.by_role))
                .collect();
            assert_eq!(
                seen,
                [
                    (1, Some(1000), "alice", Issuer::Unknown),
                    (2, Some(800), "alice", Issuer::Unknown),
                    (3, Some(1300), "shop", Issuer::Unknown),
                    (4, None, "alice", Issuer::Unknown),
                    (5, None, "server", Issuer::Server),
                    (6, Some(1304), "alice", Issuer::Unknown),
                ]
            );
        }
        other => panic!("history: {other:?}"),
    }
    // The read model written then reads with no name, counted to now: 1304 and a half at
    // t0 + 9 s, plus 1 s at 0.5/s.
    let got = resource(&alice.get(gold).await).clone();
    assert_eq!((got.amount, got.name, got.version), (1305, None, 6));
    match alice.list(None).await {
        ServerMessage::Resources { resources, .. } => assert_eq!(resources.len(), 1),
        other => panic!("list: {other:?}"),
    }
    // It takes commands as before; a new wallet of the same type is another resource.
    assert_eq!(applied(&alice.allocate(gold, 5).await).amount, 1300);
    let wallet = alice.create_id("gold").await;
    assert_ne!(wallet, gold);
    let mut bob = server.connect("bob", Role::Player).await;
    match bob.list(None).await {
        ServerMessage::Resources { resources, .. } => {
            assert_eq!(
                (resources[0].amount, resources[0].resource_type.as_str()),
                (40, "wood")
            );
        }
        other => panic!("list: {other:?}"),
    }
}

/// The same on MongoDB: the fixture's commits imported, then every field this build added taken
/// out of the stored documents, as the build before wallets wrote them.
#[cfg(feature = "mongodb")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mongodb_database_written_before_wallets_reads_as_it_did() {
    use futures::TryStreamExt;
    use mongodb::bson::{Bson, Document, doc};
    let (store, db) = support::mongo::fresh_store("before_wallets").await;
    let lines = include_bytes!("fixtures/embedded-store-before-wallets.jsonl");
    warden_core::store::transfer::import(store.as_ref(), &mut lines.as_slice())
        .await
        .unwrap();
    let database = store.database();
    // Each collection, and the paths of what this build added to its documents.
    let added: [(&str, &[&str]); 3] = [
        ("commits", &["events.by_role", "events.event.name"]),
        ("resources", &["state.name"]),
        ("read_model", &["regen_carry", "view.name"]),
    ];
    fn strip(doc: &mut Document, path: &[&str]) {
        match path {
            [last] => {
                doc.remove(*last);
            }
            [first, rest @ ..] => match doc.get_mut(*first) {
                Some(Bson::Document(inner)) => strip(inner, rest),
                Some(Bson::Array(items)) => {
                    for item in items {
                        if let Bson::Document(inner) = item {
                            strip(inner, rest);
                        }
                    }
                }
                _ => {}
            },
            [] => {}
        }
    }
    fn has(doc: &Document, path: &[&str]) -> bool {
        match path {
            [last] => doc.contains_key(*last),
            [first, rest @ ..] => match doc.get(*first) {
                Some(Bson::Document(inner)) => has(inner, rest),
                Some(Bson::Array(items)) => items
                    .iter()
                    .any(|i| matches!(i, Bson::Document(inner) if has(inner, rest))),
                _ => false,
            },
            [] => false,
        }
    }
    for (name, paths) in added {
        let coll = database.collection::<Document>(name);
        let docs: Vec<Document> = coll
            .find(doc! {})
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert!(!docs.is_empty(), "{name} holds the fixture");
        for mut d in docs {
            for path in paths {
                strip(&mut d, &path.split('.').collect::<Vec<_>>());
            }
            let id = d.get("_id").cloned().unwrap();
            coll.replace_one(doc! {"_id": id}, d).await.unwrap();
        }
        let stored: Vec<Document> = coll
            .find(doc! {})
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        for path in paths {
            let path: Vec<_> = path.split('.').collect();
            assert!(
                !stored.iter().any(|d| has(d, &path)),
                "{name}.{path:?} is gone"
            );
        }
    }
    // A node of this build on that database, its clock at T0 + 10 s.
    let clock = warden_core::clock::ManualClock::at(support::T0 + 10_000);
    let node = warden_core::node::Node::start(
        &support::mongo::backend(support::mongo::another_node(&db).await),
        warden_core::node::NodeConfig {
            clock: std::sync::Arc::new(clock),
            ..Default::default()
        },
    );
    let server = LocalServer::serve_node(std::sync::Arc::new(node), Default::default()).await;
    reads_as_before_wallets(&server).await;
    server.stop().await;
}
