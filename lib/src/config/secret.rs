//! Secrets in settings: read like any string, written back as `***` (Redis URLs with only the
//! password hidden), so the effective settings can be printed through serde without a
//! hand-written redacting copy.

use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A secret setting (token, password, client secret).
#[derive(Clone, Debug, Default)]
pub struct Secret(SecretString);

impl Secret {
    /// The secret itself.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// As a [`SecretString`], for the parts that take one.
    pub fn to_secret_string(&self) -> SecretString {
        self.0.clone()
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(SecretString::from(value))
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("***")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::from)
    }
}

/// Redis URLs (comma-separated for a Cluster or the sentinels): secret because they may carry a
/// password, written back with the password as `***` and the rest as is.
#[derive(Clone, Debug, Default)]
pub struct RedisUrls(SecretString);

impl RedisUrls {
    /// The URLs, as given.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl From<String> for RedisUrls {
    fn from(value: String) -> Self {
        Self(SecretString::from(value))
    }
}

impl Serialize for RedisUrls {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let redacted: Vec<String> = self
            .expose()
            .split(',')
            .map(|url| crate::index::redact_url(url.trim()))
            .collect();
        serializer.serialize_str(&redacted.join(","))
    }
}

impl<'de> Deserialize<'de> for RedisUrls {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::from)
    }
}
