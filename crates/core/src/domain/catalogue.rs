//! The server-side catalogue of resource types: the parameters a player may not choose.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use thiserror::Error;

use crate::domain::{MAX_REGEN_MILLI, ResourceParams};

/// Checks a new resource's parameters make sense together (the wire type carries no rules).
pub fn validate_params(p: &ResourceParams) -> Result<(), String> {
    if p.max_amount == 0 {
        return Err("max_amount must be positive".into());
    }
    if p.initial_amount > p.max_amount {
        return Err("initial_amount exceeds max_amount".into());
    }
    if p.regen_milli > MAX_REGEN_MILLI {
        return Err(format!("regen_milli exceeds {MAX_REGEN_MILLI}"));
    }
    Ok(())
}

#[derive(Debug, Error)]
pub enum CatalogueError {
    #[error("cannot read catalogue {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("catalogue {path} is not valid TOML: {source}")]
    Parse {
        path: String,
        source: toml::de::Error,
    },
    #[error("catalogue entry {name:?}: {problem}")]
    Invalid { name: String, problem: String },
}

/// Resource types by name.
///
/// The file form is TOML, one table per type:
/// ```toml
/// [gold]
/// initial_amount = 1000
/// max_amount = 5000
/// regen_milli = 500   # 0.5 gold per second
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Catalogue {
    pub types: BTreeMap<String, ResourceParams>,
}

impl Default for Catalogue {
    /// gold (the seed's: 1000 of 5000, 0.5/s), mana (100 of 100, 2/s), wood (0 of 10000, none).
    fn default() -> Self {
        let mut types = BTreeMap::new();
        types.insert(
            "gold".into(),
            ResourceParams {
                initial_amount: 1000,
                max_amount: 5000,
                regen_milli: 500,
            },
        );
        types.insert(
            "mana".into(),
            ResourceParams {
                initial_amount: 100,
                max_amount: 100,
                regen_milli: 2000,
            },
        );
        types.insert(
            "wood".into(),
            ResourceParams {
                initial_amount: 0,
                max_amount: 10_000,
                regen_milli: 0,
            },
        );
        Self { types }
    }
}

impl Catalogue {
    pub fn get(&self, resource_type: &str) -> Option<&ResourceParams> {
        self.types.get(resource_type)
    }

    pub fn from_toml(text: &str, path: &str) -> Result<Self, CatalogueError> {
        let cat: Catalogue = toml::from_str(text).map_err(|source| CatalogueError::Parse {
            path: path.into(),
            source,
        })?;
        for (name, params) in &cat.types {
            validate_params(params).map_err(|problem| CatalogueError::Invalid {
                name: name.clone(),
                problem,
            })?;
        }
        Ok(cat)
    }

    pub fn load(path: &Path) -> Result<Self, CatalogueError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| CatalogueError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::from_toml(&text, &shown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_toml_catalogue_parses_and_is_validated() {
        let cat = Catalogue::from_toml(
            "[gems]\ninitial_amount = 1\nmax_amount = 10\nregen_milli = 0\n",
            "x",
        )
        .unwrap();
        assert_eq!(cat.get("gems").unwrap().max_amount, 10);
        let bad = Catalogue::from_toml("[gems]\ninitial_amount = 11\nmax_amount = 10\n", "x");
        assert!(matches!(bad, Err(CatalogueError::Invalid { .. })));
    }
}
