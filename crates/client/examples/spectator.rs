//! A spectator: subscribes to every resource of one owner and prints each update, reconnecting
//! and resuming when the connection drops (a server restart, a slow-consumer close).
//!
//! ```text
//! cargo run -p warden-client --example spectator -- --url ws://127.0.0.1:7350 \
//!     --token "$(warden token --player watcher --role spectator)" --owner player123
//! ```
//! (or `WARDEN_URL`, `WARDEN_TOKEN`, `WARDEN_OWNER`).

use warden_client::{Client, PlayerId};

/// The value of `--name VALUE` on the command line, else of the environment variable `env`.
fn arg(name: &str, env: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .or_else(|| std::env::var(env).ok())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = arg("--url", "WARDEN_URL").unwrap_or_else(|| "ws://127.0.0.1:7350".into());
    let token = arg("--token", "WARDEN_TOKEN").ok_or("pass --token TOKEN or set WARDEN_TOKEN")?;
    let owner = arg("--owner", "WARDEN_OWNER").unwrap_or_else(|| "player123".into());

    let client = Client::connect(&url, &token).await?;
    let mut updates = client.subscribe_owner(PlayerId::new(owner.clone())).await?;
    println!("watching {owner}");
    for r in updates.snapshot() {
        println!(
            "  {} {}: {} (v{})",
            r.id, r.resource_type, r.amount, r.version
        );
    }
    loop {
        tokio::select! {
            update = updates.recv() => match update {
                Some(u) => println!(
                    "{} {}: {} locked={} (v{} -> v{})",
                    u.resource_id, u.resource.resource_type, u.resource.amount,
                    u.resource.locked, u.base_version, u.version
                ),
                None => return Ok(()),
            },
            lost = client.closed() => {
                eprintln!("{lost}; reconnecting");
                // Resubscribes this owner; what changed meanwhile arrives as updates.
                client.reconnect().await?;
            }
        }
    }
}
