//! Two customers federated into one OP, every sender scoped to one of them (`customer = "…"`),
//! against `oidc-logout serve` and a real redis-server: whatever a customer's sender names, it
//! ends only its own customer's sessions and writes denylist markers only for its own users —
//! through the admin API, SCIM, Shared Signals, FusionAuth and Universal Logout alike. Each
//! sender also revokes a user of its own customer, so that a sender that acts on nobody would
//! fail here too.

mod common;

use common::signals::{
    SET_AUDIENCE, Transmitter, event, fusionauth_event, fusionauth_hmac_signature, iss_sub,
    post_json, push, scim_call, scim_user,
};
use common::{CLIENT, Op, RedisServer, deny_markers, endpoint, free_port, index_on, now, start};
use oidc_logout::index::{RedisIndex, SessionState};
use oidc_logout::inputs::shared_signals::ACCOUNT_DISABLED;
use oidc_logout::session_store::{Login, OidcSessionStore};
use serde_json::json;

const GLOBEX_ADMIN: &str = "globex-admin-token-0123456789abcdef0123";
const ACME_SCIM: &str = "acme-scim-token-0123456789abcdef012345";
const GLOBEX_SCIM: &str = "globex-scim-token-0123456789abcdef01234";
const HMAC: &str = "fusionauth-webhook-hmac-secret-0123456789";
const GLOBEX_TENANT: &str = "globex-tenant";
const UL_CLIENT: &str = "0oa1globex2logout";

struct Setup {
    redis: RedisServer,
    op: Op,
    idp: Transmitter,
    index: RedisIndex,
    store: OidcSessionStore<RedisIndex>,
    base: String,
    _dir: common::topologies::TempDir,
    _running: common::Proc,
}

async fn setup() -> Setup {
    let redis = RedisServer::start();
    let (op, idp) = (Op::start().await, Transmitter::start().await);
    let dir = common::topologies::TempDir::new("customers");
    let port = free_port();
    let config = format!(
        r#"
        listen = "127.0.0.1:{port}"
        redis_url = "{redis}"
        [[issuers]]
        issuer = "{op}"
        clients = ["{CLIENT}"]
        [[admin]]
        tokens = ["{GLOBEX_ADMIN}"]
        issuer = "{op}"
        customer = "globex"
        [[scim]]
        tokens = ["{ACME_SCIM}"]
        issuer = "{op}"
        customer = "acme"
        [[scim]]
        tokens = ["{GLOBEX_SCIM}"]
        issuer = "{op}"
        customer = "globex"
        [[transmitters]]
        issuer = "{idp}"
        audiences = ["{SET_AUDIENCE}"]
        subject_issuer = "{op}"
        customer = "globex"
        [fusionauth]
        hmac_secrets = ["{HMAC}"]
        tenants = [{{ tenant_id = "{GLOBEX_TENANT}", issuer = "{op}", customer = "globex" }}]
        [[universal_logout]]
        issuer = "{op}"
        client_id = "{UL_CLIENT}"
        audience = "http://127.0.0.1:{port}/global-token-revocation"
        customer = "globex"
        "#,
        redis = redis.url(),
        op = op.issuer(),
        idp = idp.issuer(),
    );
    let path = dir.0.join("config.toml");
    std::fs::write(&path, config).expect("config");
    let running = start(&["serve", "--config", &path.display().to_string()], &[]);
    let base = endpoint(&running).replace("/backchannel-logout", "");
    let index = index_on(&redis).await;
    let store = OidcSessionStore::new(index.clone());
    Setup {
        redis,
        op,
        idp,
        index,
        store,
        base,
        _dir: dir,
        _running: running,
    }
}

impl Setup {
    /// A session of `sub`, logged in as `customer`'s user (the login's rules decided so).
    async fn login(&self, sub: &str, customer: &str) -> String {
        let login = Login {
            issuer: self.op.issuer().to_owned(),
            sub: sub.to_owned(),
            client_id: Some(CLIENT.into()),
            sid: Some(format!("op-{sub}")),
            auth_time: now() - 60,
            logged_in_at: now() - 60,
            policy: None,
            customer: Some(customer.to_owned()),
            id_token: None,
            refresh_token: None,
            access_token: None,
        };
        common::store_login(&self.store, &login).await
    }

    async fn state(&self, id: &str) -> SessionState {
        common::state_of(&self.index, self.op.issuer(), id).await
    }

    /// Acme's user: untouched, no denylist marker.
    async fn untouched(&self, id: &str, sub: &str, by: &str) {
        assert_eq!(
            self.state(id).await,
            SessionState::Active,
            "{by} ended {sub}"
        );
        let markers = deny_markers(&self.redis, self.op.issuer()).await;
        assert!(
            !markers.contains_key(&format!("sub:{sub}"))
                && !markers.contains_key(&format!("sid:op-{sub}")),
            "{by} wrote a denylist marker for {sub}: {markers:?}"
        );
    }

    /// Globex's user: ended, with the user's denylist marker.
    async fn revoked(&self, id: &str, sub: &str, by: &str) {
        assert_eq!(
            self.state(id).await,
            SessionState::Ended,
            "{by} did not end {sub}"
        );
        let markers = deny_markers(&self.redis, self.op.issuer()).await;
        assert!(
            markers.contains_key(&format!("sub:{sub}")),
            "{by} wrote no denylist marker for {sub}: {markers:?}"
        );
    }

    async fn admin(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        let response = reqwest::Client::new()
            .post(format!("{}/admin/v1{path}", self.base))
            .bearer_auth(GLOBEX_ADMIN)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("admin API");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or_default())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customers_admin_token_reaches_only_its_customers_users() {
    let s = setup().await;
    let alice = s.login("alice", "acme").await;
    let gina = s.login("gina", "globex").await;
    let iss = s.op.issuer();
    let (status, answer) = s
        .admin("/users/revoke", json!({"issuer": iss, "sub": "alice"}))
        .await;
    assert_eq!((status, &answer["ended"]), (200, &json!([])), "{answer}");
    let (status, answer) = s
        .admin(
            "/sessions/end",
            json!({"issuer": iss, "session_id": alice, "sub": "alice"}),
        )
        .await;
    assert_eq!((status, &answer["ended"]), (200, &json!(false)), "{answer}");
    let (status, answer) = s
        .admin(
            "/users/end-sessions",
            json!({"issuer": iss, "sub": "alice"}),
        )
        .await;
    assert_eq!((status, &answer["ended"]), (200, &json!([])), "{answer}");
    let listed = reqwest::Client::new()
        .get(
            reqwest::Url::parse_with_params(
                &format!("{}/admin/v1/sessions", s.base),
                [("issuer", iss), ("sub", "alice")],
            )
            .expect("url"),
        )
        .bearer_auth(GLOBEX_ADMIN)
        .send()
        .await
        .expect("list");
    let listed: serde_json::Value =
        serde_json::from_str(&listed.text().await.unwrap_or_default()).unwrap_or_default();
    assert_eq!(
        listed["sessions"],
        json!([]),
        "another customer's sessions are not shown"
    );
    s.untouched(&alice, "alice", "the globex admin").await;
    let (status, answer) = s
        .admin("/users/revoke", json!({"issuer": iss, "sub": "gina"}))
        .await;
    assert_eq!(status, 200, "{answer}");
    s.revoked(&gina, "gina", "the globex admin").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customers_senders_reach_only_its_customers_users() {
    let s = setup().await;
    let alice = s.login("alice", "acme").await;
    let iss = s.op.issuer().to_owned();

    // Shared Signals.
    let gina = s.login("gina", "globex").await;
    let url = format!("{}/shared-signals/events", s.base);
    for (sub, id) in [("alice", &alice), ("gina", &gina)] {
        let set = s
            .idp
            .sign(&s.idp.set(event(ACCOUNT_DISABLED), Some(iss_sub(&iss, sub))));
        let (status, body) = push(&url, "application/secevent+jwt", &set).await;
        assert_eq!(status, 202, "{body}");
        if sub == "alice" {
            s.untouched(id, sub, "the globex transmitter").await;
        }
    }
    s.revoked(&gina, "gina", "the globex transmitter").await;

    // FusionAuth.
    let greta = s.login("greta", "globex").await;
    let url = format!("{}/webhooks/fusionauth", s.base);
    for sub in ["alice", "greta"] {
        let body = fusionauth_event(
            "user.deactivate",
            GLOBEX_TENANT,
            json!({"user": {"id": sub}}),
        );
        let response = reqwest::Client::new()
            .post(&url)
            .header("content-type", "application/json")
            .header(
                "x-fusionauth-signature-jwt",
                fusionauth_hmac_signature(&body, HMAC, json!({})),
            )
            .body(body)
            .send()
            .await
            .expect("webhook");
        assert_eq!(response.status().as_u16(), 200);
    }
    s.untouched(&alice, "alice", "the globex tenant").await;
    s.revoked(&greta, "greta", "the globex tenant").await;

    // Universal Logout.
    let gwen = s.login("gwen", "globex").await;
    let url = format!("{}/global-token-revocation", s.base);
    for (n, sub) in ["alice", "gwen"].into_iter().enumerate() {
        let jwt = s.op.sign_with(
            &s.op.key,
            &[("typ", "global-token-revocation+jwt".into())],
            &json!({"jti": format!("ul-{n}"), "iss": iss, "sub": UL_CLIENT, "aud": url,
                    "exp": now() + 300, "nbf": now() - 60, "iat": now()}),
        );
        let body = json!({"sub_id": {"format": "iss_sub", "iss": iss, "sub": sub}});
        assert_eq!(post_json(&url, Some(&jwt), &body.to_string()).await, 204);
    }
    s.untouched(&alice, "alice", "the globex org").await;
    s.revoked(&gwen, "gwen", "the globex org").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim_clients_of_one_issuer_keep_to_their_own_users() {
    let s = setup().await;
    let alice = s.login("alice", "acme").await;
    let base = format!("{}/scim/v2", s.base);
    // Acme provisions alice.
    let (status, created, _) = scim_call(
        "POST",
        &format!("{base}/Users"),
        Some(ACME_SCIM),
        Some(&scim_user("alice@acme.example", "alice")),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let url = format!("{base}/Users/{}", created["id"].as_str().expect("id"));
    let deactivate = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "Replace", "path": "active", "value": "False"}],
    })
    .to_string();
    // Globex's client does not see, list, filter, change or delete her.
    for (method, body) in [
        ("GET", None),
        ("PATCH", Some(deactivate.as_str())),
        ("PUT", Some(&*scim_user("alice@acme.example", "alice"))),
        ("DELETE", None),
    ] {
        let (status, answer, _) = scim_call(method, &url, Some(GLOBEX_SCIM), body).await;
        assert_eq!(status, 404, "{method}: {answer}");
        assert_eq!(
            answer["schemas"][0],
            "urn:ietf:params:scim:api:messages:2.0:Error"
        );
    }
    for query in [
        "",
        "?filter=userName%20eq%20%22alice@acme.example%22",
        "?filter=externalId%20eq%20%22alice%22",
    ] {
        let (_, list, _) = scim_call(
            "GET",
            &format!("{base}/Users{query}"),
            Some(GLOBEX_SCIM),
            None,
        )
        .await;
        assert_eq!(list["totalResults"], 0, "{query}: {list}");
    }
    // An inactive decoy naming alice's sub: refused before anything is revoked.
    let decoy = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "decoy", "externalId": "alice", "active": false,
    });
    let (status, answer, _) = scim_call(
        "POST",
        &format!("{base}/Users"),
        Some(GLOBEX_SCIM),
        Some(&decoy.to_string()),
    )
    .await;
    assert_eq!(
        (status, &answer["scimType"]),
        (409, &json!("uniqueness")),
        "{answer}"
    );
    s.untouched(&alice, "alice", "the globex SCIM client").await;
    // A decoy of a user no client provisioned: created, but it reaches no acme user.
    let bob = s.login("bob", "acme").await;
    let decoy = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "decoy-2", "externalId": "bob", "active": false,
    });
    let (status, _, _) = scim_call(
        "POST",
        &format!("{base}/Users"),
        Some(GLOBEX_SCIM),
        Some(&decoy.to_string()),
    )
    .await;
    assert_eq!(status, 201);
    s.untouched(&bob, "bob", "the globex SCIM client").await;
    // Alice's record is as acme left it, and acme still deprovisions her.
    let (status, still, _) = scim_call("GET", &url, Some(ACME_SCIM), None).await;
    assert_eq!((status, &still["active"]), (200, &json!(true)), "{still}");
    let (status, _, _) = scim_call("PATCH", &url, Some(ACME_SCIM), Some(&deactivate)).await;
    assert_eq!(status, 200);
    s.revoked(&alice, "alice", "the acme SCIM client").await;
    // Globex's own user.
    let gina = s.login("gina", "globex").await;
    let (status, _, _) = scim_call(
        "POST",
        &format!("{base}/Users"),
        Some(GLOBEX_SCIM),
        Some(
            &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                    "userName": "gina", "externalId": "gina", "active": false})
            .to_string(),
        ),
    )
    .await;
    assert_eq!(status, 201);
    s.revoked(&gina, "gina", "the globex SCIM client").await;
}
