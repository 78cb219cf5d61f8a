//! The `warden` binary: serve over WebSocket (the default), mint tokens, export and import a
//! store's log, run the seed demo.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use warden::backend::Opened;
use warden_core::clock::ManualClock;
use warden_core::domain::{Catalogue, Role};
use warden_core::node::{Node, NodeConfig};
use warden_core::store::{Backend, BackendKind, transfer};
use warden_net::NetConfig;
use warden_net::auth::{DEV_SECRET_FILE, SECRET_ENV, TokenKeys, TrustedIssuer};
use warden_store_embedded::{
    DEFAULT_CACHE_MB, DEFAULT_MIN_FREE_BYTES, EmbeddedOptions, EmbeddedStore, OnFailure,
};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "warden",
    version,
    about = "Server-authoritative game resource server",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    /// With no subcommand, `warden` serves with these options.
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(clap::Args, Clone, Debug)]
struct ServeArgs {
    /// Where the embedded store and the development token secret live.
    #[arg(long, env = "WARDEN_DATA_DIR", default_value = "./warden-data")]
    data_dir: PathBuf,
    /// Store events and read models in this MongoDB instead of the embedded store (several nodes
    /// may share one). Unreachable at start: a clear error and a non-zero exit.
    #[arg(long, env = "WARDEN_MONGODB_URI")]
    mongodb_uri: Option<String>,
    /// Address to accept WebSocket connections on.
    #[arg(long, env = "WARDEN_LISTEN", default_value = "127.0.0.1:7350")]
    listen: SocketAddr,
    /// Resource types (TOML). Without it: the built-in gold, mana and wood, plus (overriding
    /// them by name) `<data-dir>/catalogue.toml` if present.
    #[arg(long, env = "WARDEN_CATALOGUE")]
    catalogue: Option<PathBuf>,
    /// Commands per second per session (0: unlimited).
    #[arg(long, env = "WARDEN_RATE_LIMIT", default_value_t = NetConfig::default().commands_per_second)]
    rate_limit: u32,
    /// Open connections at most.
    #[arg(long, env = "WARDEN_MAX_CONNECTIONS", default_value_t = NetConfig::default().max_connections)]
    max_connections: usize,
    /// Memory budget of the embedded store in MiB: block cache plus write buffers.
    #[arg(long, env = "WARDEN_CACHE_MB", default_value_t = DEFAULT_CACHE_MB)]
    cache_mb: u64,
    /// Below this many MiB free on the data directory's file system, commands are refused with
    /// `storage_full` (nothing written; reads go on) until space is freed; 0 turns it off.
    #[arg(long, env = "WARDEN_MIN_FREE_MB", default_value_t = DEFAULT_MIN_FREE_BYTES >> 20)]
    min_free_mb: u64,
    /// When the embedded store fails (a disk error): `reopen` it by itself, refusing requests
    /// meanwhile, or `exit` with status 75 for a supervisor that restarts the server.
    #[arg(long, env = "WARDEN_ON_STORE_FAILURE", value_enum, default_value_t = StoreFailure::Reopen)]
    on_store_failure: StoreFailure,
    /// Address of the admin HTTP listener (`/metrics`, `/healthz`, `/readyz`), apart from the
    /// game port; `off` disables it and the metrics with it.
    #[arg(long, env = "WARDEN_ADMIN_LISTEN", default_value = warden::admin::DEFAULT_ADMIN_LISTEN, value_parser = parse_admin_listen)]
    admin_listen: AdminListen,
    /// Log lines as human text or as one JSON object per line.
    #[arg(long, env = "WARDEN_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(flatten)]
    issuer: IssuerArgs,
}

/// What `serve` does when the embedded store fails.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum StoreFailure {
    Reopen,
    Exit,
}

/// A game backend's identity provider whose tokens are accepted besides the server's own
/// (HS256) ones.
#[derive(clap::Args, Clone, Debug)]
struct IssuerArgs {
    /// Trust tokens signed with this public key (PEM: Ed25519 for EdDSA, P-256 for ES256, RSA for
    /// RS256). Needs --jwt-issuer and --jwt-audience.
    #[arg(long, env = "WARDEN_JWT_PUBLIC_KEY", conflicts_with = "jwks", requires_all = ["jwt_issuer", "jwt_audience"])]
    jwt_public_key: Option<PathBuf>,
    /// Trust tokens signed with the keys of this JWKS file (picked by the token's `kid`). Needs
    /// --jwt-issuer and --jwt-audience.
    #[arg(long, env = "WARDEN_JWKS", requires_all = ["jwt_issuer", "jwt_audience"])]
    jwks: Option<PathBuf>,
    /// The `iss` every trusted issuer's token must carry.
    #[arg(long, env = "WARDEN_JWT_ISSUER")]
    jwt_issuer: Option<String>,
    /// The `aud` every trusted issuer's token must carry (this server's name at the issuer).
    #[arg(long, env = "WARDEN_JWT_AUDIENCE")]
    jwt_audience: Option<String>,
}

impl IssuerArgs {
    /// The trusted issuer these options describe, if any.
    fn load(&self) -> anyhow::Result<Option<TrustedIssuer>> {
        let (Some(iss), Some(aud)) = (&self.jwt_issuer, &self.jwt_audience) else {
            anyhow::ensure!(
                self.jwt_public_key.is_none() && self.jwks.is_none(),
                "a trusted issuer needs --jwt-issuer and --jwt-audience"
            );
            return Ok(None);
        };
        anyhow::ensure!(
            self.jwt_public_key.is_some() || self.jwks.is_some(),
            "--jwt-issuer and --jwt-audience need --jwt-public-key or --jwks"
        );
        let issuer = TrustedIssuer::from_file(
            self.jwt_public_key.as_deref(),
            self.jwks.as_deref(),
            iss,
            aud,
        )?;
        Ok(Some(issuer))
    }
}

/// Which store `export` and `import` work on.
#[derive(clap::Args, Clone, Debug)]
struct StoreArgs {
    /// The embedded store's data directory.
    #[arg(long, env = "WARDEN_DATA_DIR", default_value = "./warden-data")]
    data_dir: PathBuf,
    /// Use this MongoDB instead of the embedded store.
    #[arg(long, env = "WARDEN_MONGODB_URI")]
    mongodb_uri: Option<String>,
    /// Memory budget of the embedded store in MiB.
    #[arg(long, env = "WARDEN_CACHE_MB", default_value_t = DEFAULT_CACHE_MB)]
    cache_mb: u64,
}

impl StoreArgs {
    async fn open(&self) -> anyhow::Result<Backend> {
        let options = EmbeddedOptions {
            cache_mb: self.cache_mb,
            ..EmbeddedOptions::default()
        };
        let opened = open_store(
            &self.data_dir,
            self.mongodb_uri.as_deref(),
            options,
            OnFailure::Reopen,
        )
        .await?;
        Ok(opened.backend)
    }
}

/// Opens MongoDB at `mongodb_uri` if given, else the embedded store in `data_dir`, saying which
/// option to look at when it fails.
async fn open_store(
    data_dir: &Path,
    mongodb_uri: Option<&str>,
    options: EmbeddedOptions,
    on_failure: OnFailure,
) -> anyhow::Result<Opened> {
    warden::backend::open(data_dir, mongodb_uri, options, on_failure)
        .await
        .with_context(|| match mongodb_uri {
            Some(_) => "cannot use MongoDB (--mongodb-uri / WARDEN_MONGODB_URI)".to_string(),
            None => format!("cannot open the store in {}", data_dir.display()),
        })
}

/// Where the admin listener listens, if anywhere.
#[derive(Clone, Copy, Debug)]
enum AdminListen {
    Off,
    On(SocketAddr),
}

fn parse_admin_listen(text: &str) -> Result<AdminListen, String> {
    if text.eq_ignore_ascii_case("off") {
        return Ok(AdminListen::Off);
    }
    text.parse()
        .map(AdminListen::On)
        .map_err(|_| format!("{text:?} is neither an address like 127.0.0.1:7351 nor `off`"))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve over WebSocket on the embedded store, or MongoDB with `--mongodb-uri` (also what
    /// plain `warden` does).
    Serve(ServeArgs),
    /// Print a signed token for a player, spectator or service on stdout.
    Token {
        /// The player (or service) id the token proves.
        #[arg(long)]
        player: String,
        /// player, spectator or service.
        #[arg(long, default_value = "player")]
        role: Role,
        /// The data directory whose secret signs the token (as the server's).
        #[arg(long, env = "WARDEN_DATA_DIR", default_value = "./warden-data")]
        data_dir: PathBuf,
        /// How long the token is valid: e.g. 90s, 30m, 24h, 7d (plain numbers are seconds).
        #[arg(long, default_value = "24h", value_parser = parse_ttl)]
        ttl: Duration,
        /// Print the console URL carrying the token (in the URL fragment, so it never reaches a
        /// server log) instead of the bare token.
        #[arg(long)]
        console: bool,
        /// The admin listener the console URL points at (as `serve --admin-listen`).
        #[arg(long, env = "WARDEN_ADMIN_LISTEN", default_value = warden::admin::DEFAULT_ADMIN_LISTEN, value_parser = parse_admin_listen)]
        admin_listen: AdminListen,
        /// Create a development secret in `--data-dir` if it has none (otherwise a directory
        /// without one is refused: a new secret signs tokens no running server accepts).
        #[arg(long)]
        new_secret: bool,
    },
    /// Write every commit of a store to stdout, one JSON line each (resource by resource, in
    /// version order): to back up, or to move data to another store or layout with `import`.
    Export(StoreArgs),
    /// Append the commits read from stdin (as `export` writes them) to a store. Commits the store
    /// already holds are skipped, so an interrupted import can be run again.
    Import(StoreArgs),
    /// Run the seed scenario against the core on a temporary store and print each step.
    Demo {
        /// Keep the store here instead of a temporary directory.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

/// Logs to stderr in `format`, filtered by `RUST_LOG` (default: `warden=info`; per-command lines
/// are at debug). Colours only on a terminal: a file or a pipe gets plain text.
fn init_logs(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "warden=info".into());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().flatten_event(true).init(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logs(match &cli.command {
        Some(Cmd::Serve(args)) => args.log_format,
        None => cli.serve.log_format,
        Some(_) => LogFormat::Text,
    });
    match cli.command {
        Some(Cmd::Demo { data_dir }) => demo(data_dir).await,
        Some(Cmd::Serve(args)) => serve(args).await,
        Some(Cmd::Export(args)) => {
            let backend = args.open().await?;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let stats = transfer::export(backend.events.as_ref(), &mut out).await?;
            eprintln!(
                "exported {} commits ({} events) of {} resources",
                stats.commits, stats.events, stats.resources
            );
            Ok(())
        }
        Some(Cmd::Import(args)) => {
            let backend = args.open().await?;
            let mut input = std::io::stdin().lock();
            let stats = transfer::import(backend.events.as_ref(), &mut input).await?;
            eprintln!(
                "imported {} commits ({} events) of {} resources; {} were already there",
                stats.commits, stats.events, stats.resources, stats.already_there
            );
            Ok(())
        }
        Some(Cmd::Token {
            player,
            role,
            data_dir,
            ttl,
            console,
            admin_listen,
            new_secret,
        }) => {
            let keys = token_keys(&data_dir, new_secret)?;
            let token = keys.mint(&player, role, ttl.as_secs());
            match (console, admin_listen) {
                (false, _) => println!("{token}"),
                (true, AdminListen::On(admin)) => {
                    println!("{}", warden::admin::console::console_url(admin, &token))
                }
                (true, AdminListen::Off) => anyhow::bail!(
                    "--console needs the admin listener's address, but --admin-listen / \
                     WARDEN_ADMIN_LISTEN is off"
                ),
            }
            Ok(())
        }
        None => serve(cli.serve).await,
    }
}

/// The keys `warden token` signs with: `WARDEN_SECRET`, else the development secret of
/// `data_dir`, which is created only with `new_secret`. Says on stderr which one it used.
fn token_keys(data_dir: &Path, new_secret: bool) -> anyhow::Result<TokenKeys> {
    if std::env::var(SECRET_ENV).is_ok_and(|s| !s.is_empty()) {
        eprintln!("signed with {SECRET_ENV}");
        return Ok(TokenKeys::load(data_dir)?);
    }
    let file = data_dir.join(DEV_SECRET_FILE);
    anyhow::ensure!(
        new_secret || file.exists(),
        "{} has no development secret, so a server on it has not run yet: start `warden serve \
         --data-dir {}` first (it creates one), set {SECRET_ENV} to the server's secret, or pass \
         --new-secret to create one here",
        data_dir.display(),
        data_dir.display()
    );
    let keys = TokenKeys::load(data_dir)?;
    eprintln!("signed with the development secret in {}", file.display());
    Ok(keys)
}

/// `90s`, `30m`, `24h`, `7d`, or a number of seconds.
fn parse_ttl(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 90s, 30m, 24h or 7d"))?;
    let secs = match unit {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3_600),
        "d" => n.checked_mul(86_400),
        _ => None,
    };
    match secs {
        Some(s) if s > 0 => Ok(Duration::from_secs(s)),
        _ => Err(format!(
            "{text:?} is not a positive duration like 90s, 30m, 24h or 7d"
        )),
    }
}

/// The catalogue: `--catalogue FILE` alone, or the built-in types overridden by
/// `<data-dir>/catalogue.toml` when that exists.
fn load_catalogue(args: &ServeArgs) -> anyhow::Result<Catalogue> {
    if let Some(path) = &args.catalogue {
        return Ok(Catalogue::load(path)?);
    }
    let mut catalogue = Catalogue::default();
    let local = args.data_dir.join("catalogue.toml");
    if local.exists() {
        catalogue.types.extend(Catalogue::load(&local)?.types);
    }
    Ok(catalogue)
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let catalogue = load_catalogue(&args)?;
    let options = EmbeddedOptions {
        cache_mb: args.cache_mb,
        min_free_bytes: args.min_free_mb.saturating_mul(1 << 20),
        ..EmbeddedOptions::default()
    };
    let on_failure = match args.on_store_failure {
        StoreFailure::Reopen => OnFailure::Reopen,
        StoreFailure::Exit => OnFailure::Exit,
    };
    let opened = open_store(
        &args.data_dir,
        args.mongodb_uri.as_deref(),
        options,
        on_failure,
    )
    .await?;
    let mut keys = TokenKeys::load(&args.data_dir)?;
    if let Some(issuer) = args.issuer.load()? {
        tracing::info!(?issuer, "trusting a token issuer");
        keys = keys.trusting(issuer);
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let config = NetConfig {
        commands_per_second: args.rate_limit,
        max_connections: args.max_connections,
        ..NetConfig::default()
    };
    let admin_listener = match args.admin_listen {
        AdminListen::Off => None,
        AdminListen::On(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (--admin-listen)"))?,
        ),
    };
    announce(
        &args,
        &opened.backend,
        &catalogue,
        &listener,
        admin_listener.as_ref(),
    )?;
    let metrics = if admin_listener.is_some() {
        warden_core::metrics::Metrics::new()
    } else {
        warden_core::metrics::Metrics::off()
    };
    let node = Arc::new(Node::start(
        &opened.backend,
        NodeConfig {
            catalogue: Arc::new(catalogue),
            metrics,
            ..NodeConfig::default()
        },
    ));
    let shutdown = CancellationToken::new();
    tokio::spawn(signal_shutdown(shutdown.clone()));
    // The admin listener outlives the game sessions: `/readyz` answers 503 from the moment
    // shutdown begins, while sessions finish, and it stops before the node does.
    let stop_admin = CancellationToken::new();
    let game_addr = listener.local_addr()?;
    let admin_task = admin_listener.map(|l| {
        let routes = admin_routes(&node, &opened, &args, shutdown.clone(), game_addr);
        tokio::spawn(warden::admin::serve(l, routes, stop_admin.clone()))
    });
    warden_net::serve(listener, node.clone(), keys, config, shutdown).await?;
    stop_admin.cancel();
    if let Some(task) = admin_task {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "admin listener failed"),
            Err(e) => tracing::warn!(error = %e, "admin listener panicked"),
        }
    }
    tracing::info!("sessions closed; stopping the node");
    match Arc::into_inner(node) {
        Some(node) => node.shutdown().await,
        None => tracing::warn!("node still in use at shutdown"),
    }
    drop(opened);
    tracing::info!("stopped");
    Ok(())
}

/// The one line that says where the server listens and what it serves.
fn announce(
    args: &ServeArgs,
    backend: &Backend,
    catalogue: &Catalogue,
    listener: &tokio::net::TcpListener,
    admin_listener: Option<&tokio::net::TcpListener>,
) -> anyhow::Result<()> {
    let types: Vec<&str> = catalogue.types.keys().map(String::as_str).collect();
    let game = format!("ws://{}/v1", listener.local_addr()?);
    let admin = match &admin_listener {
        Some(l) => format!("http://{}/metrics", l.local_addr()?),
        None => "off".to_string(),
    };
    // The MongoDB URI may hold credentials: only the store's kind is logged.
    let data = match backend.kind {
        BackendKind::Embedded => args.data_dir.display().to_string(),
        other => other.as_str().to_string(),
    };
    tracing::info!(
        game = %game,
        admin = %admin,
        data = %data,
        data_dir = %args.data_dir.display(),
        store = backend.kind.as_str(),
        types = ?types,
        "warden serving: game {game}, admin {admin}, data {data}"
    );
    Ok(())
}

/// The admin routes (`/metrics`, `/healthz`, `/readyz` and the console) of a serving node.
fn admin_routes(
    node: &Arc<Node>,
    opened: &Opened,
    args: &ServeArgs,
    shutdown: CancellationToken,
    game_addr: std::net::SocketAddr,
) -> axum::Router {
    let mut state = warden::admin::AdminState::new(node.clone(), shutdown);
    if opened.backend.kind == BackendKind::Embedded {
        state = state
            .with_data_dir(&args.data_dir)
            .with_free_floor(args.min_free_mb.saturating_mul(1 << 20));
    }
    #[cfg(feature = "mongodb")]
    if let Some(mongo) = &opened.mongo {
        state = state.with_mongo(mongo.clone());
    }
    warden::admin::router(state).merge(warden::admin::console::router(
        warden::admin::console::ConsoleConfig { game_addr },
    ))
}

/// Cancels `shutdown` on Ctrl-C or SIGTERM.
async fn signal_shutdown(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM");
                    let _ = ctrl_c.await;
                    shutdown.cancel();
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown requested: finishing in-flight commands");
    shutdown.cancel();
}

async fn demo(data_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let temp = tempfile::tempdir().context("cannot create a temporary directory")?;
    let dir = data_dir.unwrap_or_else(|| temp.path().to_owned());
    let store = Arc::new(EmbeddedStore::open(&dir)?);
    // A fixed instant: the printed amounts are exactly the seed's, with no regeneration between
    // steps.
    let clock = ManualClock::at(1_767_225_600_000);
    let config = NodeConfig {
        clock: Arc::new(clock),
        ..NodeConfig::default()
    };
    let node = Node::start(&Backend::local(store.clone(), store.clone()), config);
    let report = warden::demo::run(&node).await?;
    println!("Warden seed scenario (store: {})", dir.display());
    println!("resource {}", report.resource_id);
    for (i, step) in report.steps.iter().enumerate() {
        let mark = if step.as_expected() {
            "as expected"
        } else {
            "UNEXPECTED"
        };
        println!(
            "{}. {:<46} {}  ({mark})",
            i + 1,
            step.title,
            step.describe()
        );
    }
    println!("\nread models of player123 (client schema):");
    print!(
        "{}",
        warden_protocol::seed::read_models_table(&report.read_models)
    );
    println!("\naudit trail:");
    let owner = warden_core::domain::Principal::player("player123");
    for e in node
        .queries()
        .history(&owner, report.resource_id, 0, usize::MAX)
        .await?
    {
        println!(
            "  v{:<3} {:<20} command {}",
            e.version,
            e.event.type_name(),
            e.command_id
        );
    }
    let all_ok = report.steps.iter().all(|s| s.as_expected());
    node.shutdown().await;
    drop(store);
    anyhow::ensure!(all_ok, "a step deviated from the seed scenario");
    Ok(())
}
