//! Faults the receiver must ride out: Redis crashing and coming back under load, an OP whose
//! JWKS endpoint is slow, and a flood of tokens naming keys that do not exist.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{CLIENT, Harness, Op, RedisServer, endpoint, index_on, now, post_form, start};
use oidc_logout::index::{SessionRecord, SessionState};
use oidc_logout::test_op::{JwksMode, SigningAlg, SigningKey};

/// What one logout request of the load got.
struct Sent {
    token: usize,
    /// When the request was sent.
    at: Instant,
    /// When its answer (or the failure to get one) arrived.
    done: Instant,
    status: Option<u16>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_crash_and_restart_under_load_loses_no_acknowledged_logout() {
    const TOKENS: usize = 3000;
    const WORKERS: usize = 4;
    let mut redis = RedisServer::start_durable();
    let op = Op::start().await;
    let redis_url = redis.url();
    let mut receiver = start(
        &["serve"],
        &[
            ("OIDC_LOGOUT_ISSUER", op.issuer()),
            ("OIDC_LOGOUT_CLIENT_ID", CLIENT),
            ("OIDC_LOGOUT_REDIS_URL", &redis_url),
            ("OIDC_LOGOUT_LISTEN", "127.0.0.1:0"),
        ],
    );
    let url = endpoint(&receiver);
    let index = index_on(&redis).await;
    for i in 0..TOKENS {
        let record = SessionRecord {
            session_id: format!("session-{i}"),
            issuer: op.issuer().into(),
            sub: format!("user-{i}"),
            sid: Some(format!("sid-{i}")),
            auth_time: now() - 5,
            ttl: Duration::from_secs(600),
            customer: None,
        };
        common::register(&index, &record).await;
    }
    let tokens: Arc<Vec<String>> = Arc::new(
        (0..TOKENS)
            .map(|i| op.sign(&op.claims(None, Some(&format!("sid-{i}")))))
            .collect(),
    );

    // A steady load over kept-alive connections, until told to stop.
    let (next, stop) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..WORKERS {
        let (tokens, next, stop, url) = (
            Arc::clone(&tokens),
            Arc::clone(&next),
            Arc::clone(&stop),
            url.clone(),
        );
        workers.spawn(async move {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("client");
            let mut sent = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let token = next.fetch_add(1, Ordering::Relaxed);
                let Some(jwt) = tokens.get(token) else { break };
                let at = Instant::now();
                let status = http
                    .post(&url)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(oidc_logout::test_op::send::form_body(jwt))
                    .send()
                    .await
                    .ok()
                    .map(|r| r.status().as_u16());
                sent.push(Sent {
                    token,
                    at,
                    done: Instant::now(),
                    status,
                });
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            sent
        });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Redis is gone from the moment the kill is sent, not from when `stop` has reaped it: a
    // request refused while `stop` waits (under load, a while) was refused after the crash.
    let down = Instant::now();
    tokio::task::block_in_place(|| redis.stop()); // SIGKILL: a crash
    tokio::time::sleep(Duration::from_secs(1)).await;
    tokio::task::block_in_place(|| redis.restart()); // returns once the port accepts
    let back = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    let sent: Vec<Sent> = workers.join_all().await.into_iter().flatten().collect();
    assert!(
        next.load(Ordering::Relaxed) < TOKENS,
        "the load ran out of tokens before the end of the test"
    );

    let unanswered = sent.iter().filter(|s| s.status.is_none()).count();
    assert_eq!(
        unanswered, 0,
        "every request gets an HTTP answer: no crash, nothing stuck"
    );
    assert!(receiver.is_running(), "the receiver survived");
    let refused: Vec<&Sent> = sent.iter().filter(|s| s.status == Some(503)).collect();
    let acknowledged: Vec<&Sent> = sent.iter().filter(|s| s.status == Some(200)).collect();
    assert_eq!(
        refused.len() + acknowledged.len(),
        sent.len(),
        "answers are 200 (applied) or 503 (not applied, retry)"
    );
    assert!(!refused.is_empty(), "the outage was seen by the load");
    assert!(
        refused.iter().all(|s| s.done >= down),
        "nothing is refused before Redis went away"
    );
    let first_ok_after = acknowledged
        .iter()
        .filter(|s| s.at >= back)
        .map(|s| s.at - back)
        .min();
    eprintln!(
        "outage: {} refused with 503, {} acknowledged; first 200 {first_ok_after:?} after Redis \
         accepted connections again",
        refused.len(),
        acknowledged.len()
    );
    let late: Vec<_> = refused
        .iter()
        .filter(|s| s.at >= back + Duration::from_secs(1))
        .map(|s| s.at - back)
        .collect();
    assert!(
        late.is_empty(),
        "full service within a second of Redis returning; refused at {late:?} after"
    );

    // No acknowledged logout was lost in the crash.
    let index = index_on(&redis).await;
    for s in &acknowledged {
        let state = common::state_of(&index, op.issuer(), &format!("session-{}", s.token)).await;
        assert_eq!(
            state,
            SessionState::Ended,
            "acknowledged logout {} lost",
            s.token
        );
    }
    // The OP retries what was refused: it was never applied, so it is accepted now. The one
    // exception is a script Redis ran (and wrote to its append-only file) just before it was
    // killed, whose answer was lost with the connection: the logout was applied, so its retry
    // is a replay. Only a request sent before the crash can be that one.
    let http = reqwest::Client::new();
    for s in &refused {
        let reply = post_form(&http, &url, &[("logout_token", &tokens[s.token])]).await;
        let in_flight_at_crash = s.at < down;
        assert!(
            reply.status == 200 || (reply.status == 400 && in_flight_at_crash),
            "retry of {}: {} {}",
            s.token,
            reply.status,
            reply.body
        );
        let state = common::state_of(&index, op.issuer(), &format!("session-{}", s.token)).await;
        assert_eq!(state, SessionState::Ended);
    }
    // And the tokens applied before the crash are still remembered.
    let early = acknowledged.first().expect("some logout before the crash");
    let reply = post_form(&http, &url, &[("logout_token", &tokens[early.token])]).await;
    assert_eq!(reply.status, 400, "a replay after the crash is refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_jwks_endpoint_delays_only_unknown_kids_and_keeps_the_last_good_keys() {
    let h = Harness::start().await;
    let fetches = h.op.op.jwks_requests();
    h.op.op
        .set_jwks_mode(JwksMode::Slow(Duration::from_secs(30)));
    let stranger = SigningKey::generate(SigningAlg::Rs256).expect("key");
    let started = Instant::now();
    let unknown = {
        let token =
            h.op.sign_with(&stranger, &[], &h.op.claims(Some("mallory"), None));
        let (http, url) = (h.http.clone(), h.url.clone());
        tokio::spawn(async move { post_form(&http, &url, &[("logout_token", &token)]).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        h.op.op.jwks_requests(),
        fetches + 1,
        "the refetch is in flight"
    );

    // Logouts signed with a cached key do not wait for it.
    for i in 0..5 {
        let session = h.login("alice", Some(&format!("sid-{i}"))).await;
        let reply = h
            .post(&h.op.sign(&h.op.claims(None, Some(&format!("sid-{i}")))))
            .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(h.state(&session).await, SessionState::Ended);
    }
    assert!(
        !unknown.is_finished(),
        "the unknown kid is still waiting for the JWKS"
    );

    // The fetch gives up at the HTTP client's timeout (5 s), not the OP's 30 s.
    let reply = unknown.await.expect("join");
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(
        reply.body.contains("no matching signing key"),
        "{}",
        reply.body
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "refusal took {:?}",
        started.elapsed()
    );
    // The last good keys still verify.
    let session = h.login("bob", Some("sid-bob")).await;
    let reply = h
        .post(&h.op.sign(&h.op.claims(None, Some("sid-bob"))))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(h.state(&session).await, SessionState::Ended);
    assert_eq!(h.op.op.jwks_requests(), fetches + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_flood_of_random_kids_fetches_the_jwks_once_per_cooldown() {
    let h = Harness::start().await; // refetch cooldown: 60 s
    let fetches = h.op.op.jwks_requests();
    let key = SigningKey::generate(SigningAlg::Rs256).expect("key");
    let mut flood = tokio::task::JoinSet::new();
    for i in 0..300 {
        let token = h.op.sign_with(
            &key,
            &[("kid", format!("random-{i}").into())],
            &h.op.claims(Some("alice"), None),
        );
        let (http, url) = (h.http.clone(), h.url.clone());
        flood.spawn(async move { post_form(&http, &url, &[("logout_token", &token)]).await });
    }
    for reply in flood.join_all().await {
        assert_eq!(reply.status, 400, "{}", reply.body);
    }
    assert_eq!(
        h.op.op.jwks_requests(),
        fetches + 1,
        "300 unknown kids at once cause one JWKS fetch"
    );
    // Valid logouts still work.
    let session = h.login("alice", Some("sid-1")).await;
    let reply = h.post(&h.op.sign(&h.op.claims(None, Some("sid-1")))).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(h.state(&session).await, SessionState::Ended);
}
