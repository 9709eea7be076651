//! # oidc-logout
//!
//! Makes logout and deprovisioning take effect everywhere: an OpenID Connect Back-Channel Logout
//! 1.0 receiver that verifies logout tokens to the letter and ends the application sessions they
//! name, through a session index that every application shares in Redis.
//!
//! ## Where to start
//!
//! - **An axum application that logs users in** with openidconnect and keeps sessions with
//!   tower-sessions: wrap your store in [`LogoutAware`], record the login with [`Login`], mount
//!   the [`Receiver`]. The [adoption guide] is the whole change (about 25 lines, the logout button
//!   and its return included), and [`examples/app.rs`] an application written with this crate
//!   from the start. Handlers take the login with the [`LoggedIn`](session_store::LoggedIn)
//!   extractor.
//! - **An API** that must refuse a revoked user's access tokens:
//!   [`DenylistLayer`](denylist::DenylistLayer) ([denylist guide], [`examples/api.rs`]).
//! - **One receiver service for many applications**, configured by file and environment: the
//!   `oidc-logout serve` command, or [`server::Server`] in your own `main` ([configuration]).
//! - **Deprovisioning** (SCIM, Shared Signals, FusionAuth, Okta Universal Logout, admin API) and
//!   per-customer session policies: [deprovisioning guide].
//!
//! Dependency line, until the crate is published:
//!
//! ```toml
//! oidc-logout = { git = "https://github.com/oidc-logout/oidc-logout", features = ["openidconnect"] }
//! ```
//!
//! ## The path of one logout
//!
//! 1. [`Receiver`] — the axum endpoint, `POST /backchannel-logout`: checks the request and
//!    finds the token;
//! 2. [`LogoutToken`] — the claim rules of the token (its [`Policy`]), with the issuer's keys
//!    from [`Provider`];
//! 3. [`Core`] — the one place sessions end, whoever asks: scope, exactly-once, the denylist
//!    marker, the after-logout hooks, the audit line;
//! 4. [`index`] — the session index (Redis or memory) that applications register sessions in
//!    (its Redis layout is a contract for applications in other languages: [redis-schema]);
//! 5. the answer, shaped like every endpoint's ([`Refusal`]).
//!
//! Around it: [`session_store`] makes an application's tower-sessions store logout-aware and
//! keeps the index as users log in, [`rp`] is the relying party's side (login into the store, the
//! logout button and refresh on openidconnect; refresh-token revocation), [`inputs`] are the other
//! ways a logout arrives, [`telemetry`] gives requests ids and spans.
//!
//! ## Features
//!
//! | feature | what it adds | default |
//! |---|---|---|
//! | `redis` | [`RedisIndex`]: one server, Cluster, Sentinel, TLS | yes |
//! | `tower-sessions-014` | [`session_store`] for tower-sessions 0.14: `LogoutAware` around any store, `OidcSessionStore`, the extractors (0.14 because axum-login 0.18 and tower-sessions-redis-store 0.16 are on it) | yes |
//! | `tower-sessions-015` | the same for tower-sessions 0.15 (both may be on) | |
//! | `rp` | [`rp`]: refresh-token revocation of the sessions a logout ends | yes |
//! | `openidconnect` | `rp::RelyingParty`: login, the logout button and refresh on openidconnect; `rp::Revalidation`, the per-request policy checks | |
//! | `admin` | [`inputs::admin`]: the admin API | |
//! | `shared-signals` | [`inputs::shared_signals`]: CAEP and RISC events (RFC 8935 push) | |
//! | `fusionauth` | [`inputs::fusionauth`]: FusionAuth webhooks | |
//! | `scim` | [`inputs::scim`]: SCIM 2.0 deprovisioning (Entra ID, Okta provisioning) | |
//! | `universal-logout` | [`inputs::universal_logout`]: Okta Universal Logout (Global Token Revocation) | |
//! | `denylist` | `denylist`: the access-token denylist layer for APIs | |
//! | `test-op` | `test_op`: a test OpenID Provider for an application's own tests | |
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
//! let keys = Provider::discover(issuer, oidc_logout::http_client()?, Default::default()).await?;
//! let core = Core::builder(index).issuer(issuer).build();
//! let logout = Receiver::new(core).with_issuer(keys, Policy::new(issuer, "my-app")).into_router();
//! let app = axum::Router::new().merge(logout); // add your own routes
//! # let _ = app; Ok(()) }
//! ```
//!
//! Items hidden from this documentation are public for this project's command and tests only:
//! no promise is made about them.
//!
//! [adoption guide]: https://github.com/oidc-logout/oidc-logout/blob/main/docs/adopting.md
//! [`examples/app.rs`]: https://github.com/oidc-logout/oidc-logout/blob/main/examples/app.rs
//! [`examples/api.rs`]: https://github.com/oidc-logout/oidc-logout/blob/main/examples/api.rs
//! [denylist guide]: https://github.com/oidc-logout/oidc-logout/blob/main/docs/denylist.md
//! [configuration]: https://github.com/oidc-logout/oidc-logout/blob/main/docs/configuration.md
//! [deprovisioning guide]: https://github.com/oidc-logout/oidc-logout/blob/main/docs/deprovisioning.md
//! [redis-schema]: https://github.com/oidc-logout/oidc-logout/blob/main/docs/redis-schema.md

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
