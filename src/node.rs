//! One server node: the store, the hub, the actor registry and the query handler, started
//! together and stopped in the right order. (The read model needs no task of its own: every
//! backend writes a resource's view with its commit.)

use crate::actor::{ActorConfig, Registry};
use crate::bus::Hub;
use crate::clock::{Clock, SystemClock};
use crate::domain::Catalogue;
use crate::metrics::Metrics;
use crate::projection::QueryHandler;
#[cfg(feature = "mongodb")]
use crate::relay::{Relay, RelayConfig};
use crate::store::{Backend, EventStore, ReadModelStore};
use std::sync::Arc;

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
    /// Publishes other nodes' commits on `hub` when the store is shared (MongoDB).
    #[cfg(feature = "mongodb")]
    relay: Option<Relay>,
    /// Repairs, once at start, read-model views a crash left behind on MongoDB.
    #[cfg(feature = "mongodb")]
    repair: Option<tokio::task::JoinHandle<()>>,
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
    #[cfg(feature = "mongodb")]
    pub fn start_on(backend: &Backend, config: NodeConfig) -> Self {
        Self::start_on_with_relay(backend, config, RelayConfig::default())
    }

    /// Starts a node on the stores `backend` names.
    #[cfg(not(feature = "mongodb"))]
    pub fn start_on(backend: &Backend, config: NodeConfig) -> Self {
        Self::start(backend.events.clone(), backend.read.clone(), config)
    }

    /// [`start_on`](Self::start_on) with relay tunables (tests poll faster or slower).
    #[cfg(feature = "mongodb")]
    pub fn start_on_with_relay(
        backend: &Backend,
        config: NodeConfig,
        relay_config: RelayConfig,
    ) -> Self {
        let mut node = Self::start(backend.events.clone(), backend.read.clone(), config);
        if let Some(feed) = backend.feed() {
            node.relay = Some(Relay::start(feed, node.hub.clone(), relay_config));
            // MongoDB writes views right after the commit documents, not atomically with them:
            // repair, in the background, any view a crash between the two left behind.
            let (events, read) = (backend.events.clone(), backend.read.clone());
            node.repair = Some(tokio::spawn(async move {
                match crate::projection::catch_up(events.as_ref(), read.as_ref()).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(views = n, "read model: views behind the log repaired"),
                    Err(e) => tracing::warn!(error = %e, "read-model repair at start failed"),
                }
            }));
        }
        node
    }

    /// True while this node's relay follows a change stream (false when it polls or there is
    /// no relay).
    #[cfg(feature = "mongodb")]
    pub fn relay_streaming(&self) -> bool {
        self.relay.as_ref().is_some_and(Relay::is_streaming)
    }

    /// True while this node's relay follows a change stream: never without MongoDB.
    #[cfg(not(feature = "mongodb"))]
    pub fn relay_streaming(&self) -> bool {
        false
    }

    /// True when this node runs a relay (a shared MongoDB store).
    pub fn has_relay(&self) -> bool {
        #[cfg(feature = "mongodb")]
        return self.relay.is_some();
        #[cfg(not(feature = "mongodb"))]
        false
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
        Self {
            registry,
            queries: QueryHandler::new(store.clone(), read.clone()),
            hub,
            store,
            read,
            metrics: config.metrics,
            #[cfg(feature = "mongodb")]
            relay: None,
            #[cfg(feature = "mongodb")]
            repair: None,
        }
    }

    /// Stops the relay, then finishes in-flight commands and stops the actors.
    pub async fn shutdown(self) {
        #[cfg(feature = "mongodb")]
        if let Some(repair) = self.repair {
            repair.abort();
        }
        #[cfg(feature = "mongodb")]
        if let Some(relay) = self.relay {
            relay.stop().await;
        }
        self.registry.shutdown().await;
    }
}
