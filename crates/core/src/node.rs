//! One server node: the store, the hub, the actor registry and the query handler, started
//! together and stopped in the right order. (The read model needs no task of its own: every
//! backend writes a resource's view with its commit.)

use crate::actor::{ActorConfig, Registry};
use crate::clock::{Clock, SystemClock};
use crate::domain::Catalogue;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::projection::QueryHandler;
use crate::relay::{Relay, RelayConfig};
use crate::store::Backend;
use std::sync::Arc;

/// How to build a node; every field has a working default.
#[derive(Clone)]
pub struct NodeConfig {
    pub catalogue: Arc<Catalogue>,
    pub clock: Arc<dyn Clock>,
    pub actors: ActorConfig,
    /// Where every layer of the node records its metrics (`Metrics::off()` records nothing).
    pub metrics: Metrics,
    /// The hub to publish on; `None` gives the node its own. (Tests share one between several
    /// nodes on one store, to stand for the relay.)
    pub hub: Option<Arc<Hub>>,
    /// Tunables of the relay a node on a shared store (MongoDB) runs (tests poll faster or slower).
    pub relay: RelayConfig,
}

impl std::fmt::Debug for NodeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeConfig")
            .field("catalogue", &self.catalogue)
            .field("actors", &self.actors)
            .field("metrics", &self.metrics)
            .finish_non_exhaustive()
    }
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            catalogue: Arc::new(Catalogue::default()),
            clock: Arc::new(SystemClock),
            actors: ActorConfig::default(),
            metrics: Metrics::new(),
            hub: None,
            relay: RelayConfig::default(),
        }
    }
}

/// A running node. The front end uses its small API: [`registry`](Self::registry) for commands,
/// [`queries`](Self::queries) for reads, [`hub`](Self::hub) for live changes, and its clock and
/// metrics; it never reaches the stores.
#[derive(Debug)]
pub struct Node {
    /// Finds or spawns the actor of a resource and runs commands through it.
    registry: Registry,
    /// Every read a client can make.
    queries: QueryHandler,
    /// Committed changes, per resource and per owner, for live subscriptions.
    hub: Arc<Hub>,
    /// The node's metrics, shared by its actors, sessions and subscriptions.
    metrics: Metrics,
    /// Publishes other nodes' commits on `hub` when the store is shared (MongoDB).
    relay: Option<Relay>,
    /// Repairs, once at start, read-model views a crash left behind on MongoDB.
    repair: Option<tokio::task::JoinHandle<()>>,
}

impl Node {
    /// Starts a node on the stores `backend` names; on MongoDB also starts the relay that brings
    /// other nodes' changes to this node's subscribers. Must be called inside a tokio runtime.
    pub fn start(backend: &Backend, config: NodeConfig) -> Self {
        let hub = config.hub.unwrap_or_else(|| Arc::new(Hub::new()));
        config
            .metrics
            .economy_types(config.catalogue.types.keys().map(String::as_str));
        let registry = Registry::with_metrics(
            backend.events.clone(),
            hub.clone(),
            config.catalogue,
            config.clock.clone(),
            config.actors,
            config.metrics.clone(),
        );
        let mut node = Self {
            registry,
            queries: QueryHandler::new(backend.events.clone(), backend.read.clone(), config.clock),
            hub,
            metrics: config.metrics,
            relay: None,
            repair: None,
        };
        if let Some(feed) = backend.feed() {
            node.relay = Some(Relay::start(feed, node.hub.clone(), config.relay));
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

    /// Commands: the actor registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Reads: views, history, past states, and what subscriptions start and repair from.
    pub fn queries(&self) -> &QueryHandler {
        &self.queries
    }

    /// Live changes committed through this node (and, with a relay, through the others).
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// The node's clock (the one its rules read).
    pub fn clock(&self) -> &dyn Clock {
        self.registry.clock().as_ref()
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
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

    /// Stops the relay, then finishes in-flight commands and stops the actors.
    pub async fn shutdown(self) {
        if let Some(repair) = self.repair {
            repair.abort();
        }
        if let Some(relay) = self.relay {
            relay.stop().await;
        }
        self.registry.shutdown().await;
    }
}
