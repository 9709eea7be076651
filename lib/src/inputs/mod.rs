//! The ways a session-ending request arrives. Each input authenticates what it received in its
//! own protocol, names its [`Sender`](crate::core::Sender), hands the [`Core`](crate::core::Core)
//! an [`Event`](crate::core::Event) of actions, and answers in its protocol's format; a refusal
//! is a [`Refusal`](crate::response::Refusal), rendered per protocol in one place.
//!
//! - [`backchannel`] — OpenID Connect Back-Channel Logout 1.0 logout tokens;
//! - [`admin`] — the admin API (feature `admin`);
//! - `console` — the admin console's actions, by signed-in administrators (feature `server`);
//! - [`shared_signals`] — Shared Signals Security Event Tokens: CAEP, RISC (feature
//!   `shared-signals`);
//! - [`fusionauth`] — FusionAuth webhooks (feature `fusionauth`);
//! - [`scim`] — SCIM 2.0 provisioning: deactivation and deletion (feature `scim`);
//! - [`universal_logout`] — Okta Universal Logout, the Global Token Revocation profile
//!   (feature `universal-logout`).
//!
//! ## Adding an input
//!
//! 1. A folder `inputs/<name>/` holding its protocol (`mod.rs`: authenticate, build the event,
//!    answer), its configuration section (`config.rs`: the raw serde shape and its validation,
//!    with the shared sender checks of [`config::senders`](crate::config::senders)), and its
//!    `mount`, which builds its router from the server's `Mount` context, or nothing when it is not
//!    configured.
//! 2. A line here: the `mod`, a field of [`InputsConfig`] and [`InputsSettings`] and one of
//!    their validation, and a line in `mount_all`.
//! 3. A feature in `lib/Cargo.toml`, added to `server`.
//!
//! Rules every input keeps: authenticate before reading a body or doing work; bound every body;
//! never echo what it received in an answer or a log line; change nothing except through
//! [`Core::apply`](crate::core::Core::apply), which enforces the sender's scope, applies each
//! event once, runs the hooks and writes the audit line.

#[cfg(feature = "admin")]
pub mod admin;
pub mod backchannel;
#[cfg(any(feature = "admin", feature = "scim"))]
mod bearer;
#[cfg(feature = "server")]
#[doc(hidden)]
pub mod console;
#[cfg(feature = "fusionauth")]
pub mod fusionauth;
#[cfg(feature = "server")]
#[doc(hidden)]
pub mod gateway;
#[cfg(feature = "scim")]
pub mod scim;
#[cfg(feature = "server")]
#[doc(hidden)]
pub mod sessions_api;
#[cfg(feature = "shared-signals")]
pub mod shared_signals;
#[cfg(feature = "universal-logout")]
pub mod universal_logout;

#[cfg(feature = "server")]
#[doc(hidden)]
pub use self::server::{InputsConfig, InputsSettings};
#[cfg(feature = "server")]
pub(crate) use self::server::{Mount, MountError, Mounted, Place, mount_all};

/// The inputs as the library server sees them: their configuration sections, validated
/// together, and mounted in turn.
#[cfg(feature = "server")]
mod server {
    use std::sync::Arc;

    use axum::Router;
    use serde::{Deserialize, Serialize};

    use super::admin::config::{AdminToken, ScopedAdminConfig};
    use super::console::config::{ConsoleConfig, ConsoleSettings};
    use super::fusionauth::config::{FusionAuthConfig, FusionAuthSettings};
    use super::gateway::config::{CheckConfig, CheckSettings};
    use super::scim::config::{ScimClientConfig, ScimSettings};
    use super::sessions_api::config::{ApplicationConfig, ApplicationSettings};
    use super::shared_signals::config::{TransmitterConfig, TransmitterSettings};
    use super::universal_logout::config::{UniversalLogoutConfig, UniversalLogoutSettings};
    use super::{
        admin, backchannel, console, fusionauth, gateway, scim, sessions_api, shared_signals,
        universal_logout,
    };
    use crate::config::{Check, ConfigError, IssuerSettings, Secret, Settings};
    use crate::core::Core;
    use crate::index::{RecordStore, SessionIndex, UserDirectory};
    use crate::provider::{Provider, ProviderError};

    /// Every input's configuration section, as written (flattened into the file's top level;
    /// no field of its own may be flattened, so that unknown keys are still found).
    #[derive(Debug, Clone, Default, Serialize, Deserialize)]
    #[non_exhaustive]
    pub struct InputsConfig {
        /// Bearer tokens of the admin API, acting on every configured issuer; none (and no
        /// `[[admin]]`): the admin API is off.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pub admin_tokens: Vec<Secret>,
        /// Admin tokens scoped to one issuer and, optionally, one customer.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pub admin: Vec<ScopedAdminConfig>,
        /// Shared Signals transmitters whose Security Event Tokens are accepted.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pub transmitters: Vec<TransmitterConfig>,
        /// FusionAuth webhooks.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub fusionauth: Option<FusionAuthConfig>,
        /// Bearer tokens of a SCIM client for the issuer given by `issuer` (flags, environment).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pub scim_tokens: Vec<Secret>,
        /// SCIM 2.0 provisioning clients, each scoped to one issuer.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pub scim: Vec<ScimClientConfig>,
        /// Okta orgs whose Universal Logout requests are accepted.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pub universal_logout: Vec<UniversalLogoutConfig>,
        /// The console's sign-in through the OP, and its sessions.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub console: Option<ConsoleConfig>,
        /// The forward-auth check on `gateway_listen`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub check: Option<CheckConfig>,
        /// Applications of the sessions API (on `gateway_listen`), each with its tokens.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pub applications: Vec<ApplicationConfig>,
    }

    /// Every input's section, validated: an empty one leaves its input off.
    #[derive(Debug, Clone, Default)]
    #[non_exhaustive]
    pub struct InputsSettings {
        /// The admin API's tokens; none: the admin API is off.
        pub admin: Vec<AdminToken>,
        /// Shared Signals transmitters; none: no Shared Signals endpoint.
        pub transmitters: Vec<TransmitterSettings>,
        /// FusionAuth webhooks; `None`: no webhook endpoint.
        pub fusionauth: Option<FusionAuthSettings>,
        /// SCIM clients; none: no SCIM endpoint.
        pub scim: Vec<ScimSettings>,
        /// Universal Logout senders; none: no `/global-token-revocation` endpoint.
        pub universal_logout: Vec<UniversalLogoutSettings>,
        /// The console (on with admin tokens or an OIDC sign-in).
        pub console: ConsoleSettings,
        /// The forward-auth check (on with `gateway_listen`).
        pub check: CheckSettings,
        /// The sessions API's applications; none: no sessions API.
        pub applications: Vec<ApplicationSettings>,
    }

    impl InputsConfig {
        /// Validate every section against the configured issuers. `single_issuer` is the
        /// issuer given by `issuer` (what `scim_tokens` are for).
        pub fn validate(
            &self,
            single_issuer: Option<&str>,
            issuers: &[IssuerSettings],
            allow_insecure_http: bool,
            check: &mut Check<'_>,
        ) -> Result<InputsSettings, ConfigError> {
            Ok(InputsSettings {
                admin: admin::config::validate(&self.admin_tokens, &self.admin, issuers, check)?,
                transmitters: shared_signals::config::validate(
                    &self.transmitters,
                    issuers,
                    allow_insecure_http,
                    check,
                )?,
                fusionauth: self
                    .fusionauth
                    .as_ref()
                    .map(|f| f.validate(issuers, check))
                    .transpose()?,
                scim: scim::config::validate(
                    &self.scim_tokens,
                    &self.scim,
                    single_issuer,
                    issuers,
                    check,
                )?,
                universal_logout: universal_logout::config::validate(
                    &self.universal_logout,
                    issuers,
                    allow_insecure_http,
                    check,
                )?,
                console: self
                    .console
                    .as_ref()
                    .map(|c| c.validate(allow_insecure_http, check))
                    .transpose()?
                    .unwrap_or_default(),
                check: self
                    .check
                    .as_ref()
                    .map(|c| c.validate(check))
                    .transpose()?
                    .unwrap_or_default(),
                applications: sessions_api::config::validate(&self.applications, issuers, check)?,
            })
        }
    }

    /// What an input is mounted with.
    pub(crate) struct Mount<'a, S, D> {
        /// The one core.
        pub(crate) core: &'a Core<S>,
        /// Every setting.
        pub(crate) settings: &'a Settings,
        /// The configured issuers, with their keys.
        pub(crate) issuers: &'a [(Arc<Provider>, &'a IssuerSettings)],
        /// For discovering other senders' keys.
        pub(crate) http: &'a reqwest::Client,
        /// Where SCIM users are kept.
        pub(crate) directory: &'a D,
    }

    impl<S, D> Mount<'_, S, D> {
        /// The keys of a configured issuer.
        pub(crate) fn provider(&self, issuer: &str) -> Option<&Arc<Provider>> {
            self.issuers
                .iter()
                .find(|(p, _)| p.issuer() == issuer)
                .map(|(p, _)| p)
        }
    }

    /// Which listener serves a mounted input.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(crate) enum Place {
        /// The main listener, which the OPs and senders reach.
        Main,
        /// The admin listener (the main one when none is configured).
        Admin,
        /// The gateway listener (`gateway_listen`), which only the gateways reach.
        Gateway,
    }

    /// An input's routes, and where they are served.
    pub(crate) struct Mounted {
        pub(crate) router: Router,
        pub(crate) place: Place,
        /// The health checks (the back-channel input's).
        pub(crate) health: Option<Router>,
    }

    impl Mounted {
        pub(crate) fn main(router: Router) -> Self {
            Self {
                router,
                place: Place::Main,
                health: None,
            }
        }
    }

    /// A sender's keys could not be loaded while mounting its input.
    #[derive(Debug)]
    pub(crate) enum MountError {
        /// A Shared Signals transmitter's configuration or keys.
        Transmitter {
            issuer: String,
            source: ProviderError,
        },
        /// An issuer's discovery document or keys, named by `setting`.
        Issuer {
            setting: String,
            issuer: String,
            source: ProviderError,
        },
        /// The denylist in Redis could not be followed (the forward-auth check).
        Denylist(crate::index::StoreError),
    }

    /// Every configured input, in turn.
    pub(crate) async fn mount_all<S, D>(m: &Mount<'_, S, D>) -> Result<Vec<Mounted>, MountError>
    where
        S: SessionIndex + RecordStore,
        D: UserDirectory,
    {
        Ok([
            Some(backchannel::mount(m)),
            shared_signals::mount(m).await?,
            fusionauth::mount(m),
            scim::mount(m),
            universal_logout::mount(m).await?,
            admin::mount(m),
            console::mount(m),
            gateway::mount(m).await?,
            sessions_api::mount(m),
        ]
        .into_iter()
        .flatten()
        .collect())
    }
}
