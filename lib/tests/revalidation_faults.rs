//! The bound of `revalidate_after` with `unreachable = "closed"`, whatever the OP does: behind a
//! fault-injecting proxy the OP hangs (accepts and never answers), refuses connections, answers
//! too slowly, answers `503`, or answers bytes that are not HTTP. A session due after 2 s with a
//! grace of 3 s is asked for by bursts of seven parallel requests; no request is served after
//! 5 s (plus a second of slack) unless the OP confirmed, and when the OP answers again the
//! session is confirmed and served.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use common::faulty::{Fault, FaultyProxy};
use common::{Browser, serve};
use oidc_logout::index::{IndexSettings, MemoryIndex};
use oidc_logout::rp::RelyingParty;
use oidc_logout::session_store::{OidcSessionStore, Policies, SessionPolicy, Unreachable};
use oidc_logout::test_op::{SigningAlg, SigningKey, TestOp};
use secrecy::SecretString;
use tower_sessions::SessionManagerLayer;

const DUE: Duration = Duration::from_secs(2);
const GRACE: Duration = Duration::from_secs(3);
/// What the bound may be late by: the policy's times are counted from the login's second.
const SLACK: Duration = Duration::from_secs(1);

struct Setup {
    op: Arc<TestOp>,
    proxy: FaultyProxy,
    base: String,
}

/// The test OP behind the proxy (its issuer is the proxy's address), and an application whose
/// sessions revalidate after 2 s and are refused 3 s after that while the OP cannot answer.
async fn setup() -> Setup {
    let front = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let back = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let issuer = format!("http://{}", front.local_addr().expect("addr"));
    let key = Arc::new(SigningKey::generate(SigningAlg::Rs256).expect("key"));
    let op = TestOp::new(issuer.clone(), vec![key]);
    let upstream = back.local_addr().expect("addr");
    let router = op.router();
    tokio::spawn(async move { axum::serve(back, router).await });
    let proxy = FaultyProxy::start(front, upstream);
    let policy = SessionPolicy::default()
        .with_revalidate_after(DUE)
        .with_unreachable(Unreachable::ClosedAfter(GRACE));
    let rp = RelyingParty::discover_with(
        &issuer,
        "app",
        Some(SecretString::from("secret")),
        "http://127.0.0.1:3000/callback",
        common::provider_settings(),
    )
    .await
    .expect("discovery")
    .with_policies(Policies::default().with_policy("closed", policy));
    let index = MemoryIndex::new(IndexSettings::default());
    let store = OidcSessionStore::new(index.clone()).with_policies(rp.policies().clone());
    let app: Router = common::app::routes(&issuer)
        .layer(
            rp.revalidation(rp.core(index))
                .layer::<tower_sessions::Session>(),
        )
        .layer(SessionManagerLayer::new(store).with_secure(false));
    let base = serve(app).await;
    Setup { op, proxy, base }
}

/// Seven requests at once with the browser's cookie: when each answer came (since `t0`) and
/// its status.
async fn burst(base: &str, cookie: &Option<String>, t0: Instant) -> Vec<(Duration, u16)> {
    let requests = (0..7).map(|_| {
        let mut browser = Browser::new(base);
        browser.cookie = cookie.clone();
        async move {
            let status = browser.get("/me").await.0;
            (t0.elapsed(), status)
        }
    });
    futures_util::future::join_all(requests).await
}

/// Log in, break the OP, fire bursts until well after the bound, mend the OP: nothing served
/// past the bound while broken, and the session confirmed once mended.
async fn the_bound_holds_when_the_op(fault: Fault) {
    let s = setup().await;
    let mut alice = Browser::new(&s.base);
    let refresh = s.op.issue_refresh_token().expect("token");
    let t0 = Instant::now();
    alice
        .get(&format!("/login?policy=closed&refresh={refresh}"))
        .await;
    let fresh = burst(&s.base, &alice.cookie, t0).await;
    assert!(fresh.iter().all(|(_, status)| *status == 200), "{fresh:?}");
    s.proxy.set(fault);
    let mut answers = Vec::new();
    for at in [3_500, 6_500, 9_000, 12_000] {
        tokio::time::sleep_until((t0 + Duration::from_millis(at)).into()).await;
        answers.extend(burst(&s.base, &alice.cookie, t0).await);
    }
    let bound = DUE + GRACE + SLACK;
    let late: Vec<_> = answers
        .iter()
        .filter(|(at, status)| *status == 200 && *at > bound)
        .collect();
    assert!(
        late.is_empty(),
        "{fault:?}: served past the bound: {late:?} (all: {answers:?})"
    );
    let refused = answers.iter().filter(|(_, status)| *status == 503).count();
    let served: Vec<Duration> = answers
        .iter()
        .filter(|(_, status)| *status == 200)
        .map(|(at, _)| *at)
        .collect();
    // The figures, for a run with --nocapture.
    eprintln!(
        "{fault:?}: {} requests while the OP failed: {} served (the last at {:?}), \
         {refused} refused, {} served past the bound of {bound:?}",
        answers.len(),
        served.len(),
        served.iter().max(),
        late.len()
    );
    assert!(refused > 0, "{fault:?}: refused, not ended: {answers:?}");
    assert!(
        answers
            .iter()
            .all(|(_, status)| *status == 200 || *status == 503),
        "{fault:?}: the session is kept while the OP cannot answer: {answers:?}"
    );
    // Mended: the next attempt (once the last one's lease ran out) confirms and serves. An OP
    // that answered too slowly did rotate the refresh token, in an answer the application gave
    // up on: the next refresh presents a spent token, the OP refuses it, and the session ends
    // (the user logs in again) rather than being served.
    s.proxy.set(Fault::None);
    tokio::time::sleep_until((t0 + Duration::from_millis(16_000)).into()).await;
    let (status, _) = alice.get("/me").await;
    let after = if fault == Fault::Slow { 401 } else { 200 };
    assert_eq!(status, after, "{fault:?}: once the OP answers again");
    if fault == Fault::Slow {
        assert!(
            s.op.refresh_token_reuses() > 0,
            "the slow answers spent the token the application still held"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bound_holds_when_the_op_hangs() {
    the_bound_holds_when_the_op(Fault::Hang).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bound_holds_when_the_op_refuses_connections() {
    the_bound_holds_when_the_op(Fault::Refuse).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bound_holds_when_the_op_answers_too_slowly() {
    the_bound_holds_when_the_op(Fault::Slow).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bound_holds_when_the_op_answers_503() {
    the_bound_holds_when_the_op(Fault::Unavailable).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bound_holds_when_the_op_answers_garbage() {
    the_bound_holds_when_the_op(Fault::Garbage).await;
}
