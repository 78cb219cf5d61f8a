//! Opens the store the server's configuration names: MongoDB when a URI is given, else the
//! embedded store under the data directory. The one place that knows every backend crate.

use std::path::Path;
use std::sync::Arc;
use warden_core::store::{Backend, OpenError};
use warden_store_embedded::{EmbeddedOptions, OnFailure, RecoveringStore};

/// An opened backend, and what only the admin port reads of the MongoDB store (its round trips).
#[derive(Clone, Debug)]
pub struct Opened {
    pub backend: Backend,
    #[cfg(feature = "mongodb")]
    pub mongo: Option<Arc<warden_store_mongo::MongoStore>>,
}

/// Opens MongoDB when `mongodb_uri` is given (failing within seconds if it is unreachable), else
/// the embedded store under `data_dir` with `embedded` options, which reopens itself after an
/// engine failure ([`RecoveringStore`]), or exits the process, as `on_failure` says.
pub async fn open(
    data_dir: &Path,
    mongodb_uri: Option<&str>,
    embedded: EmbeddedOptions,
    on_failure: OnFailure,
) -> Result<Opened, OpenError> {
    match mongodb_uri {
        #[cfg(not(feature = "mongodb"))]
        Some(_) => Err(OpenError::NoMongoSupport),
        #[cfg(feature = "mongodb")]
        Some(uri) => {
            use warden_store_mongo::{MongoConfig, MongoStore};
            let store = Arc::new(MongoStore::connect(uri, MongoConfig::default()).await?);
            Ok(Opened {
                backend: store.backend(),
                mongo: Some(store),
            })
        }
        None => {
            let store = Arc::new(RecoveringStore::open(data_dir, embedded, on_failure)?);
            Ok(Opened {
                backend: Backend::local(store.clone(), store),
                #[cfg(feature = "mongodb")]
                mongo: None,
            })
        }
    }
}
