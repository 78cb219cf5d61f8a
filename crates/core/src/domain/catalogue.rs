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

/// How many wallets of a type an owner holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PerOwner {
    /// One, named as the type (`gold`): a currency.
    #[default]
    One,
    /// Any number, each named by the client as `<type>:<label>` (`wood:camp-3`): items, stacks.
    Many,
}

/// One type of the catalogue: the parameters of a new wallet, and how many an owner holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogueType {
    #[serde(flatten)]
    pub params: ResourceParams,
    #[serde(default)]
    pub per_owner: PerOwner,
}

/// Resource types by name.
///
/// The file form is TOML, one table per type:
/// ```toml
/// [gold]
/// initial_amount = 1000
/// max_amount = 5000
/// regen_milli = 500   # 0.5 gold per second
///
/// [wood]
/// initial_amount = 0
/// max_amount = 10000
/// per_owner = "many"  # wallets named wood:<label>; the default is "one", named as the type
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Catalogue {
    pub types: BTreeMap<String, CatalogueType>,
}

/// Longest wallet name: the type, `:` and a label.
pub const MAX_NAME_BYTES: usize = 128;

impl Default for Catalogue {
    /// gold (the seed's: 1000 of 5000, 0.5/s) and mana (100 of 100, 2/s), one per owner; wood
    /// (0 of 10000, none), as many as an owner names.
    fn default() -> Self {
        let mut types = BTreeMap::new();
        let mut insert = |name: &str, initial_amount, max_amount, regen_milli, per_owner| {
            let params = ResourceParams {
                initial_amount,
                max_amount,
                regen_milli,
            };
            types.insert(name.into(), CatalogueType { params, per_owner });
        };
        insert("gold", 1000, 5000, 500, PerOwner::One);
        insert("mana", 100, 100, 2000, PerOwner::One);
        insert("wood", 0, 10_000, 0, PerOwner::Many);
        Self { types }
    }
}

impl Catalogue {
    pub fn get(&self, resource_type: &str) -> Option<&ResourceParams> {
        self.types.get(resource_type).map(|t| &t.params)
    }

    /// How many wallets of `resource_type` an owner holds: as the catalogue says; one for a
    /// type it does not list (a service's custom type) unless the name says otherwise.
    pub fn per_owner(&self, resource_type: &str) -> Option<PerOwner> {
        self.types.get(resource_type).map(|t| t.per_owner)
    }

    pub fn from_toml(text: &str, path: &str) -> Result<Self, CatalogueError> {
        let cat: Catalogue = toml::from_str(text).map_err(|source| CatalogueError::Parse {
            path: path.into(),
            source,
        })?;
        for (name, entry) in &cat.types {
            if name.is_empty() || name.contains(':') || name.len() > 64 {
                return Err(CatalogueError::Invalid {
                    name: name.clone(),
                    problem: "a type's name is 1 to 64 bytes without `:`".into(),
                });
            }
            validate_params(&entry.params).map_err(|problem| CatalogueError::Invalid {
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
        let many = Catalogue::from_toml(
            "[gems]\ninitial_amount = 0\nmax_amount = 10\nper_owner = \"many\"\n",
            "x",
        )
        .unwrap();
        assert_eq!(many.per_owner("gems"), Some(PerOwner::Many));
        assert_eq!(cat.per_owner("gems"), Some(PerOwner::One), "the default");
        let typo = Catalogue::from_toml("[gems]\nmax_amount = 10\nper_owner = \"several\"\n", "x");
        assert!(
            matches!(typo, Err(CatalogueError::Parse { .. })),
            "{typo:?}"
        );
        let colon = Catalogue::from_toml("[\"a:b\"]\ninitial_amount = 0\nmax_amount = 10\n", "x");
        assert!(
            matches!(colon, Err(CatalogueError::Invalid { .. })),
            "{colon:?}"
        );
        let unknown = Catalogue::from_toml(
            "[gems]\ninitial_amount = 0\nmax_amount = 10\nregen = 5\n",
            "x",
        );
        assert!(
            matches!(&unknown, Err(CatalogueError::Parse { source, .. }) if source.to_string().contains("regen")),
            "{unknown:?}"
        );
    }
}
