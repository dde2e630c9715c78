//! PLACEHOLDER: replaced by the config work.
use super::{Config, Profile};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

pub fn load_config(path: &Path) -> Result<Config, ConfigError> {
    Err(ConfigError(format!("{}: not yet", path.display())))
}

pub fn load_profile(path: &Path) -> Result<Profile, ConfigError> {
    Err(ConfigError(format!("{}: not yet", path.display())))
}

pub fn load_profiles(dir: &Path) -> Result<BTreeMap<String, Arc<Profile>>, ConfigError> {
    Err(ConfigError(format!("{}: not yet", dir.display())))
}
