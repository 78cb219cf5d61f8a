//! An append whose reply is lost on the way back from MongoDB. Guards against reporting such a
//! command as a success without knowing (or as a plain failure that a retry then applies twice):
//! the command must fail with `unavailable`, and its retry with the same command id must return
//! the original outcome, applied once.
//!
//! A small TCP proxy sits between the node and the test MongoDB; once armed, it forwards the next
//! `insert` command to the server and then swallows the server's reply and cuts the connection.
#![cfg(feature = "mongodb")]

mod mongo_support;

use mongo_support::proxy::{Proxy, upstream_of};
use std::sync::Arc;
use std::time::Duration;
use warden::actor::CommandRequest;
use warden::domain::{
    AddResource, Command, CommandId, CreateResource, PlayerId, Principal, ResourceParams,
};
use warden::node::{Node, NodeConfig};
use warden::protocol::Coded;
use warden::store::mongo::{MongoConfig, MongoStore};
use warden::store::{Backend, EventStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_insert_reply_is_an_error_and_the_retry_returns_the_original_outcome() {
    // Given a node whose MongoDB connection goes through a proxy that can lose a reply,
    let proxy = Proxy::start(upstream_of(&mongo_support::test_uri()), Duration::ZERO).await;
    let port = proxy.port;
    let db = mongo_support::fresh_db_name("lost_reply");
    // Without retryable writes, as on a standalone server. (On a replica set the driver retries
    // the insert once itself and the server recognises it, so the answer is then a true success.)
    let uri = format!("mongodb://127.0.0.1:{port}/?directConnection=true&retryWrites=false");
    let store = Arc::new(
        MongoStore::connect_to(&uri, Some(&db), MongoConfig::default())
            .await
            .unwrap(),
    );
    let backend = Backend {
        events: store.clone(),
        read: store.clone(),
        mongo: Some(store.clone()),
    };
    let node = Node::start(&backend, NodeConfig::default());
    let service = Principal::service("game-backend");
    let id = node
        .registry()
        .execute(CommandRequest {
            command_id: CommandId::new(),
            principal: service.clone(),
            command: Command::Create(CreateResource {
                resource_type: "gold".into(),
                owner: Some(PlayerId::new("alice")),
                params: Some(ResourceParams {
                    initial_amount: 0,
                    max_amount: 1000,
                    regen_milli: 0,
                }),
            }),
        })
        .await
        .unwrap()
        .resource_id;
    let add = |command_id| CommandRequest {
        command_id,
        principal: service.clone(),
        command: Command::Add(AddResource {
            resource_id: id,
            amount: 7,
            reason: "lost reply".into(),
        }),
    };

    // (the create's view was written before its reply, so the next insert is the add's commit)
    node.queries()
        .view(id)
        .await
        .unwrap()
        .expect("the view is written");

    // When the reply to the add's insert is lost after MongoDB committed it,
    let command_id = CommandId::new();
    proxy.lose_next_insert_reply();
    let first = node.registry().execute(add(command_id)).await;

    // then the add is reported as unavailable, not as done (nobody knows if it happened),
    match &first {
        Err(e) => assert_eq!(e.code(), "unavailable"),
        Ok(reply) => panic!("a lost reply must not be reported as a success: {reply:?}"),
    }
    assert!(!proxy.armed(), "the proxy did lose an insert reply");
    // and its retry with the same command id returns the original outcome,
    let retry = node.registry().execute(add(command_id)).await.unwrap();
    assert!(
        retry.duplicate,
        "the retry is recognised as the same command"
    );
    assert_eq!((retry.version, retry.resource.balance.amount), (2, 7));
    // applied exactly once.
    let state = store.load(id).await.unwrap().state().unwrap();
    assert_eq!((state.version, state.balance.amount), (2, 7));
    let record = store.find_command(command_id).await.unwrap().unwrap();
    assert_eq!((record.first_version, record.last_version), (2, 2));
    node.shutdown().await;
}
