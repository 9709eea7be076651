//! SCIM under attack and under concurrency, against a real redis-server: two clients of one
//! issuer (two customers federated into one OP, configured without names or customers) keep to
//! their own users, and each write is checked and done in one step, so that no race revokes
//! what a refused request named, leaves a stale name behind, or makes a deactivated user
//! active again. Each race runs 50 trials.

mod common;

use std::sync::Arc;

use common::signals::{scim_call as call, scim_user as user};
use common::{RedisServer, index_on, now};
use futures_util::future::join_all;
use oidc_logout::Core;
use oidc_logout::index::{RedisIndex, SessionIndex, SessionRecord, SessionState};
use oidc_logout::inputs::scim::{self, ScimClient};
use secrecy::SecretString;
use serde_json::{Value, json};

const ISS: &str = "https://idp.example.com";
const FIRST: &str = "scim-token-of-the-first-client-0123456789";
const SECOND: &str = "scim-token-of-the-second-client-012345678";
const TRIALS: usize = 50;

struct Setup {
    base: String,
    index: RedisIndex,
    _redis: RedisServer,
}

async fn setup() -> Setup {
    let redis = RedisServer::start();
    let index = index_on(&redis).await;
    let core = Core::builder(index.clone()).issuer(ISS).build();
    // Two clients of one issuer, as the first configuration would be written: no names.
    let clients = [
        ScimClient::new(ISS, vec![SecretString::from(FIRST)]),
        ScimClient::new(ISS, vec![SecretString::from(SECOND)]).with_name("#2"),
    ];
    let base = common::serve(scim::router(core, index.clone(), &clients)).await;
    Setup {
        base: format!("{base}{}", scim::PREFIX),
        index,
        _redis: redis,
    }
}

impl Setup {
    /// A live session of `sub`.
    async fn login(&self, sub: &str) -> SessionRecord {
        let record = common::session(ISS, &format!("s-{sub}"), sub, now() - 60);
        self.index.register(&record).await.expect("register");
        record
    }

    async fn state(&self, record: &SessionRecord) -> SessionState {
        common::state_of_record(&self.index, record).await
    }

    fn users(&self) -> String {
        format!("{}/Users", self.base)
    }

    async fn create(&self, token: &str, body: &Value) -> (u16, Value) {
        let (status, answer, _) =
            call("POST", &self.users(), Some(token), Some(&body.to_string())).await;
        (status, answer)
    }
}

fn resource(name: &str, sub: &str, active: bool) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": name, "externalId": sub, "active": active,
    })
}

fn patch(operations: Value) -> String {
    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": operations})
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_clients_user_is_a_404_and_its_sub_a_409() {
    let s = setup().await;
    let victim = s.login("victim").await;
    let (status, created) = s.create(FIRST, &resource("victim", "victim", true)).await;
    assert_eq!(status, 201, "{created}");
    let url = format!("{}/{}", s.users(), created["id"].as_str().expect("id"));
    let off = patch(json!([{"op": "Replace", "path": "active", "value": "False"}]));
    for (method, body) in [
        ("GET", None),
        ("PATCH", Some(off.as_str())),
        ("PUT", Some(&*user("victim", "victim"))),
        ("DELETE", None),
    ] {
        let (status, answer, _) = call(method, &url, Some(SECOND), body).await;
        assert_eq!(status, 404, "{method}: {answer}");
    }
    for query in [
        "",
        "?filter=userName%20eq%20%22victim%22",
        "?filter=externalId%20eq%20%22victim%22",
    ] {
        let (_, list, _) = call("GET", &format!("{}{query}", s.users()), Some(SECOND), None).await;
        assert_eq!(list["totalResults"], 0, "{query}: {list}");
    }
    let search = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                        "filter": "userName eq \"victim\""});
    let (_, found, _) = call(
        "POST",
        &format!("{}/.search", s.users()),
        Some(SECOND),
        Some(&search.to_string()),
    )
    .await;
    assert_eq!(found["totalResults"], 0, "{found}");
    // The inactive decoy whose mapped attribute is the victim's sub: refused, nothing revoked.
    let (status, answer) = s.create(SECOND, &resource("decoy", "victim", false)).await;
    assert_eq!(
        (status, &answer["scimType"]),
        (409, &json!("uniqueness")),
        "{answer}"
    );
    // Nor may an existing user of the second client take the sub by a change.
    let (_, own) = s.create(SECOND, &resource("own", "own-sub", true)).await;
    let own_url = format!("{}/{}", s.users(), own["id"].as_str().expect("id"));
    let take = patch(json!([
        {"op": "replace", "path": "active", "value": false},
        {"op": "replace", "path": "externalId", "value": "victim"}
    ]));
    let (status, _, _) = call("PATCH", &own_url, Some(SECOND), Some(&take)).await;
    assert_eq!(status, 409);
    assert_eq!(s.state(&victim).await, SessionState::Active);
    let (status, still, _) = call("GET", &url, Some(FIRST), None).await;
    assert_eq!((status, &still["active"]), (200, &json!(true)));
}

/// Sixteen clients' requests at once creating users with one `userName`: one is created, the
/// others refused — and the refused ones, inactive users naming subs with live sessions,
/// revoke nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_creates_with_one_name_revoke_nothing_for_the_refused() {
    let s = Arc::new(setup().await);
    for trial in 0..TRIALS {
        let subs: Vec<String> = (0..16).map(|i| format!("t{trial}-u{i}")).collect();
        let mut sessions = Vec::new();
        for sub in &subs {
            sessions.push(s.login(sub).await);
        }
        let answers = join_all(subs.iter().map(|sub| {
            let s = Arc::clone(&s);
            let body = resource(&format!("name-{trial}"), sub, false);
            async move { s.create(FIRST, &body).await.0 }
        }))
        .await;
        let created: Vec<usize> = (0..16).filter(|&i| answers[i] == 201).collect();
        assert_eq!(created.len(), 1, "trial {trial}: {answers:?}");
        assert!(answers.iter().all(|&a| a == 201 || a == 409), "{answers:?}");
        for (i, session) in sessions.iter().enumerate() {
            let want = if created.contains(&i) {
                SessionState::Ended
            } else {
                SessionState::Active
            };
            assert_eq!(s.state(session).await, want, "trial {trial}, request {i}");
        }
    }
}

/// Concurrent renames of one user leave exactly its last name taken: every other name is free
/// again, and its deletion frees that one too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_renames_leave_no_stale_name() {
    let s = Arc::new(setup().await);
    for trial in 0..TRIALS {
        let (_, created) = s
            .create(
                FIRST,
                &resource(&format!("r{trial}"), &format!("r{trial}"), true),
            )
            .await;
        let url = format!("{}/{}", s.users(), created["id"].as_str().expect("id"));
        let names: Vec<String> = (0..4).map(|i| format!("r{trial}-{i}")).collect();
        join_all(names.iter().map(|name| {
            let (url, body) = (
                url.clone(),
                patch(json!([{"op": "replace", "path": "userName", "value": name}])),
            );
            async move { call("PATCH", &url, Some(FIRST), Some(&body)).await.0 }
        }))
        .await;
        let (_, now_named, _) = call("GET", &url, Some(FIRST), None).await;
        let last = now_named["userName"].as_str().expect("name").to_owned();
        for name in names.iter().chain([&format!("r{trial}")]) {
            let (status, _) = s
                .create(FIRST, &resource(name, &format!("{name}-other"), true))
                .await;
            let expected = if *name == last { 409 } else { 201 };
            assert_eq!(status, expected, "trial {trial}: {name} (last {last})");
        }
        let (status, _, _) = call("DELETE", &url, Some(FIRST), None).await;
        assert_eq!(status, 204);
        let (status, _) = s
            .create(FIRST, &resource(&last, &format!("{last}-after"), true))
            .await;
        assert_eq!(status, 201, "trial {trial}: a deletion frees the name");
    }
}

/// A deactivating PATCH racing a PUT that leaves `active` out: the user ends inactive, and its
/// sessions ended, whichever comes first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deactivation_racing_a_put_stays() {
    let s = Arc::new(setup().await);
    for trial in 0..TRIALS {
        let sub = format!("p{trial}");
        let session = s.login(&sub).await;
        let (_, created) = s.create(FIRST, &resource(&sub, &sub, true)).await;
        let url = format!("{}/{}", s.users(), created["id"].as_str().expect("id"));
        let off = patch(json!([{"op": "Replace", "path": "active", "value": "False"}]));
        let put = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                         "userName": sub, "externalId": sub, "displayName": "renamed"})
        .to_string();
        let (a, b) = tokio::join!(
            call("PATCH", &url, Some(FIRST), Some(&off)),
            call("PUT", &url, Some(FIRST), Some(&put)),
        );
        assert_eq!((a.0, b.0), (200, 200), "trial {trial}: {} {}", a.1, b.1);
        let (_, user_now, _) = call("GET", &url, Some(FIRST), None).await;
        assert_eq!(user_now["active"], false, "trial {trial}: {user_now}");
        assert_eq!(
            s.state(&session).await,
            SessionState::Ended,
            "trial {trial}"
        );
    }
}
