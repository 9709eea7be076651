//! # oidc-logout
//!
//! Makes logout and deprovisioning take effect everywhere: an OpenID Connect Back-Channel Logout
//! 1.0 receiver that verifies logout tokens to the letter and ends the application sessions they
//! name, through a session index that every application shares in Redis.
//!
//! The path of one logout, module by module:
//!
//! 1. [`receiver`] — the axum endpoint, `POST /backchannel-logout`;
//! 2. [`logout_token`] — decoding and validation of the token, with [`provider`] supplying the
//!    issuer's keys;
//! 3. [`store`] — the session index that applications [`register`](store::SessionIndex::register)
//!    sessions in and the receiver ends them from.
//!
//! Around it: [`session_store`] keeps the index as applications log users in, [`rp`] holds the
//! logout-button helpers, [`denylist`] refuses the access tokens of ended sessions at APIs,
//! [`config`] turns files, environment and flags into settings, [`ops`] names the metrics, and
//! [`op`] is a minimal OP for the demo, the tests and integrators.
//!
//! Other inputs end sessions through [`revoke`]: the [`admin`] API, the Shared Signals receiver
//! [`ssf`] (CAEP, RISC) and [`fusionauth`] webhooks.
//!
//! ## Library use
//!
//! ```no_run
//! # async fn run() -> anyhow::Result<()> {
//! use oidc_logout::{logout_token::Policy, provider, receiver::Receiver, store};
//! use std::time::Duration;
//!
//! let index = store::RedisIndex::connect("redis://127.0.0.1/", store::IndexSettings::default()).await?;
//! let issuer = "https://op.example.com";
//! let keys = provider::Provider::discover(issuer, provider::http_client()?, Default::default()).await?;
//! let policy = Policy {
//!     issuer: issuer.into(),
//!     clients: vec![("my-app".into(), vec![jsonwebtoken::Algorithm::RS256])],
//!     trusted_audiences: vec![],
//!     max_age: Duration::from_secs(300),
//!     leeway: Duration::from_secs(30),
//!     accept_missing_exp: false,
//! };
//! let logout = Receiver::new(index.clone()).with_issuer(keys, policy).into_router();
//! let app = axum::Router::new().merge(logout); // add your own routes
//! # let _ = app; Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod admin;
pub mod config;
pub mod denylist;
pub mod fusionauth;
pub mod logout_token;
pub mod op;
pub mod ops;
pub mod provider;
pub mod receiver;
pub mod revoke;
pub mod rp;
pub mod session_store;
pub mod ssf;
pub mod store;

pub use jsonwebtoken::Algorithm;
