//! One server node: the store, the hub, the actor registry, the read-model updater and the query
//! handler, started together and stopped in the right order.

use crate::actor::{ActorConfig, Registry};
use crate::bus::Hub;
use crate::clock::{Clock, SystemClock};
use crate::domain::Catalogue;
use crate::projection::{QueryHandler, run_updater};
use crate::store::{EventStore, ReadModelStore};
use std::sync::Arc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How to build a node; every field has a working default.
#[derive(Clone)]
pub struct NodeConfig {
    pub catalogue: Arc<Catalogue>,
    pub clock: Arc<dyn Clock>,
    pub actors: ActorConfig,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            catalogue: Arc::new(Catalogue::default()),
            clock: Arc::new(SystemClock),
            actors: ActorConfig::default(),
        }
    }
}

/// A running node.
pub struct Node {
    pub registry: Registry,
    pub queries: QueryHandler,
    pub hub: Arc<Hub>,
    pub store: Arc<dyn EventStore>,
    pub read: Arc<dyn ReadModelStore>,
    /// Stops the read-model updater.
    stop_updater: CancellationToken,
    updater: JoinHandle<()>,
}

impl Node {
    /// Starts a node with its own hub. Must be called inside a tokio runtime.
    pub fn start(
        store: Arc<dyn EventStore>,
        read: Arc<dyn ReadModelStore>,
        config: NodeConfig,
    ) -> Self {
        Self::start_with_hub(store, read, Arc::new(Hub::new()), config)
    }

    /// Starts a node publishing to `hub` (several registries may share one in tests).
    pub fn start_with_hub(
        store: Arc<dyn EventStore>,
        read: Arc<dyn ReadModelStore>,
        hub: Arc<Hub>,
        config: NodeConfig,
    ) -> Self {
        let registry = Registry::new(
            store.clone(),
            hub.clone(),
            config.catalogue,
            config.clock,
            config.actors,
        );
        let stop_updater = CancellationToken::new();
        let updater = tokio::spawn(run_updater(
            store.clone(),
            read.clone(),
            hub.clone(),
            stop_updater.clone(),
        ));
        Self {
            registry,
            queries: QueryHandler::new(store.clone(), read.clone()),
            hub,
            store,
            read,
            stop_updater,
            updater,
        }
    }

    /// Finishes in-flight commands, stops the actors, then lets the updater write what was
    /// published and stops it.
    pub async fn shutdown(self) {
        self.registry.shutdown().await;
        self.stop_updater.cancel();
        let _ = self.updater.await;
    }
}
