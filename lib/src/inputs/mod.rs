//! The ways a session-ending request arrives. Each input authenticates what it received in its
//! own protocol, turns it into one action of the [`Core`](crate::core::Core), and answers in its
//! protocol's format:
//!
//! - [`backchannel`] — OpenID Connect Back-Channel Logout 1.0 logout tokens;
//! - [`admin`] — the admin API (feature `admin`);
//! - [`shared_signals`] — Shared Signals Security Event Tokens: CAEP, RISC (feature
//!   `shared-signals`);
//! - [`fusionauth`] — FusionAuth webhooks (feature `fusionauth`);
//! - [`scim`] — SCIM 2.0 provisioning: deactivation and deletion (feature `scim`);
//! - [`universal_logout`] — Okta Universal Logout, the Global Token Revocation profile
//!   (feature `universal-logout`).

#[cfg(feature = "admin")]
pub mod admin;
pub mod backchannel;
#[cfg(any(feature = "admin", feature = "scim"))]
mod bearer;
#[cfg(feature = "fusionauth")]
pub mod fusionauth;
#[cfg(feature = "scim")]
pub mod scim;
#[cfg(feature = "shared-signals")]
pub mod shared_signals;
#[cfg(feature = "universal-logout")]
pub mod universal_logout;
