//! The admin HTTP listener (`/metrics`, `/healthz`, `/readyz`) in the test's process, on
//! `127.0.0.1:0`, with a real HTTP client.

use super::PATIENCE;
use super::server::LocalServer;
use prometheus_parse::Scrape;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use warden::admin::AdminState;

/// An admin listener on port 0.
pub struct LocalAdmin {
    /// `http://127.0.0.1:port`.
    pub base: String,
    stop: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

impl LocalAdmin {
    /// An admin listener serving `state`.
    pub async fn start(state: AdminState) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind port 0");
        let base = format!(
            "http://{}",
            listener
                .local_addr()
                .expect("a bound listener has an address")
        );
        let stop = CancellationToken::new();
        let task = tokio::spawn(warden::admin::run(listener, state, stop.clone()));
        Self { base, stop, task }
    }

    /// The admin listener of `server`: its node, its shutdown token (so `/readyz` follows it)
    /// and its data directory.
    pub async fn of(server: &LocalServer) -> Self {
        let state = AdminState::new(server.node.clone(), server.shutdown_token())
            .with_data_dir(server.dir().path());
        Self::start(state).await
    }

    /// GET `path`: the status and the body.
    pub async fn get(&self, path: &str) -> (u16, String) {
        let response = tokio::time::timeout(PATIENCE, reqwest::get(format!("{}{path}", self.base)))
            .await
            .expect("the admin listener answered in time")
            .expect("HTTP request");
        let status = response.status().as_u16();
        (status, response.text().await.expect("body"))
    }

    /// `/metrics`, parsed as Prometheus text.
    pub async fn scrape(&self) -> Scrape {
        let (status, body) = self.get("/metrics").await;
        assert_eq!(status, 200);
        Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).expect("Prometheus text")
    }

    pub async fn stop(self) {
        self.stop.cancel();
        self.task
            .await
            .expect("admin task")
            .expect("admin listener ran");
    }
}
