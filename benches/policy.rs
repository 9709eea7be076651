//! What the per-request policy check costs (`Revalidation::check`), and one revalidation.
//!
//! 1. **Check**, `POLICY_CHECKS` (default 1,000,000) times on one logged-in tower-sessions
//!    session, in one task: with no policy that checks requests (the layer returns at once),
//!    and with a `revalidate_after` policy while the session is fresh (reads the session's
//!    small check record, finds its policy, compares times; no OP call). Prints ns per check.
//! 2. **Revalidation**, `REVALIDATIONS` (default 300) due sessions confirmed one after another
//!    at the built-in OP over loopback HTTP (the refresh grant, new tokens into the session).
//!    Prints p50/p99.
//!
//! Run: `cargo bench --bench policy`.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{now, percentile};
use oidc_logout::index::{IndexSettings, MemoryIndex};
use oidc_logout::provider::ProviderSettings;
use oidc_logout::rp::{Checked, RelyingParty};
use oidc_logout::session_store::{
    CHECK_KEY, Login, Policies, PolicyRule, SessionPolicy, TokenSecret,
};
use oidc_logout::test_op::SigningAlg;
use tower_sessions::{MemoryStore, Session};

fn count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn login(issuer: &str, policy: Option<&str>, refresh: Option<String>) -> Login {
    Login {
        issuer: issuer.into(),
        sub: "alice".into(),
        client_id: Some("app".into()),
        sid: Some("op-session".into()),
        auth_time: now() - 60,
        logged_in_at: now() - 60,
        policy: policy.map(str::to_owned),
        id_token: None,
        refresh_token: refresh.map(TokenSecret::new),
        access_token: None,
        customer: None,
    }
}

async fn logged_in(login: &Login) -> Session {
    let session = Session::new(None, Arc::new(MemoryStore::default()), None);
    login.save_to(&session).await.expect("login");
    session
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

async fn run() {
    let (op, _key, issuer) = common::op(SigningAlg::Rs256).await;
    let policies = Policies::default()
        .with_policy(
            "strict",
            SessionPolicy::default().with_revalidate_after(Duration::from_secs(300)),
        )
        .with_rule(PolicyRule::new("strict").claim("tid", "acme"));
    let rp = RelyingParty::discover_with(
        &issuer,
        "app",
        None,
        "http://127.0.0.1:3000/callback",
        ProviderSettings::default().with_allow_insecure_http(true),
    )
    .await
    .expect("discovery");
    let index = MemoryIndex::new(IndexSettings::default());
    let none = rp.clone().revalidation(rp.core(index.clone()));
    let core = rp.core(index);
    let checking = rp.with_policies(policies).revalidation(core);

    let checks = count("POLICY_CHECKS", 1_000_000);
    println!("per-request policy check, {checks} checks each (one task, current-thread runtime)");
    let session = logged_in(&login(&issuer, Some("strict"), None)).await;
    for (name, revalidation) in [
        ("no policy checks requests", &none),
        ("revalidate_after, fresh session", &checking),
    ] {
        let start = Instant::now();
        for _ in 0..checks {
            let checked = revalidation.check(&session).await.expect("check");
            assert_eq!(checked, Checked::Pass);
        }
        let per = start.elapsed().as_nanos() / checks as u128;
        println!("  {name:<34} {per:>6} ns per check");
    }
    assert_eq!(op.user_requests(), 0, "no OP call while fresh");

    let rounds = count("REVALIDATIONS", 300);
    let mut times = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let refresh = op.issue_refresh_token().expect("token");
        let session = logged_in(&login(&issuer, Some("strict"), Some(refresh))).await;
        // Make it due: last confirmed an hour ago.
        let mut facts = session
            .get_value(CHECK_KEY)
            .await
            .expect("read")
            .expect("check record");
        facts["at"] = (now() - 3600 - round as u64).into();
        session.insert_value(CHECK_KEY, facts).await.expect("write");
        let start = Instant::now();
        let checked = checking.check(&session).await.expect("check");
        times.push(start.elapsed());
        assert_eq!(checked, Checked::Confirmed);
    }
    assert_eq!(
        op.user_requests(),
        rounds as u64,
        "one OP call per revalidation"
    );
    times.sort();
    println!(
        "one revalidation (refresh grant at the built-in OP over loopback), {rounds} sessions: \
         p50 {:.2} ms, p99 {:.2} ms",
        percentile(&times, 0.50).as_secs_f64() * 1000.0,
        percentile(&times, 0.99).as_secs_f64() * 1000.0,
    );
}
