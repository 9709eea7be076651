//! Why the library server could not start: each variant names the setting to look at.

use std::net::SocketAddr;

use crate::index::StoreError;
use crate::provider::ProviderError;

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// A listener could not be bound.
    #[error("cannot listen on {address} ({setting})")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// The setting that names it, as the user gave it.
        setting: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// An issuer's discovery document or keys could not be loaded.
    #[error(
        "cannot load issuer {issuer}: check the issuer URL ({setting}) and that the OP is reachable from here"
    )]
    Issuer {
        /// The setting that names it, as the user gave it.
        setting: String,
        /// The issuer.
        issuer: String,
        /// Why.
        #[source]
        source: ProviderError,
    },
    /// A Shared Signals transmitter's configuration or keys could not be loaded.
    #[error(
        "cannot load Shared Signals transmitter {issuer}: its /.well-known/ssf-configuration must be reachable from here"
    )]
    Transmitter {
        /// The transmitter.
        issuer: String,
        /// Why.
        #[source]
        source: ProviderError,
    },
    /// Redis could not be reached.
    #[error("cannot connect to Redis at {target}: is it running, and is {setting} right?")]
    Redis {
        /// The setting that names it, as the user gave it.
        setting: String,
        /// Where (password hidden).
        target: String,
        /// Why.
        #[source]
        source: StoreError,
    },
    /// The forward-auth check could not load the denylist from Redis.
    #[error("cannot follow the access-token denylist in Redis for the forward-auth check")]
    Denylist(#[source] StoreError),
    /// The HTTP client could not be built (no TLS roots).
    #[error("cannot build the HTTP client")]
    Http(#[source] reqwest::Error),
}

impl From<crate::inputs::MountError> for ServerError {
    fn from(error: crate::inputs::MountError) -> Self {
        match error {
            crate::inputs::MountError::Transmitter { issuer, source } => {
                Self::Transmitter { issuer, source }
            }
            crate::inputs::MountError::Issuer {
                setting,
                issuer,
                source,
            } => Self::Issuer {
                setting,
                issuer,
                source,
            },
            crate::inputs::MountError::Denylist(source) => Self::Denylist(source),
        }
    }
}
