//! The forward-auth check's section, `[check]`: whether it verifies access tokens or only looks
//! them up in the denylist, the audiences it accepts beyond the issuers' clients, and how long
//! its denylist view may be out of sync before it refuses everything. The check itself is on
//! whenever `gateway_listen` is set.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{Check, ConfigError};

/// What the check does with a token.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CheckMode {
    /// Verify the JWT (signature with the issuer's keys, `iss`, `aud`, `exp`, `nbf`, `iat`),
    /// then look it up in the denylist; answer with the identity headers.
    #[default]
    Verify,
    /// Only look it up in the denylist (the API or the gateway verifies it); no identity headers,
    /// since nothing here vouches for them.
    Denylist,
}

/// `[check]`, as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct CheckConfig {
    /// `verify` (default) or `denylist`.
    #[serde(default)]
    pub mode: CheckMode,
    /// Audiences accepted besides each issuer's clients and trusted audiences (your APIs').
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
    /// Seconds the denylist view may be out of sync with Redis before every check is refused.
    #[serde(default = "default_max_unsynced")]
    pub max_unsynced_secs: u64,
}

fn default_max_unsynced() -> u64 {
    5
}

impl Default for CheckConfig {
    fn default() -> Self {
        Self {
            mode: CheckMode::default(),
            audiences: Vec::new(),
            max_unsynced_secs: default_max_unsynced(),
        }
    }
}

/// `[check]`, validated.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CheckSettings {
    /// What the check does.
    pub mode: CheckMode,
    /// Extra audiences.
    pub audiences: Vec<String>,
    /// How long the view may be out of sync.
    pub max_unsynced: Duration,
}

impl Default for CheckSettings {
    fn default() -> Self {
        Self {
            mode: CheckMode::default(),
            audiences: Vec::new(),
            max_unsynced: Duration::from_secs(default_max_unsynced()),
        }
    }
}

impl CheckConfig {
    /// Validate: the sync bound between 1 and 60 s.
    pub fn validate(&self, check: &Check<'_>) -> Result<CheckSettings, ConfigError> {
        if !(1..=60).contains(&self.max_unsynced_secs) {
            return Err(check.invalid(
                "check.max_unsynced_secs",
                "must be between 1 and 60 seconds",
            ));
        }
        if self.audiences.iter().any(String::is_empty) {
            return Err(check.invalid("check.audiences", "an audience must not be empty"));
        }
        Ok(CheckSettings {
            mode: self.mode,
            audiences: self.audiences.clone(),
            max_unsynced: Duration::from_secs(self.max_unsynced_secs),
        })
    }
}
