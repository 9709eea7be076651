//! # oidc-logout
//!
//! Makes logout and deprovisioning take effect everywhere: an OpenID Connect Back-Channel Logout
//! 1.0 receiver that verifies logout tokens to the letter and ends the application sessions they
//! name, through a session index that every application shares in Redis.
//!
//! ## The path of one logout
//!
//! 1. [`inputs::backchannel`] — the axum endpoint, `POST /backchannel-logout`: checks the
//!    request and finds the token;
//! 2. [`logout_token`] — the claim rules of the token, on top of [`jose`] (compact JWS, header
//!    rules, signatures) with [`provider`] supplying the issuer's keys;
//! 3. [`core`] — the one place sessions end: applies the logout as of its `iat`, writes the
//!    denylist marker, runs the after-logout hooks;
//! 4. [`index`] — the session index (Redis or memory) that applications register sessions in;
//! 5. `response` (private) — the answer, shaped like every endpoint's.
//!
//! Around it: [`session_store`] makes an application's tower-sessions store logout-aware and keeps
//! the index as users log in, [`rp`] is the relying party's side (login into the store, the
//! logout button and refresh on openidconnect; refresh-token revocation), [`telemetry`] names the
//! metrics and gives requests ids and spans.
//!
//! ## Features
//!
//! | feature | what it adds | default |
//! |---|---|---|
//! | `redis` | [`index::RedisIndex`]: one server, Cluster, Sentinel, TLS | yes |
//! | `session-store` | [`session_store`]: `LogoutAware` around any tower-sessions 0.15 store, and `OidcSessionStore` | yes |
//! | `tower-sessions-014` | the same for tower-sessions 0.14 (tower-sessions-redis-store 0.16) | |
//! | `rp` | [`rp`]: refresh-token revocation of the sessions a logout ends | yes |
//! | `openidconnect` | `rp::RelyingParty`: login, the logout button and refresh on openidconnect; `rp::Revalidation`, the per-request policy checks | |
//! | `admin` | [`inputs::admin`]: the admin API | |
//! | `shared-signals` | [`inputs::shared_signals`]: CAEP and RISC events (RFC 8935 push) | |
//! | `fusionauth` | [`inputs::fusionauth`]: FusionAuth webhooks | |
//! | `scim` | [`inputs::scim`]: SCIM 2.0 deprovisioning (Entra ID, Okta provisioning) | |
//! | `universal-logout` | [`inputs::universal_logout`]: Okta Universal Logout (Global Token Revocation) | |
//! | `denylist` | `denylist`: the access-token denylist layer for APIs | |
//! | `test-op` | `test_op`: a test OpenID Provider and token forge | |
//! | `server` | `server` and `config`: settings to a running service (what `oidc-logout serve` runs) | |
//! | `full` | the service's features: `server`, `denylist`, `test-op` | |
//!
//! ## Library use
//!
//! Mount the receiver in your own axum application:
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use oidc_logout::{Core, Policy, Provider, Receiver, RedisIndex};
//!
//! let index = RedisIndex::connect("redis://127.0.0.1/", Default::default()).await?;
//! let issuer = "https://op.example.com";
//! let keys = Provider::discover(issuer, oidc_logout::provider::http_client()?, Default::default()).await?;
//! let core = Core::builder(index).issuer(issuer).build();
//! let logout = Receiver::new(core).with_issuer(keys, Policy::new(issuer, "my-app")).into_router();
//! let app = axum::Router::new().merge(logout); // add your own routes
//! # let _ = app; Ok(()) }
//! ```
//!
//! With the `server` feature, `server::Server` runs what the `oidc-logout serve` command runs
//! (every enabled input on its listeners, graceful shutdown) from your own `main`.

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

#[cfg(feature = "server")]
pub mod config;
pub mod core;
#[cfg(feature = "denylist")]
pub mod denylist;
pub mod index;
pub mod inputs;
#[doc(hidden)]
pub mod jose;
#[doc(hidden)]
pub mod logout_token;
#[cfg(any(feature = "session-store", feature = "server"))]
mod net;
#[doc(hidden)]
pub mod provider;
mod response;
#[cfg(feature = "rp")]
pub mod rp;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "session-store")]
pub mod session_store;
#[doc(hidden)]
pub mod sys;
pub mod telemetry;
#[cfg(feature = "test-op")]
pub mod test_op;

/// Entry points for the fuzz targets (`fuzz/`): the parsers behind each input, without a
/// network or Redis. Not part of the API; the feature is for `cargo fuzz` only.
#[cfg(feature = "__fuzz")]
#[doc(hidden)]
pub mod fuzz;

pub use crate::core::{AfterLogout, Core, CoreError};
pub use crate::index::{MemoryIndex, SessionIndex, StoreError};
#[cfg(feature = "redis")]
pub use crate::index::{RedisIndex, RedisTarget};
pub use crate::inputs::backchannel::Receiver;
pub use crate::logout_token::{LogoutToken, Policy, Rejection};
pub use crate::provider::{Provider, ProviderError, ProviderSettings, http_client};
pub use crate::response::Refusal;
#[cfg(feature = "session-store")]
pub use crate::session_store::{Login, LogoutAware, OidcSessionStore};
pub use jsonwebtoken::Algorithm;
