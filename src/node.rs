//! One server node: the store, the hub, the actor registry, the read-model updater and the query
//! handler, started together and stopped in the right order.

use crate::actor::{ActorConfig, Registry};
use crate::bus::Hub;
use crate::clock::{Clock, SystemClock};
use crate::domain::Catalogue;
use crate::metrics::Metrics;
use crate::projection::{QueryHandler, run_updater};
use crate::relay::{Relay, RelayConfig};
use crate::store::{Backend, EventStore, ReadModelStore};
use std::sync::Arc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How to build a node; every field has a working default.
#[derive(Clone)]
pub struct NodeConfig {
    pub catalogue: Arc<Catalogue>,
    pub clock: Arc<dyn Clock>,
    pub actors: ActorConfig,
    /// Where every layer of the node records its metrics (`Metrics::off()` records nothing).
    pub metrics: Metrics,
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            catalogue: Arc::new(Catalogue::default()),
            clock: Arc::new(SystemClock),
            actors: ActorConfig::default(),
            metrics: Metrics::new(),
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
    /// The node's metrics, shared by its actors, sessions and subscriptions.
    pub metrics: Metrics,
    /// Stops the read-model updater.
    stop_updater: CancellationToken,
    updater: JoinHandle<()>,
    /// Publishes other nodes' commits on `hub` when the store is shared (MongoDB).
    relay: Option<Relay>,
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

    /// Starts a node on the stores `backend` names; on MongoDB also starts the relay that brings
    /// other nodes' changes to this node's subscribers.
    pub fn start_on(backend: &Backend, config: NodeConfig) -> Self {
        Self::start_on_with_relay(backend, config, RelayConfig::default())
    }

    /// [`start_on`](Self::start_on) with relay tunables (tests poll faster or slower).
    pub fn start_on_with_relay(
        backend: &Backend,
        config: NodeConfig,
        relay_config: RelayConfig,
    ) -> Self {
        let mut node = Self::start(backend.events.clone(), backend.read.clone(), config);
        if let Some(mongo) = &backend.mongo {
            node.relay = Some(Relay::start(
                mongo.clone(),
                backend.read.clone(),
                node.hub.clone(),
                relay_config,
            ));
        }
        node
    }

    /// True while this node's relay follows a change stream (false when it polls or there is
    /// no relay).
    pub fn relay_streaming(&self) -> bool {
        self.relay.as_ref().is_some_and(Relay::is_streaming)
    }

    /// True when this node runs a relay (a shared MongoDB store).
    pub fn has_relay(&self) -> bool {
        self.relay.is_some()
    }

    /// Starts a node publishing to `hub` (several registries may share one in tests).
    pub fn start_with_hub(
        store: Arc<dyn EventStore>,
        read: Arc<dyn ReadModelStore>,
        hub: Arc<Hub>,
        config: NodeConfig,
    ) -> Self {
        let registry = Registry::with_metrics(
            store.clone(),
            hub.clone(),
            config.catalogue,
            config.clock,
            config.actors,
            config.metrics.clone(),
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
            metrics: config.metrics,
            stop_updater,
            updater,
            relay: None,
        }
    }

    /// Stops the relay, finishes in-flight commands, stops the actors, then lets the updater write what was
    /// published and stops it.
    pub async fn shutdown(self) {
        if let Some(relay) = self.relay {
            relay.stop().await;
        }
        self.registry.shutdown().await;
        self.stop_updater.cancel();
        let _ = self.updater.await;
    }
}
