//! The receiver over real HTTP, against a real redis-server and the built-in OP: every rule of
//! Back-Channel Logout 1.0 (errata set 1), and that a refused token leaves sessions alive.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{CLIENT, Harness, now, post_form, send};
use oidc_logout::index::SessionState;
use oidc_logout::test_op::{JwksMode, SigningAlg, SigningKey};
use serde_json::{Value, json};

const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// Post `token`; it must be refused with a description containing `why`, and the session it
/// names (registered just before) must still be alive.
async fn assert_refused(h: &Harness, token: &str, why: &str) {
    let claims: Value = token
        .split('.')
        .nth(1)
        .and_then(|p| {
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, p).ok()
        })
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or(Value::Null);
    let sub = claims["sub"].as_str().unwrap_or("victim");
    let sid = claims["sid"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(fresh_sid);
    let alive = h.login(sub, Some(&sid)).await;
    let reply = h.post(token).await;
    assert_eq!(
        reply.status, 400,
        "expected refusal ({why}), body: {}",
        reply.body
    );
    assert_eq!(reply.cache_control.as_deref(), Some("no-store"));
    let description = reply.description();
    assert!(
        description.contains(why),
        "expected {why:?} in {description:?}"
    );
    assert_eq!(
        h.state(&alive).await,
        SessionState::Active,
        "a refused token ended a session"
    );
}

/// Claims that name a new victim session, to which each test applies one defect.
fn victim_claims(h: &Harness) -> Value {
    h.op.claims(Some("victim"), Some(&fresh_sid()))
}

fn fresh_sid() -> String {
    format!(
        "victim-{}",
        oidc_logout::test_op::random_id(8).unwrap_or_default()
    )
}

#[tokio::test]
async fn sid_logout_ends_that_session_only() {
    let h = Harness::start().await;
    let target = h.login("alice", Some("sid-1")).await;
    let other_sid = h.login("alice", Some("sid-2")).await;
    let other_user = h.login("bob", Some("sid-3")).await;
    let reply = h.post(&h.op.sign(&h.op.claims(None, Some("sid-1")))).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body, "");
    assert_eq!(reply.cache_control.as_deref(), Some("no-store"));
    assert_eq!(h.state(&target).await, SessionState::Ended);
    assert_eq!(h.state(&other_sid).await, SessionState::Active);
    assert_eq!(h.state(&other_user).await, SessionState::Active);
}

#[tokio::test]
async fn sub_logout_ends_every_session_of_the_user() {
    let h = Harness::start().await;
    let a = h.login("alice", Some("sid-1")).await;
    let b = h.login("alice", Some("sid-2")).await;
    let c = h.login("alice", None).await;
    let bob = h.login("bob", Some("sid-3")).await;
    let reply = h.post(&h.op.sign(&h.op.claims(Some("alice"), None))).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    for s in [&a, &b, &c] {
        assert_eq!(h.state(s).await, SessionState::Ended);
    }
    assert_eq!(h.state(&bob).await, SessionState::Active);
}

#[tokio::test]
async fn sid_and_sub_end_only_the_sessions_of_that_sid_with_that_sub() {
    let h = Harness::start().await;
    let target = h.login("alice", Some("shared-sid")).await;
    let other_sub_same_sid = h.login("mallory", Some("shared-sid")).await;
    let same_sub_other_sid = h.login("alice", Some("sid-2")).await;
    let reply = h
        .post(&h.op.sign(&h.op.claims(Some("alice"), Some("shared-sid"))))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(h.state(&target).await, SessionState::Ended);
    assert_eq!(h.state(&other_sub_same_sid).await, SessionState::Active);
    assert_eq!(h.state(&same_sub_other_sid).await, SessionState::Active);
}

#[tokio::test]
async fn identifiers_with_any_characters_are_matched_exactly() {
    let h = Harness::start().await;
    let odd_sid = "a \"quoted\" sid: with|pipes %41 {tag} and spaces";
    let target = h.login("user:1|x", Some(odd_sid)).await;
    let lookalike = h
        .login(
            "user:1|x",
            Some("a \"quoted\" sid: with|pipes A {tag} and spaces"),
        )
        .await;
    let reply = h.post(&h.op.sign(&h.op.claims(None, Some(odd_sid)))).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(h.state(&target).await, SessionState::Ended);
    assert_eq!(h.state(&lookalike).await, SessionState::Active);
}

#[tokio::test]
async fn unknown_session_is_a_success() {
    let h = Harness::start().await;
    let reply = h
        .post(&h.op.sign(&h.op.claims(Some("nobody"), Some("no-such-sid"))))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
}

#[tokio::test]
async fn replay_is_refused_and_changes_nothing() {
    let h = Harness::start().await;
    let before = h.login("alice", Some("sid-1")).await;
    let token = h.op.sign(&h.op.claims(Some("alice"), None));
    assert_eq!(h.post(&token).await.status, 200);
    assert_eq!(h.state(&before).await, SessionState::Ended);
    // Alice logs in again after the logout; a replay must neither succeed nor end the session.
    let after = h.login_at("alice", Some("sid-2"), now() + 1).await;
    let reply = h.post(&token).await;
    assert_eq!(reply.status, 400);
    assert!(reply.description().contains("already used"));
    assert_eq!(h.state(&after).await, SessionState::Active);
}

#[tokio::test]
async fn a_login_after_a_logout_survives_its_late_delivery() {
    let h = Harness::start().await;
    let logout_time = now() - 10;
    let before = h.login_at("alice", Some("sid-1"), logout_time - 100).await;
    let after = h.login_at("alice", Some("sid-2"), logout_time + 5).await;
    // The OP issued a sub logout at `logout_time`; it is delivered only now (another jti, as
    // an OP's retransmission of a new token would be).
    let mut claims = h.op.claims(Some("alice"), None);
    claims["iat"] = logout_time.into();
    assert_eq!(h.post(&h.op.sign(&claims)).await.status, 200);
    assert_eq!(h.state(&before).await, SessionState::Ended);
    assert_eq!(
        h.state(&after).await,
        SessionState::Active,
        "a newer login was ended by an older logout"
    );
}

#[tokio::test]
async fn two_receivers_sharing_redis_reject_each_others_replays() {
    let h = Harness::start().await;
    let index = common::index_on(&h.redis).await;
    let second = common::receiver(
        index,
        Arc::clone(&h.provider),
        common::policy(h.op.issuer()),
    )
    .into_router();
    let second_url = format!(
        "{}{}",
        common::serve(second).await,
        oidc_logout::inputs::backchannel::PATH
    );
    let session = h.login("alice", Some("sid-1")).await;
    let token = h.op.sign(&h.op.claims(None, Some("sid-1")));
    let first = post_form(&h.http, &h.url, &[("logout_token", &token)]).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(h.state(&session).await, SessionState::Ended);
    let replay = post_form(&h.http, &second_url, &[("logout_token", &token)]).await;
    assert_eq!(replay.status, 400);
    assert!(replay.description().contains("already used"));
    let token = h.op.sign(&h.op.claims(None, Some("sid-2")));
    assert_eq!(
        post_form(&h.http, &second_url, &[("logout_token", &token)])
            .await
            .status,
        200
    );
    assert_eq!(
        post_form(&h.http, &h.url, &[("logout_token", &token)])
            .await
            .status,
        400
    );
}

#[tokio::test]
async fn typ_values() {
    let h = Harness::start().await;
    for typ in ["JWT", "logout+jwt", "application/logout+jwt", "jwt"] {
        let token =
            h.op.sign_with(&h.op.key, &[("typ", typ.into())], &victim_claims(&h));
        assert_eq!(
            h.post(&token).await.status,
            200,
            "typ {typ} must be accepted"
        );
    }
    let token =
        h.op.sign_with(&h.op.key, &[("typ", Value::Null)], &victim_claims(&h));
    assert_eq!(
        h.post(&token).await.status,
        200,
        "a token without typ must be accepted"
    );
    for typ in [
        "at+jwt",
        "secevent+jwt",
        "dpop+jwt",
        "application/at+jwt",
        "id_token+jwt",
    ] {
        let token =
            h.op.sign_with(&h.op.key, &[("typ", typ.into())], &victim_claims(&h));
        assert_refused(&h, &token, "token type").await;
    }
}

#[tokio::test]
async fn algorithm_none_and_hmac_are_refused() {
    let h = Harness::start().await;
    let signed = h.op.sign(&victim_claims(&h));
    let mut parts = signed.split('.');
    let (_, payload) = (parts.next(), parts.next().unwrap_or_default());
    let none_header = b64(br#"{"alg":"none","typ":"logout+jwt"}"#);
    assert_refused(&h, &format!("{none_header}.{payload}."), "algorithm").await;
    assert_refused(&h, &format!("{none_header}.{payload}.c2ln"), "algorithm").await;
    // HS256 keyed with the public key's JWK text: the classic key-confusion attack.
    let hs_header = b64(format!(r#"{{"alg":"HS256","kid":"{}"}}"#, h.op.key.kid()).as_bytes());
    let input = format!("{hs_header}.{payload}");
    let public = h.op.key.public_jwk().to_string();
    let mac = aws_lc_rs::hmac::sign(
        &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, public.as_bytes()),
        input.as_bytes(),
    );
    assert_refused(&h, &format!("{input}.{}", b64(mac.as_ref())), "algorithm").await;
}

#[tokio::test]
async fn a_published_key_of_another_algorithm_is_refused() {
    // The OP publishes an ES256 key too; the client registered RS256, so an ES256 token with a
    // valid signature must still be refused (OpenID conformance checks exactly this).
    let h = Harness::start().await;
    let ec = Arc::new(SigningKey::generate(SigningAlg::Es256).expect("EC key"));
    h.op.op
        .publish(vec![Arc::clone(&h.op.key), Arc::clone(&ec)]);
    h.provider.refetch().await;
    let token = h.op.sign_with(&ec, &[], &victim_claims(&h));
    assert_refused(&h, &token, "not the one registered").await;
}

#[tokio::test]
async fn registered_algorithms_of_each_family_are_accepted() {
    for alg in [
        SigningAlg::Ps256,
        SigningAlg::Es256,
        SigningAlg::Es384,
        SigningAlg::EdDsa,
    ] {
        let name = alg.name();
        let h = Harness::start_with(|p| {
            p.clients[0].1 = vec![oidc_logout::logout_token::parse_algorithm(name).expect("known")];
        })
        .await;
        let key = Arc::new(SigningKey::generate(alg).expect("key"));
        h.op.op.publish(vec![Arc::clone(&key)]);
        let session = h.login("alice", Some("sid-1")).await;
        let token = h.op.sign_with(&key, &[], &h.op.claims(None, Some("sid-1")));
        let reply = h.post(&token).await;
        assert_eq!(reply.status, 200, "{name}: {}", reply.body);
        assert_eq!(h.state(&session).await, SessionState::Ended, "{name}");
        // And the RS256 key the client no longer registered is refused.
        let old = h.op.sign_with(&h.op.key, &[], &victim_claims(&h));
        assert_refused(&h, &old, "").await;
    }
}

#[tokio::test]
async fn keys_named_by_the_token_are_refused() {
    let h = Harness::start().await;
    let jwk = h.op.key.public_jwk();
    for (name, value) in [
        ("jku", json!("http://127.0.0.1:1/jwks")),
        ("x5u", json!("http://127.0.0.1:1/cert")),
        ("jwk", jwk),
        ("x5c", json!(["MIIB"])),
    ] {
        let token =
            h.op.sign_with(&h.op.key, &[(name, value)], &victim_claims(&h));
        assert_refused(&h, &token, name).await;
    }
}

#[tokio::test]
async fn critical_headers_are_refused() {
    let h = Harness::start().await;
    let token = h.op.sign_with(
        &h.op.key,
        &[("crit", json!(["exp"])), ("exp", json!(1))],
        &victim_claims(&h),
    );
    assert_refused(&h, &token, "critical").await;
    let token = h.op.sign_with(
        &h.op.key,
        &[("crit", json!(["b64"])), ("b64", json!(false))],
        &victim_claims(&h),
    );
    assert_refused(&h, &token, "critical").await;
}

#[tokio::test]
async fn a_tampered_or_foreign_signature_is_refused() {
    let h = Harness::start().await;
    let token = h.op.sign(&victim_claims(&h));
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut claims = victim_claims(&h);
    claims["sub"] = "someone-else".into();
    parts[1] = b64(claims.to_string().as_bytes());
    assert_refused(&h, &parts.join("."), "signature").await;
    // A key the OP never published, with the published kid.
    let stranger = SigningKey::generate(SigningAlg::Rs256).expect("key");
    let token = h.op.sign_with(
        &stranger,
        &[("kid", h.op.key.kid().into())],
        &victim_claims(&h),
    );
    assert_refused(&h, &token, "signature").await;
    // And with its own kid: unknown after a refetch.
    let token = h.op.sign_with(&stranger, &[], &victim_claims(&h));
    assert_refused(&h, &token, "no matching signing key").await;
}

#[tokio::test]
async fn issuer_rules() {
    let h = Harness::start().await;
    let mut claims = victim_claims(&h);
    claims["iss"] = format!("{}/", h.op.issuer()).into();
    assert_refused(&h, &h.op.sign(&claims), "issuer is not trusted").await;
    claims["iss"] = json!([h.op.issuer()]);
    assert_refused(&h, &h.op.sign(&claims), "iss").await;
    claims.as_object_mut().map(|c| c.remove("iss"));
    assert_refused(&h, &h.op.sign(&claims), "iss").await;
}

#[tokio::test]
async fn audience_rules() {
    let h = Harness::start().await;
    let mut claims = victim_claims(&h);
    claims["aud"] = json!([CLIENT, "trusted-api"]);
    assert_eq!(
        h.post(&h.op.sign(&claims)).await.status,
        200,
        "client plus a trusted audience"
    );
    let mut claims = victim_claims(&h);
    claims["aud"] = json!("another-client");
    assert_refused(&h, &h.op.sign(&claims), "audience does not include").await;
    claims["aud"] = json!([CLIENT, "untrusted"]);
    assert_refused(&h, &h.op.sign(&claims), "untrusted").await;
    claims["aud"] = json!(["trusted-api"]);
    assert_refused(&h, &h.op.sign(&claims), "audience does not include").await;
    claims["aud"] = json!([]);
    assert_refused(&h, &h.op.sign(&claims), "aud").await;
    claims["aud"] = json!(7);
    assert_refused(&h, &h.op.sign(&claims), "aud").await;
    claims.as_object_mut().map(|c| c.remove("aud"));
    assert_refused(&h, &h.op.sign(&claims), "aud").await;
}

#[tokio::test]
async fn time_rules() {
    let h = Harness::start().await;
    let t = now();
    let mut claims = victim_claims(&h);
    claims["iat"] = (t + 600).into();
    claims["exp"] = (t + 700).into();
    assert_refused(&h, &h.op.sign(&claims), "future").await;
    claims["iat"] = (t - 1000).into();
    claims["exp"] = (t + 100).into();
    assert_refused(&h, &h.op.sign(&claims), "too old").await;
    claims["iat"] = (t - 100).into();
    claims["exp"] = (t - 60).into();
    assert_refused(&h, &h.op.sign(&claims), "expired").await;
    claims["exp"] = json!("tomorrow");
    assert_refused(&h, &h.op.sign(&claims), "exp").await;
    claims.as_object_mut().map(|c| c.remove("exp"));
    assert_refused(&h, &h.op.sign(&claims), "exp is missing").await;
    claims["exp"] = (t + 100).into();
    claims.as_object_mut().map(|c| c.remove("iat"));
    assert_refused(&h, &h.op.sign(&claims), "iat is missing").await;
    claims["iat"] = t.into();
    claims["nbf"] = (t + 600).into();
    assert_refused(&h, &h.op.sign(&claims), "not yet valid").await;
    // Within the leeway is fine.
    let mut claims = victim_claims(&h);
    claims["iat"] = (t + 10).into();
    claims["exp"] = (t - 10).into();
    assert_eq!(h.post(&h.op.sign(&claims)).await.status, 200);
}

#[tokio::test]
async fn missing_exp_is_accepted_only_when_configured_and_then_bounded_by_iat() {
    let h = Harness::start_with(|p| p.accept_missing_exp = true).await;
    let session = h.login("alice", Some("sid-1")).await;
    let mut claims = h.op.claims(None, Some("sid-1"));
    claims.as_object_mut().map(|c| c.remove("exp"));
    assert_eq!(h.post(&h.op.sign(&claims)).await.status, 200);
    assert_eq!(h.state(&session).await, SessionState::Ended);
    let mut old = victim_claims(&h);
    old.as_object_mut().map(|c| c.remove("exp"));
    old["iat"] = (now() - 1000).into();
    assert_refused(&h, &h.op.sign(&old), "too old").await;
}

#[tokio::test]
async fn claim_rules() {
    let h = Harness::start().await;
    let base = victim_claims(&h);
    let with = |f: &dyn Fn(&mut serde_json::Map<String, Value>)| {
        let mut c = base.clone();
        if let Some(m) = c.as_object_mut() {
            f(m);
        }
        h.op.sign(&c)
    };
    assert_refused(
        &h,
        &with(&|c| {
            c.remove("jti");
        }),
        "jti is missing",
    )
    .await;
    assert_refused(
        &h,
        &with(&|c| {
            c.insert("jti".into(), json!(42));
        }),
        "jti",
    )
    .await;
    assert_refused(
        &h,
        &with(&|c| {
            c.insert("jti".into(), json!(""));
        }),
        "jti",
    )
    .await;
    assert_refused(
        &h,
        &with(&|c| {
            c.remove("events");
        }),
        "events",
    )
    .await;
    assert_refused(
        &h,
        &with(&|c| {
            c.insert("events".into(), json!({}));
        }),
        "back-channel logout event",
    )
    .await;
    assert_refused(
        &h,
        &with(&|c| {
            c.insert("events".into(), json!({ EVENT: "yes" }));
        }),
        "back-channel logout event",
    )
    .await;
    let https = EVENT.replace("http:", "https:");
    assert_refused(
        &h,
        &with(&|c| {
            c.insert("events".into(), json!({ https.clone(): {} }));
        }),
        "back-channel logout event",
    )
    .await;
    assert_refused(
        &h,
        &with(&|c| {
            c.insert("events".into(), json!([EVENT]));
        }),
        "events",
    )
    .await;
    assert_refused(
        &h,
        &with(&|c| {
            c.insert("nonce".into(), json!("n-0S6_WzA2Mj"));
        }),
        "nonce",
    )
    .await;
    assert_refused(
        &h,
        &with(&|c| {
            c.remove("sub");
            c.remove("sid");
        }),
        "neither sub nor sid",
    )
    .await;
    assert_refused(
        &h,
        &with(&|c| {
            c.insert("sid".into(), json!(["victim-sid"]));
        }),
        "sid",
    )
    .await;
    assert_refused(
        &h,
        &with(&|c| {
            c.insert("sub".into(), json!(1));
        }),
        "sub",
    )
    .await;
    // Unknown claims are ignored; the event's value may carry members.
    let token = with(&|c| {
        c.insert("unknown".into(), json!({ "x": 1 }));
        c.insert(
            "events".into(),
            json!({ EVENT: { "reason": "admin" }, "urn:other": {} }),
        );
    });
    assert_eq!(h.post(&token).await.status, 200);
}

#[tokio::test]
async fn malformed_tokens_are_refused() {
    let h = Harness::start().await;
    let token = h.op.sign(&victim_claims(&h));
    let parts: Vec<&str> = token.split('.').collect();
    for bad in [
        String::new(),
        "not a jwt".to_owned(),
        format!("{}.{}", parts[0], parts[1]),
        format!("{token}.extra"),
        format!("{}.!!!.{}", parts[0], parts[2]),
        format!("{}.{}.{}", b64(b"[1,2]"), parts[1], parts[2]),
        format!("{}.{}.{}", parts[0], b64(b"\"a string\""), parts[2]),
        format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
    ] {
        assert_refused(&h, &bad, "").await;
    }
    let huge = format!("{}.{}.{}", parts[0], "A".repeat(9000), parts[2]);
    assert_refused(&h, &huge, "too large").await;
}

#[tokio::test]
async fn request_rules() {
    let h = Harness::start().await;
    let alive = h.login("victim", Some("victim-sid")).await;
    let token = h.op.sign(&h.op.claims(None, Some("victim-sid")));
    // Not a form.
    let reply = send(
        h.http
            .post(&h.url)
            .header("content-type", "application/json")
            .body(format!("{{\"logout_token\":\"{token}\"}}")),
    )
    .await;
    assert_eq!(
        (reply.status, reply.cache_control.as_deref()),
        (400, Some("no-store"))
    );
    assert!(reply.description().contains("content type"));
    // Missing or repeated parameter.
    let reply = post_form(&h.http, &h.url, &[("token", &token)]).await;
    assert!(reply.description().contains("missing"));
    let reply = post_form(
        &h.http,
        &h.url,
        &[("logout_token", &token), ("logout_token", &token)],
    )
    .await;
    assert!(reply.description().contains("more than once"));
    // A huge body is refused before parsing.
    let reply = post_form(
        &h.http,
        &h.url,
        &[("padding", &"x".repeat(100_000)), ("logout_token", &token)],
    )
    .await;
    assert_eq!(reply.status, 400);
    assert!(reply.description().contains("too large"));
    // GET is not allowed, and still not cacheable.
    let reply = send(h.http.get(&h.url)).await;
    assert_eq!(
        (reply.status, reply.cache_control.as_deref()),
        (405, Some("no-store"))
    );
    assert_eq!(h.state(&alive).await, SessionState::Active);
    // Unknown parameters are ignored; a charset parameter on the content type is fine.
    let body = format!("state=x&logout_token={token}&foo=bar");
    let reply = send(
        h.http
            .post(&h.url)
            .header(
                "content-type",
                "application/x-www-form-urlencoded; charset=UTF-8",
            )
            .body(body),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(h.state(&alive).await, SessionState::Ended);
}

#[tokio::test]
async fn key_rotation_is_picked_up_and_unknown_kids_are_rate_limited() {
    let h = Harness::start().await;
    let fetches = h.op.op.jwks_requests();
    // Rotation: the OP publishes a new key and signs with it; one refetch finds it.
    let new_key = Arc::new(SigningKey::generate(SigningAlg::Rs256).expect("key"));
    h.op.op.publish(vec![Arc::clone(&new_key)]);
    let session = h.login("alice", Some("sid-1")).await;
    let reply = h
        .post(
            &h.op
                .sign_with(&new_key, &[], &h.op.claims(None, Some("sid-1"))),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(h.state(&session).await, SessionState::Ended);
    assert_eq!(h.op.op.jwks_requests(), fetches + 1);
    // A flood of unknown kids within the cooldown causes no further fetch.
    for i in 0..50 {
        let token = h.op.sign_with(
            &new_key,
            &[("kid", format!("random-{i}").into())],
            &victim_claims(&h),
        );
        assert_eq!(h.post(&token).await.status, 400);
    }
    assert_eq!(
        h.op.op.jwks_requests(),
        fetches + 1,
        "unknown kids must not each fetch the JWKS"
    );
}

#[tokio::test]
async fn a_failing_jwks_endpoint_keeps_the_last_good_keys() {
    for mode in [JwksMode::Error, JwksMode::Garbage] {
        let h = Harness::start().await;
        h.op.op.set_jwks_mode(mode);
        let fetches = h.op.op.jwks_requests();
        // A token with an unknown kid makes the receiver refetch; the fetch fails.
        let stranger = SigningKey::generate(SigningAlg::Rs256).expect("key");
        assert_refused(
            &h,
            &h.op.sign_with(&stranger, &[], &victim_claims(&h)),
            "no matching signing key",
        )
        .await;
        assert_eq!(h.op.op.jwks_requests(), fetches + 1, "{mode:?}");
        // The last good keys still verify.
        let session = h.login("alice", Some("sid-1")).await;
        let reply = h.post(&h.op.sign(&h.op.claims(None, Some("sid-1")))).await;
        assert_eq!(reply.status, 200, "{mode:?}: {}", reply.body);
        assert_eq!(h.state(&session).await, SessionState::Ended);
    }
}

#[tokio::test]
async fn storage_failure_is_not_a_success_and_the_retry_is_applied() {
    let mut h = Harness::start().await;
    let token = h.op.sign(&h.op.claims(Some("alice"), Some("sid-1")));
    h.redis.stop();
    let reply = h.post(&token).await;
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert_eq!(reply.cache_control.as_deref(), Some("no-store"));
    assert_eq!(reply.retry_after.as_deref(), Some("5"));
    h.redis.restart();
    let session = h.login("alice", Some("sid-1")).await;
    // The OP retries the very same token: it was never applied, so it is not a replay.
    let mut reply = h.post(&token).await;
    for _ in 0..50 {
        if reply.status != 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        reply = h.post(&token).await;
    }
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(h.state(&session).await, SessionState::Ended);
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[tokio::test]
async fn the_receiver_mounts_inside_an_application_router() {
    let h = Harness::start().await;
    let index = common::index_on(&h.redis).await;
    let logout = common::receiver(
        index,
        Arc::clone(&h.provider),
        common::policy(h.op.issuer()),
    )
    .into_router();
    let app = axum::Router::new()
        .route("/me", axum::routing::get(|| async { "app page" }))
        .merge(logout);
    let base = common::serve(app).await;
    let page = send(h.http.get(format!("{base}/me"))).await;
    assert_eq!((page.status, page.body.as_str()), (200, "app page"));
    let session = h.login("alice", Some("sid-1")).await;
    let url = format!("{base}{}", oidc_logout::inputs::backchannel::PATH);
    let token = h.op.sign(&h.op.claims(None, Some("sid-1")));
    assert_eq!(
        post_form(&h.http, &url, &[("logout_token", &token)])
            .await
            .status,
        200
    );
    assert_eq!(h.state(&session).await, SessionState::Ended);
}

#[tokio::test]
async fn a_key_the_op_withdrew_stops_working_after_max_key_age() {
    let h = Harness::start().await;
    let settings = common::provider_settings().with_max_key_age(Duration::from_millis(500));
    let provider = oidc_logout::provider::Provider::discover(
        h.op.issuer(),
        oidc_logout::provider::http_client().expect("client"),
        settings,
    )
    .await
    .expect("discovery");
    let index = common::index_on(&h.redis).await;
    let receiver = common::receiver(index, provider, common::policy(h.op.issuer())).into_router();
    let url = format!(
        "{}{}",
        common::serve(receiver).await,
        oidc_logout::inputs::backchannel::PATH
    );
    // The OP rotates its key out (e.g. it was compromised).
    let new_key = Arc::new(SigningKey::generate(SigningAlg::Rs256).expect("key"));
    h.op.op.publish(vec![new_key]);
    tokio::time::sleep(Duration::from_millis(700)).await;
    // This request still sees the cached keys and starts a background refresh...
    let token = h.op.sign(&victim_claims(&h));
    post_form(&h.http, &url, &[("logout_token", &token)]).await;
    // ...after which (within a few seconds at most) the withdrawn key verifies nothing.
    let mut reply = post_form(
        &h.http,
        &url,
        &[("logout_token", &h.op.sign(&victim_claims(&h)))],
    )
    .await;
    for _ in 0..30 {
        if reply.status == 400 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        reply = post_form(
            &h.http,
            &url,
            &[("logout_token", &h.op.sign(&victim_claims(&h)))],
        )
        .await;
    }
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(reply.description().contains("no matching signing key"));
}
