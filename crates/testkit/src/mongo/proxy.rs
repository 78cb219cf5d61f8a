//! A loopback TCP proxy in front of the test MongoDB: it delays each direction by half a chosen
//! round-trip time (so distance to a replica set can be measured on one machine), and on request
//! loses the reply to the next `insert` (a reply lost on the network after MongoDB committed).
//! Shared by the tests and `examples/store_bench.rs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The start of an `insert` command in an OP_MSG body: BSON string element named "insert".
const INSERT_COMMAND: &[u8] = b"\x02insert\x00";
/// Chunks in flight per direction and connection; when full, the proxy stops reading (as a full
/// network path would).
const IN_FLIGHT: usize = 1024;

/// A running proxy; dropping it stops accepting connections.
pub struct Proxy {
    /// The loopback port to connect to instead of the server's.
    pub port: u16,
    lose_next_insert_reply: Arc<AtomicBool>,
    accept: JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl Proxy {
    /// Forwards connections on a fresh loopback port to `upstream` (`host:port`), each byte
    /// delayed by `rtt / 2` in each direction.
    pub async fn start(upstream: String, rtt: Duration) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let lose = Arc::new(AtomicBool::new(false));
        let one_way = rtt / 2;
        let accept = tokio::spawn({
            let lose = lose.clone();
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        continue;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    tokio::spawn(serve(client, server, one_way, lose.clone()));
                }
            }
        });
        Proxy {
            port,
            lose_next_insert_reply: lose,
            accept,
        }
    }

    /// `uri` (a `mongodb://host:port/...` URI) pointed at this proxy instead.
    pub fn uri(&self, uri: &str) -> String {
        let rest = uri.trim_start_matches("mongodb://");
        let path = rest.find(['/', '?']).map_or("", |i| &rest[i..]);
        format!("mongodb://127.0.0.1:{}{path}", self.port)
    }

    /// Arms the proxy: the reply to the next `insert` sent through it never arrives (the
    /// connection is cut once the insert has reached the server).
    pub fn lose_next_insert_reply(&self) {
        self.lose_next_insert_reply.store(true, Ordering::SeqCst);
    }

    /// True while armed (false once a reply was lost).
    pub fn armed(&self) -> bool {
        self.lose_next_insert_reply.load(Ordering::SeqCst)
    }
}

/// `host:port` of a `mongodb://host:port/...` URI.
pub fn upstream_of(uri: &str) -> String {
    let rest = uri.trim_start_matches("mongodb://");
    rest.split(['/', '?']).next().unwrap().to_owned()
}

/// Carries one connection both ways until either side closes.
async fn serve(client: TcpStream, server: TcpStream, one_way: Duration, lose: Arc<AtomicBool>) {
    let (client_rd, client_wr) = client.into_split();
    let (server_rd, server_wr) = server.into_split();
    let swallow = Arc::new(AtomicBool::new(false));
    let to_server = pipe(client_rd, server_wr, one_way, {
        let swallow = swallow.clone();
        move |chunk: &[u8]| {
            if chunk
                .windows(INSERT_COMMAND.len())
                .any(|w| w == INSERT_COMMAND)
                && lose.swap(false, Ordering::SeqCst)
            {
                swallow.store(true, Ordering::SeqCst);
            }
            true
        }
    });
    // Once an insert was swallowed, the server's reply never reaches the client.
    let to_client = pipe(server_rd, client_wr, one_way, move |_: &[u8]| {
        !swallow.load(Ordering::SeqCst)
    });
    // Whichever side ends first ends the connection (dropping both halves closes it).
    tokio::select! {
        _ = to_server => {}
        _ = to_client => {}
    }
}

/// Copies `from` to `to`, each chunk written `delay` after it was read; `pass` sees each chunk
/// first and ends the copy by returning false.
async fn pipe(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    delay: Duration,
    mut pass: impl FnMut(&[u8]) -> bool + Send,
) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(IN_FLIGHT);
    let read = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = from.read(&mut buf).await.unwrap_or(0);
            if n == 0 || !pass(&buf[..n]) {
                return;
            }
            if tx.send((Instant::now(), buf[..n].to_vec())).await.is_err() {
                return;
            }
        }
    };
    let write = async move {
        while let Some((read_at, chunk)) = rx.recv().await {
            tokio::time::sleep_until(read_at + delay).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
    };
    // The writer drains what was read before the reader ended (unless the peer is gone).
    let (_, _) = tokio::join!(read, write);
}
