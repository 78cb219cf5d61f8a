//! A node on an embedded store in a temporary directory, started in one call, and what a test needs
//! to stop it, look at its store, and start again on the same data.

use super::T0;
use super::hooked::{HookedStore, Hooks};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use warden_core::actor::{ActorConfig, Registry};
use warden_core::clock::ManualClock;
use warden_core::domain::Catalogue;
use warden_core::hub::Hub;
use warden_core::node::{Node, NodeConfig};
use warden_core::store::{Backend, EventStore};
use warden_store_embedded::EmbeddedStore;

/// Where a test's embedded store lives: a temporary directory (deleted when the last clone of the
/// guard goes), or a directory the caller owns.
#[derive(Clone, Debug)]
pub struct DataDir {
    path: PathBuf,
    /// Keeps the temporary directory alive; `None` when the caller owns the directory.
    _temp: Option<Arc<tempfile::TempDir>>,
}

impl DataDir {
    /// A fresh, empty temporary directory.
    pub fn temp() -> Self {
        let temp = tempfile::tempdir().expect("a temporary directory");
        Self {
            path: temp.path().to_owned(),
            _temp: Some(Arc::new(temp)),
        }
    }

    /// A directory the caller owns (and deletes).
    pub fn at(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            _temp: None,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens (or reopens) the embedded store in this directory.
    pub fn open(&self) -> Arc<EmbeddedStore> {
        Arc::new(EmbeddedStore::open(&self.path).expect("the embedded store opens"))
    }
}

/// Drops the last handle to `store`, which joins its writer and closes its files; fails if
/// anything still holds it.
pub fn close(store: Arc<EmbeddedStore>) {
    let store = Arc::into_inner(store).expect("nothing else still holds the store after shutdown");
    drop(store);
}

/// A node on an embedded store, with the store and its directory at hand.
///
/// Keep the `TestNode` itself in a variable (`let t = TestNode::embedded();`) and move its `node`
/// out to shut it down: destructuring it with `..` would drop `dir`, deleting the directory under
/// the open store.
pub struct TestNode {
    pub node: Node,
    /// The store under the node (reads and checks go straight to it).
    pub store: Arc<EmbeddedStore>,
    /// What the node runs on (the store, or a [`HookedStore`] over it for the event log), so
    /// [`another`](Self::another) node can share it.
    pub backend: Backend,
    /// The node's clock: fixed at [`T0`] unless the test moves it (so amounts are exact), and
    /// unless the config hook gave the node another clock.
    pub clock: ManualClock,
    pub dir: DataDir,
}

impl TestNode {
    /// A node with the default configuration (clock fixed at [`T0`]) on a fresh embedded store.
    pub fn embedded() -> Self {
        Self::embedded_with(|_| {})
    }

    /// [`embedded`](Self::embedded), with `configure` changing the node's configuration (clock,
    /// actors, metrics...) before it starts.
    pub fn embedded_with(configure: impl FnOnce(&mut NodeConfig)) -> Self {
        Self::start(DataDir::temp(), None, configure)
    }

    /// A node on a fresh embedded store whose event log is reached through `hooks` (reads of the
    /// read model go straight to the store).
    pub fn hooked(hooks: &Arc<Hooks>, configure: impl FnOnce(&mut NodeConfig)) -> Self {
        Self::start(DataDir::temp(), Some(hooks.clone()), configure)
    }

    /// A node on the store in `dir`, opened now (e.g. again after [`stop`](Self::stop)).
    pub fn reopen(dir: DataDir, configure: impl FnOnce(&mut NodeConfig)) -> Self {
        Self::start(dir, None, configure)
    }

    /// A node on `store`, already open in `dir`.
    pub fn on(
        store: Arc<EmbeddedStore>,
        dir: DataDir,
        configure: impl FnOnce(&mut NodeConfig),
    ) -> Self {
        Self::start_on(store, dir, None, configure)
    }

    fn start(
        dir: DataDir,
        hooks: Option<Arc<Hooks>>,
        configure: impl FnOnce(&mut NodeConfig),
    ) -> Self {
        let store = dir.open();
        Self::start_on(store, dir, hooks, configure)
    }

    fn start_on(
        store: Arc<EmbeddedStore>,
        dir: DataDir,
        hooks: Option<Arc<Hooks>>,
        configure: impl FnOnce(&mut NodeConfig),
    ) -> Self {
        let events: Arc<dyn EventStore> = match hooks {
            Some(hooks) => Arc::new(HookedStore::new(store.clone(), hooks)),
            None => store.clone(),
        };
        let backend = Backend::local(events, store.clone());
        let clock = ManualClock::at(T0);
        let mut config = NodeConfig {
            clock: Arc::new(clock.clone()),
            ..NodeConfig::default()
        };
        configure(&mut config);
        let node = Node::start(&backend, config);
        Self {
            node,
            store,
            backend,
            clock,
            dir,
        }
    }

    /// Another node on the same store (as a second node on a shared store would be: its own
    /// registry and hub), with this node's clock unless `configure` says otherwise.
    pub fn another(&self, configure: impl FnOnce(&mut NodeConfig)) -> Node {
        let mut config = NodeConfig {
            clock: Arc::new(self.clock.clone()),
            ..NodeConfig::default()
        };
        configure(&mut config);
        Node::start(&self.backend, config)
    }

    pub fn registry(&self) -> &Registry {
        self.node.registry()
    }

    /// [`stop`](Self::stop), then a node again on the same data.
    pub async fn restart(self, configure: impl FnOnce(&mut NodeConfig)) -> Self {
        let dir = self.stop().await;
        Self::reopen(dir, configure)
    }

    /// Shuts the node down and closes the store (its writer joined, its files closed); the
    /// directory is handed back, to open again.
    pub async fn stop(self) -> DataDir {
        let Self {
            node,
            store,
            backend,
            dir,
            ..
        } = self;
        node.shutdown().await;
        drop(backend);
        close(store);
        dir
    }
}

/// A bare registry on `events` (no node: no task of any kind besides the actors), with its own hub,
/// the default catalogue and actor configuration, and `clock`.
pub fn bare_registry(events: Arc<dyn EventStore>, clock: &ManualClock) -> Registry {
    Registry::new(
        events,
        Arc::new(Hub::new()),
        Arc::new(Catalogue::default()),
        Arc::new(clock.clone()),
        ActorConfig::default(),
    )
}
