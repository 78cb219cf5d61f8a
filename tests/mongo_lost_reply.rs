//! An append whose reply is lost on the way back from MongoDB. Guards against reporting such a
//! command as a success without knowing (or as a plain failure that a retry then applies twice):
//! the command must fail with `unavailable`, and its retry with the same command id must return
//! the original outcome, applied once.
//!
//! A small TCP proxy sits between the node and the test MongoDB; once armed, it forwards the next
//! `insert` command to the server and then swallows the server's reply and cuts the connection.

mod mongo_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use warden::actor::CommandRequest;
use warden::domain::{
    AddResource, Command, CommandId, CreateResource, PlayerId, Principal, ResourceParams,
};
use warden::node::{Node, NodeConfig};
use warden::store::mongo::{MongoConfig, MongoStore};
use warden::store::{Backend, EventStore};

/// The start of an `insert` command in an OP_MSG body: BSON string element named "insert".
const INSERT_COMMAND: &[u8] = b"\x02insert\x00";

/// Forwards connections to `upstream`; when `armed`, loses the reply to the next insert.
async fn lossy_proxy(upstream: String, armed: Arc<AtomicBool>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = TcpStream::connect(&upstream).await else {
                continue;
            };
            let armed = armed.clone();
            tokio::spawn(async move {
                let (mut client_rd, mut client_wr) = client.into_split();
                let (mut server_rd, mut server_wr) = server.into_split();
                let swallow = Arc::new(AtomicBool::new(false));
                let to_server = {
                    let swallow = swallow.clone();
                    async move {
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            let n = client_rd.read(&mut buf).await.unwrap_or(0);
                            if n == 0 {
                                return;
                            }
                            let chunk = &buf[..n];
                            if chunk
                                .windows(INSERT_COMMAND.len())
                                .any(|w| w == INSERT_COMMAND)
                                && armed.swap(false, Ordering::SeqCst)
                            {
                                swallow.store(true, Ordering::SeqCst);
                            }
                            if server_wr.write_all(chunk).await.is_err() {
                                return;
                            }
                        }
                    }
                };
                let to_client = async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = server_rd.read(&mut buf).await.unwrap_or(0);
                        if n == 0 || swallow.load(Ordering::SeqCst) {
                            // The insert reached the server; its reply never reaches the client.
                            return;
                        }
                        if client_wr.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                };
                // Whichever side ends first ends the connection (dropping both halves closes it).
                tokio::select! {
                    _ = to_server => {}
                    _ = to_client => {}
                }
            });
        }
    });
    port
}

fn upstream_address() -> String {
    let uri = mongo_support::test_uri();
    let rest = uri.trim_start_matches("mongodb://");
    rest.split(['/', '?']).next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_insert_reply_is_an_error_and_the_retry_returns_the_original_outcome() {
    // Given a node whose MongoDB connection goes through a proxy that can lose a reply,
    let armed = Arc::new(AtomicBool::new(false));
    let port = lossy_proxy(upstream_address(), armed.clone()).await;
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
    let node = Node::start_on(&backend, NodeConfig::default());
    let service = Principal::service("game-backend");
    let id = node
        .registry
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

    // (the read model has written its view, so the next insert is the add's commit)
    node.queries
        .wait_for(id, 1, std::time::Duration::from_secs(30))
        .await
        .unwrap()
        .expect("the view is written");

    // When the reply to the add's insert is lost after MongoDB committed it,
    let command_id = CommandId::new();
    armed.store(true, Ordering::SeqCst);
    let first = node.registry.execute(add(command_id)).await;

    // then the add is reported as unavailable, not as done (nobody knows if it happened),
    match &first {
        Err(e) => assert_eq!(e.code(), "unavailable"),
        Ok(reply) => panic!("a lost reply must not be reported as a success: {reply:?}"),
    }
    assert!(
        !armed.load(Ordering::SeqCst),
        "the proxy did lose an insert reply"
    );
    // and its retry with the same command id returns the original outcome,
    let retry = node.registry.execute(add(command_id)).await.unwrap();
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
