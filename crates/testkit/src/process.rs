//! `warden serve` as a child process with JSON logs: its game and admin addresses read from its
//! start line, and every log line after it kept for the test to look at.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

/// A running `warden serve`; killed when dropped.
pub struct ServeProcess {
    pub child: Child,
    /// The game port (`ws://{game}/v1`).
    pub game: SocketAddr,
    /// The admin listener's base URL (`http://…`), if it is on.
    pub admin: Option<String>,
    log: Arc<Mutex<Vec<String>>>,
}

impl ServeProcess {
    /// Starts `bin serve --log-format json --listen 127.0.0.1:0` with `args` and `envs` added
    /// (`RUST_LOG=warden=info` unless `envs` sets it), and waits for its start line.
    pub fn start(bin: &Path, args: &[&std::ffi::OsStr], envs: &[(&str, &std::ffi::OsStr)]) -> Self {
        let mut command = Command::new(bin);
        command
            .args(["serve", "--log-format", "json", "--listen", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "warden=info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in envs {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("start warden");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let start: serde_json::Value = loop {
            let line = lines
                .next()
                .expect("warden logs its start line")
                .expect("a log line");
            let value: serde_json::Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
            if value.get("game").is_some() {
                break value;
            }
        };
        let game = start["game"]
            .as_str()
            .expect("the game address")
            .trim_start_matches("ws://")
            .trim_end_matches("/v1")
            .parse()
            .expect("an address");
        let admin = start["admin"]
            .as_str()
            .filter(|a| *a != "off")
            .map(|a| a.trim_end_matches("/metrics").to_owned());
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                sink.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        });
        Self {
            child,
            game,
            admin,
            log,
        }
    }

    /// The log lines after the start line that contain `text`.
    pub fn logged(&self, text: &str) -> Vec<String> {
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|l| l.contains(text))
            .cloned()
            .collect()
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends a WebSocket upgrade to `game` with `token` as a plain HTTP request, for a test that
/// expects it refused: the HTTP status and the JSON body (`code`, `message`).
pub async fn refused_upgrade(game: SocketAddr, token: &str) -> (u16, serde_json::Value) {
    let refused = reqwest::Client::new()
        .get(format!("http://{game}/v1?token={token}"))
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .expect("the server answers");
    let status = refused.status().as_u16();
    let text = refused.text().await.expect("a body");
    let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, body)
}
