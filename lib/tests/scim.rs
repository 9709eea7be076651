//! SCIM 2.0 deprovisioning: the request sequences Microsoft Entra ID and Okta provisioning send
//! (fixtures in `tests/fixtures/scim/`, each step naming its published source) replayed over
//! HTTP against a real redis-server holding live sessions. Deactivation and deletion end the
//! user's sessions and no one else's; reactivation lets new logins live; a wrong token or
//! body changes nothing; each client sees only its own issuer's users. Last, the contract of
//! `oidc-logout serve`: `OIDC_LOGOUT_SCIM_TOKENS` turns the endpoint on.

#[macro_use]
mod common;

use std::time::Duration;

use common::{RedisServer, index_on, now};
use oidc_logout::Core;
use oidc_logout::index::{Registration, SessionIndex, SessionRecord, SessionState};
use oidc_logout::inputs::scim::{self, ScimClient};
use secrecy::SecretString;
use serde_json::{Value, json};

const ISS: &str = "https://idp.example.com/tenant-a";
const OTHER_ISS: &str = "https://idp.example.com/tenant-b";
const TOKEN: &str = "scim-token-of-tenant-a-0123456789abcdef";
const OTHER_TOKEN: &str = "scim-token-of-tenant-b-0123456789abcdef";

fn record(id: &str, sub: &str, auth_time: u64) -> SessionRecord {
    common::session(ISS, id, sub, auth_time)
}

use common::{
    signals::scim_call as call, signals::scim_deactivate as deactivate, signals::scim_user as user,
    state_of_record as state,
};

/// The SCIM endpoint over a Redis index, for clients of two issuers; returns its base URL.
async fn serve_scim(redis: &RedisServer) -> (String, oidc_logout::index::RedisIndex) {
    let index = index_on(redis).await;
    let core = Core::builder(index.clone())
        .issuer(ISS)
        .issuer(OTHER_ISS)
        .build();
    let clients = [
        ScimClient::new(ISS, vec![SecretString::from(TOKEN)]),
        ScimClient::new(OTHER_ISS, vec![SecretString::from(OTHER_TOKEN)]),
    ];
    let base = common::serve(scim::router(core, index.clone(), &clients)).await;
    (format!("{base}{}", scim::PREFIX), index)
}

/// Replay one client's fixture: every step's status and expected members; the user's sessions
/// live or ended where the step says; a bystander's session live throughout.
async fn replay(fixture: &str) {
    let fixture: Value = serde_json::from_str(fixture).expect("fixture");
    let sub = fixture["sub"].as_str().expect("sub");
    let redis = RedisServer::start();
    let (base, index) = serve_scim(&redis).await;
    let mut sessions = vec![
        record("laptop", sub, now() - 60),
        record("phone", sub, now() - 30),
    ];
    let bystander = record("bystander", "someone-else", now() - 60);
    for r in sessions.iter().chain([&bystander]) {
        assert_eq!(
            index.register(r).await.expect("register"),
            Registration::Registered
        );
    }
    let mut id = String::new();
    let steps = fixture["steps"].as_array().expect("steps");
    for (i, step) in steps.iter().enumerate() {
        let source = step["source"].as_str().unwrap_or_default();
        let path = step["path"].as_str().expect("path").replace("{id}", &id);
        let body = step.get("body").map(|b| b.to_string().replace("{id}", &id));
        let (status, answer, headers) = call(
            step["method"].as_str().expect("method"),
            &format!("{base}{path}"),
            Some(TOKEN),
            body.as_deref(),
        )
        .await;
        let want = step["status"].as_u64().expect("status");
        assert_eq!(u64::from(status), want, "step {i} ({source}): {answer}");
        if status != 204 {
            let kind = headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            assert_eq!(kind, "application/scim+json", "step {i} ({source})");
        }
        if let Some(expect) = step.get("expect").and_then(Value::as_object) {
            for (name, value) in expect {
                assert_eq!(
                    &answer[name], value,
                    "step {i} ({source}), {name}: {answer}"
                );
            }
        }
        if step["save_id"] == json!(true) {
            id = answer["id"].as_str().expect("an id").to_owned();
            assert!(!id.is_empty());
            let location = headers
                .get("location")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            assert!(location.ends_with(&format!("/Users/{id}")), "{location}");
        }
        match step["sessions"].as_str() {
            Some("live") => {
                for r in &sessions {
                    assert_eq!(
                        state(&index, r).await,
                        SessionState::Active,
                        "step {i} ({source})"
                    );
                }
            }
            Some("ended") => {
                for r in &sessions {
                    assert_eq!(
                        state(&index, r).await,
                        SessionState::Ended,
                        "step {i} ({source})"
                    );
                }
            }
            _ => {}
        }
        if step["login_after"] == json!(true) {
            // The user logs in again after being reactivated (a later second than the
            // revocation): the new session lives.
            tokio::time::sleep(Duration::from_millis(1100)).await;
            let again = record(&format!("again-{i}"), sub, now());
            assert_eq!(
                index.register(&again).await.expect("register"),
                Registration::Registered,
                "step {i} ({source}): a login after reactivation lives"
            );
            sessions.push(again);
        }
        assert_eq!(
            state(&index, &bystander).await,
            SessionState::Active,
            "step {i} ({source}): another user's session is untouched"
        );
    }
}

#[tokio::test]
async fn entra_id_provisioning_deprovisions_the_right_user() {
    replay(include_str!("fixtures/scim/entra.json")).await;
}

#[tokio::test]
async fn okta_provisioning_deprovisions_the_right_user() {
    replay(include_str!("fixtures/scim/okta.json")).await;
}

#[tokio::test]
async fn wrong_tokens_and_bad_bodies_change_nothing() {
    let redis = RedisServer::start();
    let (base, index) = serve_scim(&redis).await;
    let alice = record("laptop", "alice-ext", now() - 60);
    index.register(&alice).await.expect("register");
    let (status, answer, _) = call(
        "POST",
        &format!("{base}/Users"),
        Some(TOKEN),
        Some(&user("alice", "alice-ext")),
    )
    .await;
    assert_eq!(status, 201);
    let id = answer["id"].as_str().expect("id").to_owned();
    let url = format!("{base}/Users/{id}");
    for token in [None, Some("not-a-token"), Some(&TOKEN[1..])] {
        let (status, answer, headers) = call("PATCH", &url, token, Some(&deactivate())).await;
        assert_eq!(status, 401, "{answer}");
        assert_eq!(
            answer["schemas"][0],
            "urn:ietf:params:scim:api:messages:2.0:Error"
        );
        assert_eq!(
            headers.get("www-authenticate").map(|v| v.as_bytes()),
            Some(&b"Bearer"[..])
        );
        let (status, _, _) = call("DELETE", &url, token, None).await;
        assert_eq!(status, 401);
    }
    // Another customer's client does not see, change or delete this user.
    for (method, body) in [
        ("GET", None),
        ("PATCH", Some(deactivate())),
        ("DELETE", None),
    ] {
        let (status, _, _) = call(method, &url, Some(OTHER_TOKEN), body.as_deref()).await;
        assert_eq!(status, 404, "{method}");
    }
    let (_, found, _) = call(
        "GET",
        &format!("{base}/Users?filter=userName%20eq%20%22alice%22"),
        Some(OTHER_TOKEN),
        None,
    )
    .await;
    assert_eq!(found["totalResults"], 0);
    // Malformed requests: a SCIM 400, nothing applied.
    for (method, body, scim_type) in [
        ("PATCH", "[]", "invalidSyntax"),
        ("PATCH", "{\"Operations\": []}", "invalidSyntax"),
        (
            "PATCH",
            "{\"schemas\":[\"urn:ietf:params:scim:api:messages:2.0:PatchOp\"],\"Operations\":[{\"op\":\"replace\",\"path\":\"active\",\"value\":\"nope\"}]}",
            "invalidValue",
        ),
        (
            "PUT",
            "{\"userName\": \"alice\", \"active\": \"sometimes\"}",
            "invalidValue",
        ),
        ("PUT", "not json", "invalidSyntax"),
    ] {
        let (status, answer, _) = call(method, &url, Some(TOKEN), Some(body)).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["scimType"], scim_type, "{body}");
        assert!(
            !answer.to_string().contains("sometimes"),
            "no echo: {answer}"
        );
    }
    for filter in ["userName co \"a\"", "displayName eq \"x\"", "userName eq"] {
        let url = reqwest::Url::parse_with_params(&format!("{base}/Users"), [("filter", filter)])
            .expect("url");
        let (status, answer, _) = call("GET", url.as_str(), Some(TOKEN), None).await;
        assert_eq!(
            (status, &answer["scimType"]),
            (400, &json!("invalidFilter")),
            "{filter}"
        );
    }
    // A user without the attribute mapped to sub cannot be created.
    let no_sub =
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "bob"});
    let (status, _, _) = call(
        "POST",
        &format!("{base}/Users"),
        Some(TOKEN),
        Some(&no_sub.to_string()),
    )
    .await;
    assert_eq!(status, 400);
    // A body above the limit is refused before it is read.
    let big = format!("{{\"userName\": \"{}\"}}", "x".repeat(scim::MAX_BODY_BYTES));
    let (status, _, _) = call("POST", &format!("{base}/Users"), Some(TOKEN), Some(&big)).await;
    assert_eq!(status, 413);
    assert_eq!(
        state(&index, &alice).await,
        SessionState::Active,
        "nothing was applied"
    );
    let (_, still, _) = call("GET", &url, Some(TOKEN), None).await;
    assert_eq!(still["active"], true);
}

#[tokio::test]
async fn the_sub_can_come_from_another_attribute() {
    let redis = RedisServer::start();
    let index = index_on(&redis).await;
    let core = Core::builder(index.clone()).issuer(ISS).build();
    let client = ScimClient::new(ISS, vec![SecretString::from(TOKEN)]).with_sub_attribute(
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber",
    );
    let base = format!(
        "{}{}",
        common::serve(scim::router(core, index.clone(), &[client])).await,
        scim::PREFIX
    );
    let employee = record("laptop", "701984", now() - 60);
    let namesake = record("other", "bjensen", now() - 60);
    for r in [&employee, &namesake] {
        index.register(r).await.expect("register");
    }
    let body = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User",
                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
        "userName": "bjensen",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": "701984"},
    });
    let (status, answer, _) = call(
        "POST",
        &format!("{base}/Users"),
        Some(TOKEN),
        Some(&body.to_string()),
    )
    .await;
    assert_eq!(status, 201, "{answer}");
    let id = answer["id"].as_str().expect("id");
    let (status, _, _) = call("DELETE", &format!("{base}/Users/{id}"), Some(TOKEN), None).await;
    assert_eq!(status, 204);
    assert_eq!(state(&index, &employee).await, SessionState::Ended);
    assert_eq!(state(&index, &namesake).await, SessionState::Active);
}

#[tokio::test]
async fn discovery_documents_say_what_is_supported() {
    let redis = RedisServer::start();
    let (base, _) = serve_scim(&redis).await;
    let (status, config, _) = call(
        "GET",
        &format!("{base}/ServiceProviderConfig"),
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(config["patch"]["supported"], true);
    assert_eq!(config["bulk"]["supported"], false);
    assert_eq!(
        config["authenticationSchemes"][0]["type"],
        "oauthbearertoken"
    );
    let (status, types, _) = call("GET", &format!("{base}/ResourceTypes"), Some(TOKEN), None).await;
    assert_eq!(status, 200);
    assert_eq!(types["Resources"][0]["endpoint"], "/Users");
    let (status, schemas, _) = call("GET", &format!("{base}/Schemas"), Some(TOKEN), None).await;
    assert_eq!(status, 200);
    assert_eq!(
        schemas["Resources"][0]["id"],
        "urn:ietf:params:scim:schemas:core:2.0:User"
    );
    let (status, _, _) = call("GET", &format!("{base}/ServiceProviderConfig"), None, None).await;
    assert_eq!(status, 401, "discovery needs the token too");
}

/// A change of the attribute mapped to `sub` revokes the old `sub` (the record no longer names
/// its sessions); a deactivation that also takes another user's `userName` is refused whole,
/// before anything is revoked.
#[tokio::test]
async fn a_changed_sub_is_revoked_and_a_refused_change_revokes_nothing() {
    let redis = RedisServer::start();
    let (base, index) = serve_scim(&redis).await;
    let old = record("laptop", "alice-old", now() - 60);
    let carol = record("carol-laptop", "carol-ext", now() - 60);
    for r in [&old, &carol] {
        index.register(r).await.expect("register");
    }
    let (_, alice, _) = call(
        "POST",
        &format!("{base}/Users"),
        Some(TOKEN),
        Some(&user("alice", "alice-old")),
    )
    .await;
    let (_, _, _) = call(
        "POST",
        &format!("{base}/Users"),
        Some(TOKEN),
        Some(&user("carol", "carol-ext")),
    )
    .await;
    let alice_url = format!("{base}/Users/{}", alice["id"].as_str().expect("id"));
    // Deactivate alice and rename her to carol's userName: 409, nothing revoked.
    let clash = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [
            {"op": "replace", "path": "active", "value": false},
            {"op": "replace", "path": "userName", "value": "CAROL"}
        ],
    });
    let (status, _, _) = call("PATCH", &alice_url, Some(TOKEN), Some(&clash.to_string())).await;
    assert_eq!(status, 409);
    assert_eq!(
        state(&index, &old).await,
        SessionState::Active,
        "a refused change revokes nothing"
    );
    // A new externalId (the mapped attribute): the old sub's sessions end, carol's stay.
    let remap = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "externalId", "value": "alice-new"}],
    });
    let (status, answer, _) =
        call("PATCH", &alice_url, Some(TOKEN), Some(&remap.to_string())).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["active"], true);
    assert_eq!(state(&index, &old).await, SessionState::Ended);
    assert_eq!(state(&index, &carol).await, SessionState::Active);
}

/// Where provisioning clients and compliance checkers look: every error a SCIM error message
/// (unknown paths, resource types and methods included), `attributes` and `excludedAttributes`
/// on get, list and search, `POST /Users/.search`, and `remove` of `active` deactivating.
#[tokio::test]
async fn the_protocol_is_complete_where_clients_look() {
    let redis = RedisServer::start();
    let (base, index) = serve_scim(&redis).await;
    let alice = record("laptop", "alice-ext", now() - 60);
    index.register(&alice).await.expect("register");
    for (method, path) in [
        ("GET", "/Groups"),
        ("GET", "/Users/nope/extra"),
        ("GET", "/ResourceTypes/Group"),
        ("POST", "/Bulk"),
        ("GET", ""),
        ("DELETE", "/Users"),
        ("PATCH", "/ServiceProviderConfig"),
    ] {
        let (status, answer, headers) =
            call(method, &format!("{base}{path}"), Some(TOKEN), None).await;
        assert!(status == 404 || status == 405, "{method} {path}: {status}");
        assert_eq!(
            answer["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error",
            "{method} {path}: {answer}"
        );
        assert_eq!(answer["status"], status.to_string());
        assert_eq!(
            headers.get("content-type").map(|v| v.as_bytes()),
            Some(&b"application/scim+json"[..])
        );
    }
    let (_, created, _) = call(
        "POST",
        &format!("{base}/Users?attributes=userName"),
        Some(TOKEN),
        Some(&user("alice", "alice-ext")),
    )
    .await;
    assert_eq!(created["userName"], "alice");
    assert!(created.get("active").is_none(), "{created}");
    let url = format!("{base}/Users/{}", created["id"].as_str().expect("id"));
    let (_, got, _) = call(
        "GET",
        &format!("{url}?excludedAttributes=active,meta"),
        Some(TOKEN),
        None,
    )
    .await;
    assert!(
        got.get("active").is_none() && got.get("meta").is_none(),
        "{got}"
    );
    assert_eq!(
        (&got["id"], &got["userName"]),
        (&created["id"], &json!("alice"))
    );
    let (_, listed, _) = call(
        "GET",
        &format!("{base}/Users?excludedAttributes=active"),
        Some(TOKEN),
        None,
    )
    .await;
    assert!(listed["Resources"][0].get("active").is_none(), "{listed}");
    let search = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
        "filter": "userName eq \"ALICE\"",
        "attributes": ["userName", "externalId"],
    });
    let (status, found, _) = call(
        "POST",
        &format!("{base}/Users/.search"),
        Some(TOKEN),
        Some(&search.to_string()),
    )
    .await;
    assert_eq!(
        (status, &found["totalResults"]),
        (200, &json!(1)),
        "{found}"
    );
    assert_eq!(found["Resources"][0]["externalId"], "alice-ext");
    assert!(found["Resources"][0].get("active").is_none());
    let (status, _, _) = call(
        "POST",
        &format!("{base}/Users/.search"),
        Some(TOKEN),
        Some("{\"filter\": \"userName eq \\\"alice\\\"\"}"),
    )
    .await;
    assert_eq!(status, 400, "a search without its schema is refused");
    assert_eq!(state(&index, &alice).await, SessionState::Active);
    let remove = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "Remove", "path": "active"}],
    });
    let (status, answer, _) = call("PATCH", &url, Some(TOKEN), Some(&remove.to_string())).await;
    assert_eq!(
        (status, &answer["active"]),
        (200, &json!(false)),
        "{answer}"
    );
    assert_eq!(state(&index, &alice).await, SessionState::Ended);
}
