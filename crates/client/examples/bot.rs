//! A player bot: creates gold, then spends and earns in a loop.
//!
//! Each command is built once per intent and sent with `execute_retrying`: after a dropped
//! connection the client reconnects and resends it with the same command id, after `conflict` or
//! `rate_limited` it waits and resends it, so it applies at most once. A command whose outcome is
//! still unknown when the retries run out is kept and sent again, same id, on the next turn; a
//! definite refusal (`insufficient`, …) is final, and the next intent gets a fresh id.
//!
//! ```text
//! cargo run -p warden-client --example bot -- --url ws://127.0.0.1:7350 \
//!     --token "$(warden token --player alice --role player)" [--rounds 20]
//! ```
//! (or `WARDEN_URL`, `WARDEN_TOKEN`).

use std::time::Duration;
use warden_client::{Client, ClientError, Command, CommandKind};

/// The value of `--name VALUE` on the command line, else of the environment variable `env`.
fn arg(name: &str, env: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .or_else(|| std::env::var(env).ok())
}

/// What a command does, in a few words.
fn describe(command: &Command) -> String {
    match command.kind() {
        CommandKind::Allocate { amount, reason, .. } => format!("spend {amount} ({reason})"),
        CommandKind::Add { amount, reason, .. } => format!("earn {amount} ({reason})"),
        other => format!("{other:?}"),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = arg("--url", "WARDEN_URL").unwrap_or_else(|| "ws://127.0.0.1:7350".into());
    let token = arg("--token", "WARDEN_TOKEN").ok_or("pass --token TOKEN or set WARDEN_TOKEN")?;
    let rounds: u32 = arg("--rounds", "BOT_ROUNDS").map_or(Ok(20), |r| r.parse())?;

    let client = Client::connect(&url, &token).await?;
    println!(
        "connected as {} ({:?})",
        client.welcome().player,
        client.welcome().role
    );

    let gold = client.execute_retrying(&Command::create("gold")).await?;
    let id = gold.resource_id;
    println!("created gold {id}: {}", gold.resource.amount);

    // A command whose outcome is unknown: it is sent again, as it is, before any new intent.
    let mut unsettled: Option<Command> = None;
    for round in 0..rounds {
        let command = unsettled.take().unwrap_or_else(|| {
            if round % 3 == 2 {
                Command::add(id, 25, "Quest reward")
            } else {
                Command::allocate(id, 10, "Buy a potion")
            }
        });
        match client.execute_retrying(&command).await {
            Ok(applied) => println!(
                "round {round}: {} -> amount {} at version {}{}",
                describe(&command),
                applied.resource.amount,
                applied.version,
                if applied.duplicate {
                    " (a retry: applied once)"
                } else {
                    ""
                }
            ),
            Err(e) if e.is_unknown_outcome() => {
                eprintln!(
                    "round {round}: outcome unknown ({e}); resending {} next",
                    command.id()
                );
                unsettled = Some(command);
            }
            Err(ClientError::Refused { code, message }) => {
                println!("round {round}: refused [{code}] {message}");
            }
            Err(e) => return Err(e.into()),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    client.close().await;
    Ok(())
}
