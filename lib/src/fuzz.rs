//! What the fuzz targets reach that the public API keeps behind I/O: the Shared Signals claim
//! rules and subject mapping, the FusionAuth signature and body checks, the HTTP head scan, and
//! the SCIM filter, attribute path, User and PATCH parsers.

use std::sync::{Arc, OnceLock};

use serde_json::{Map, Value};

use crate::core::Core;
use crate::index::{IndexSettings, MemoryIndex};
use crate::inputs::fusionauth::{FusionAuthReceiver, Handled, Tenant};
use crate::inputs::shared_signals::{Transmitter, VerifiedSet};
use crate::provider::Provider;
use crate::response::Refusal;

/// The issuer every fixture uses.
pub const ISSUER: &str = "https://op.example.com";
/// The HMAC secret of the FusionAuth fixture.
pub const HMAC_SECRET: &str = "fuzzing-hmac-secret-0123456789abcdef";
/// The FusionAuth tenant of the fixture.
pub const TENANT: &str = "tenant-1";

fn provider() -> Arc<Provider> {
    static PROVIDER: OnceLock<Option<Arc<Provider>>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Provider::from_jwks(ISSUER, &serde_json::json!({ "keys": [] })).ok())
        .clone()
        .unwrap_or_else(unreachable_provider)
}

#[allow(clippy::panic)]
fn unreachable_provider() -> Arc<Provider> {
    panic!("the fixture provider cannot be built")
}

/// The claim rules and subject mapping of a SET from [`ISSUER`] (a transmitter speaking for
/// itself, audience `receiver`), after its signature, at `now`.
pub fn set_claims(claims: &Map<String, Value>, now: u64) -> Result<VerifiedSet, Refusal> {
    let transmitter = Transmitter::new(provider(), vec!["receiver".into()]);
    crate::inputs::shared_signals::check_claims(claims, &transmitter, now)
}

/// A FusionAuth receiver over a memory index, with [`HMAC_SECRET`] and [`TENANT`].
pub fn fusionauth() -> FusionAuthReceiver<MemoryIndex> {
    let core = Core::builder(MemoryIndex::new(IndexSettings::default()))
        .issuer(ISSUER)
        .build();
    FusionAuthReceiver::new(core, &[HMAC_SECRET.to_owned().into()], vec!["lock".into()])
        .with_tenant(Tenant::new(TENANT, provider()))
}

/// Authenticate `signature`, then process `body`, at `now`.
pub async fn fusionauth_webhook(
    receiver: &FusionAuthReceiver<MemoryIndex>,
    signature: &str,
    body: &[u8],
    now: u64,
) -> Result<Handled, Refusal> {
    let signed = receiver.authenticate(Some(signature), now).await?;
    receiver.process(signed, body, now).await
}

/// Feed `chunks` to the HTTP head scan; whether it found a head with both `Content-Length` and
/// `Transfer-Encoding`.
pub fn scan_heads(chunks: &[&[u8]]) -> bool {
    let mut scan = crate::server::http::HeadScan::default();
    chunks
        .iter()
        .fold(false, |found, chunk| found | scan.feed(chunk))
}

/// A SCIM filter (also used as an attribute path), and a body read as a User resource and as a
/// PATCH message: refused or read, never a panic.
pub fn scim(filter: &str, body: &[u8]) {
    crate::inputs::scim::fuzz_parse(filter, body);
}
