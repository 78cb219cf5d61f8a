//! An append whose reply is lost on the way back from MongoDB. Guards against reporting such a
//! command as a success without knowing (or as a plain failure that a retry then applies twice):
//! the command must fail with `unavailable`, and its retry with the same command id must return
//! the original outcome, applied once.
//!
//! A small TCP proxy sits between the node and the test MongoDB; once armed, it forwards the next
//! `insert` command to the server and then swallows the server's reply and cuts the connection.
#![cfg(feature = "mongodb")]

use warden_testkit as support;

use std::time::Duration;
use support::mongo::proxy::{Proxy, upstream_of};
use support::mongo::{self, node_on};
use support::{given_fixed, request_id, service};
use warden_core::actor::CommandRequest;
use warden_core::domain::{AddResource, Command, CommandId};
use warden_core::store::EventStore;
use warden_net::Coded;
use warden_protocol::ErrorCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_insert_reply_is_an_error_and_the_retry_returns_the_original_outcome() {
    // Given a node whose MongoDB connection goes through a proxy that can lose a reply,
    let proxy = Proxy::start(upstream_of(&mongo::test_uri()), Duration::ZERO).await;
    let port = proxy.port;
    let db = mongo::fresh_db_name("lost_reply");
    // Without retryable writes, as on a standalone server. (On a replica set the driver retries
    // the insert once itself and the server recognises it, so the answer is then a true success.)
    let uri = format!("mongodb://127.0.0.1:{port}/?directConnection=true&retryWrites=false");
    let store = mongo::store_at(&uri, &db).await;
    let node = node_on(store.clone());
    let id = given_fixed(node.registry(), "alice", 0, 1000).await;
    let add = |command_id| -> CommandRequest {
        let command = Command::Add(AddResource {
            resource_id: id,
            amount: 7,
            reason: "lost reply".into(),
        });
        request_id(command_id, &service(), command)
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
        Err(e) => assert_eq!(e.code(), ErrorCode::Unavailable),
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
