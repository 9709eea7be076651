//! The test OP's logins, so that the whole flow runs on one machine: the authorization code flow
//! with PKCE (S256), `state`, `nonce`, `prompt=login` and `max_age`; a login page (a form with a
//! user name, any name) or, for scripts, every login as one user; a token endpoint issuing ID
//! tokens (with `sid` and `auth_time`), JWT access tokens and rotating refresh tokens; and an
//! end-session endpoint (RP-Initiated Logout) that ends the OP session and delivers a
//! back-channel logout token to every client of it.
//!
//! Clients are registered with [`TestOp::register_client`]: redirect and post-logout redirect
//! URIs anywhere under the client's base URL, back-channel logout at
//! `<base URL>/backchannel-logout`. Everything lives in memory. It is a test OP: any user name
//! logs in, and nothing here is meant for real users.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use aws_lc_rs::digest;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::TestOp;
use super::keys::{SigningAlg, random_id};
use crate::sys::{secrets_equal, unix_now};

/// The OP's session cookie.
const COOKIE: &str = "test_op_session";
/// How long an authorization code may wait for its exchange.
const CODE_LIFETIME: u64 = 60;
/// How long ID and access tokens live.
const TOKEN_LIFETIME: u64 = 300;
/// Logins waiting for their user, and codes waiting for their exchange, kept at most: past it
/// the oldest are forgotten (the OP's memory stays bounded whatever is sent to it).
pub(super) const MAX_PENDING: usize = 10_000;

/// A client of the test OP.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Client {
    /// The client id.
    pub id: String,
    /// Its secret (`client_secret_basic` or `client_secret_post`).
    pub secret: String,
    /// Where it lives: redirect URIs must be under it; back-channel logout goes to
    /// `<base>/backchannel-logout`.
    pub base_url: String,
}

impl Client {
    /// A client with this id, secret and base URL (no trailing `/` needed).
    pub fn new(
        id: impl Into<String>,
        secret: impl Into<String>,
        base_url: impl Into<String>,
    ) -> Self {
        Self {
            id: id.into(),
            secret: secret.into(),
            base_url: base_url.into().trim_end_matches('/').to_owned(),
        }
    }

    /// Read `ID:SECRET@BASE_URL`.
    pub fn parse(spec: &str) -> Option<Self> {
        let (credentials, base) = spec.rsplit_once('@')?;
        let (id, secret) = credentials.split_once(':')?;
        let url = url::Url::parse(base).ok()?;
        if id.is_empty() || !matches!(url.scheme(), "http" | "https") {
            return None;
        }
        Some(Self::new(id, secret, base))
    }

    /// Whether `uri` is under this client's base URL.
    fn owns(&self, uri: &str) -> bool {
        uri.strip_prefix(&self.base_url)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(['/', '?']))
    }

    fn backchannel_logout_uri(&self) -> String {
        format!("{}/backchannel-logout", self.base_url)
    }
}

/// One OP session: who logged in, when, and which clients it logged in to.
#[derive(Debug, Clone)]
struct OpSession {
    sub: String,
    auth_time: u64,
    clients: HashSet<String>,
}

/// An authorization request waiting for its user to log in, or a code waiting for its exchange.
#[derive(Debug, Clone)]
struct Authorization {
    client: String,
    redirect_uri: String,
    state: Option<String>,
    nonce: Option<String>,
    challenge: String,
    scope: String,
}

#[derive(Debug, Clone)]
struct Code {
    request: Authorization,
    sid: String,
    expires: u64,
}

#[derive(Debug, Clone)]
struct Grant {
    client: String,
    sub: String,
    sid: String,
    scope: String,
    /// The login the grant comes from: every refresh token it rotates into shares it, and a
    /// spent one presented again revokes them all.
    family: String,
}

/// The logins' state.
#[derive(Debug, Default)]
pub(super) struct Logins {
    clients: HashMap<String, Client>,
    sessions: HashMap<String, OpSession>,
    by_cookie: HashMap<String, String>,
    pending: HashMap<String, Authorization>,
    codes: HashMap<String, Code>,
    grants: HashMap<String, Grant>,
    /// Refresh tokens already rotated, and the family each belonged to.
    spent: HashMap<String, String>,
    auto_user: Option<String>,
}

impl TestOp {
    fn logins(&self) -> std::sync::MutexGuard<'_, Logins> {
        self.logins
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Register a client.
    pub fn register_client(&self, client: Client) {
        self.logins().clients.insert(client.id.clone(), client);
    }

    /// Log every login in as `user`, without a login page (for scripts); `None`: show the page.
    pub fn set_auto_user(&self, user: Option<String>) {
        self.logins().auto_user = user;
    }

    /// The OP sessions live now: `(sid, sub)`.
    pub fn op_sessions(&self) -> Vec<(String, String)> {
        self.logins()
            .sessions
            .iter()
            .map(|(sid, s)| (sid.clone(), s.sub.clone()))
            .collect()
    }

    /// The key tokens are signed with: RS256 if published, else the first.
    fn token_key(&self) -> Option<std::sync::Arc<super::SigningKey>> {
        let keys = self
            .published
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        keys.iter()
            .find(|k| k.alg() == SigningAlg::Rs256)
            .or_else(|| keys.first())
            .cloned()
    }

    fn sign(&self, typ: &str, claims: &Value) -> Option<String> {
        let key = self.token_key()?;
        let mut header = Map::new();
        header.insert("typ".into(), typ.into());
        key.sign(&header, claims).ok()
    }
}

fn page(status: StatusCode, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>oidc-logout test OP</title></head>\
         <body>{body}</body></html>"
    );
    (status, Html(html)).into_response()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn cookie_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == COOKIE).then(|| value.to_owned())
        })
}

/// Redirect back to the client with `params` (and the request's `state`).
fn back(redirect_uri: &str, params: &[(&str, &str)], state: Option<&str>) -> Response {
    let Ok(mut url) = url::Url::parse(redirect_uri) else {
        return page(StatusCode::BAD_REQUEST, "<p>Invalid redirect_uri.</p>");
    };
    {
        let mut query = url.query_pairs_mut();
        for (k, v) in params {
            query.append_pair(k, v);
        }
        if let Some(state) = state {
            query.append_pair("state", state);
        }
    }
    Redirect::to(url.as_str()).into_response()
}

#[derive(Deserialize)]
pub(super) struct AuthParams {
    response_type: Option<String>,
    client_id: Option<String>,
    redirect_uri: Option<String>,
    scope: Option<String>,
    state: Option<String>,
    nonce: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    prompt: Option<String>,
    max_age: Option<String>,
}

/// `GET /auth`: the authorization endpoint.
pub(super) async fn authorize(
    State(op): State<std::sync::Arc<TestOp>>,
    headers: HeaderMap,
    Query(params): Query<AuthParams>,
) -> Response {
    let client = params
        .client_id
        .as_deref()
        .and_then(|id| op.logins().clients.get(id).cloned());
    let Some(client) = client else {
        return page(StatusCode::BAD_REQUEST, "<p>Unknown client_id.</p>");
    };
    let Some(redirect_uri) = params.redirect_uri.clone().filter(|uri| client.owns(uri)) else {
        return page(
            StatusCode::BAD_REQUEST,
            "<p>redirect_uri is not under the client's base URL.</p>",
        );
    };
    let state = params.state.as_deref();
    let refuse = |error: &str| back(&redirect_uri, &[("error", error)], state);
    if params.response_type.as_deref() != Some("code") {
        return refuse("unsupported_response_type");
    }
    let scope = params.scope.clone().unwrap_or_default();
    if !scope.split(' ').any(|s| s == "openid") {
        return refuse("invalid_scope");
    }
    let Some(challenge) = params.code_challenge.clone().filter(|c| !c.is_empty()) else {
        return refuse("invalid_request");
    };
    if params.code_challenge_method.as_deref() != Some("S256") {
        return refuse("invalid_request");
    }
    let request = Authorization {
        client: client.id.clone(),
        redirect_uri: redirect_uri.clone(),
        state: params.state.clone(),
        nonce: params.nonce.clone(),
        challenge,
        scope,
    };
    let prompt = params.prompt.as_deref().unwrap_or_default();
    let max_age = params
        .max_age
        .as_deref()
        .and_then(|m| m.parse::<u64>().ok());
    let now = unix_now();
    let current = cookie_of(&headers).and_then(|cookie| {
        let logins = op.logins();
        let sid = logins.by_cookie.get(&cookie)?.clone();
        let session = logins.sessions.get(&sid)?;
        Some((sid, session.auth_time))
    });
    let fresh_enough = |auth_time: u64| max_age.is_none_or(|m| auth_time.saturating_add(m) >= now);
    match current {
        Some((sid, auth_time))
            if !prompt.split(' ').any(|p| p == "login") && fresh_enough(auth_time) =>
        {
            issue_code(&op, request, &sid)
        }
        _ if prompt.split(' ').any(|p| p == "none") => refuse("login_required"),
        _ => {
            let auto = op.logins().auto_user.clone();
            match auto {
                Some(user) => log_in(&op, request, &user),
                None => login_page(&op, request),
            }
        }
    }
}

fn login_page(op: &TestOp, request: Authorization) -> Response {
    let Ok(interaction) = random_id(16) else {
        return page(StatusCode::INTERNAL_SERVER_ERROR, "<p>No randomness.</p>");
    };
    let client = escape(&request.client);
    let mut logins = op.logins();
    if logins.pending.len() >= MAX_PENDING {
        logins.pending.clear();
    }
    logins.pending.insert(interaction.clone(), request);
    drop(logins);
    page(
        StatusCode::OK,
        &format!(
            "<h1>Log in to {client}</h1>\
             <p>oidc-logout's test OP: any user name logs in.</p>\
             <form method=\"post\" action=\"/auth\">\
             <input type=\"hidden\" name=\"interaction\" value=\"{interaction}\">\
             <label>User name <input name=\"username\" autofocus required maxlength=\"64\"></label> \
             <button type=\"submit\">Log in</button></form>"
        ),
    )
}

/// `POST /auth`: the login form (`interaction`, `username`).
pub(super) async fn login_form(
    State(op): State<std::sync::Arc<TestOp>>,
    body: axum::body::Bytes,
) -> Response {
    let form: HashMap<String, String> = form_urlencoded::parse(&body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let interaction = form.get("interaction").cloned().unwrap_or_default();
    let request = op.logins().pending.remove(&interaction);
    let Some(request) = request else {
        return page(
            StatusCode::BAD_REQUEST,
            "<p>This login expired or was used; start again from the application.</p>",
        );
    };
    let user = form.get("username").map(|u| u.trim()).unwrap_or_default();
    if user.is_empty() || user.len() > 64 || user.chars().any(char::is_control) {
        return page(
            StatusCode::BAD_REQUEST,
            "<p>Give a user name of 1 to 64 characters.</p>",
        );
    }
    log_in(&op, request, user)
}

/// Start an OP session for `user` and send the code back.
fn log_in(op: &TestOp, request: Authorization, user: &str) -> Response {
    let (Ok(sid), Ok(cookie)) = (random_id(12), random_id(24)) else {
        return page(StatusCode::INTERNAL_SERVER_ERROR, "<p>No randomness.</p>");
    };
    {
        let mut logins = op.logins();
        if logins.sessions.len() >= MAX_PENDING {
            logins.sessions.clear();
            logins.by_cookie.clear();
        }
        logins.sessions.insert(
            sid.clone(),
            OpSession {
                sub: user.to_owned(),
                auth_time: unix_now(),
                clients: HashSet::new(),
            },
        );
        logins.by_cookie.insert(cookie.clone(), sid.clone());
    }
    let mut response = issue_code(op, request, &sid);
    if let Ok(value) = HeaderValue::from_str(&format!(
        "{COOKIE}={cookie}; Path=/; HttpOnly; SameSite=Lax"
    )) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

fn issue_code(op: &TestOp, request: Authorization, sid: &str) -> Response {
    let Ok(code) = random_id(24) else {
        return page(StatusCode::INTERNAL_SERVER_ERROR, "<p>No randomness.</p>");
    };
    let (redirect_uri, state) = (request.redirect_uri.clone(), request.state.clone());
    {
        let mut logins = op.logins();
        if let Some(session) = logins.sessions.get_mut(sid) {
            session.clients.insert(request.client.clone());
        }
        let now = unix_now();
        logins.codes.retain(|_, c| c.expires > now);
        if logins.codes.len() >= MAX_PENDING {
            logins.codes.clear();
        }
        logins.codes.insert(
            code.clone(),
            Code {
                request,
                sid: sid.to_owned(),
                expires: unix_now() + CODE_LIFETIME,
            },
        );
    }
    back(&redirect_uri, &[("code", &code)], state.as_deref())
}

fn token_error(status: StatusCode, error: &str) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(json!({ "error": error })),
    )
        .into_response()
}

/// The client a token request authenticates as (`client_secret_basic` or `_post`).
fn authenticated_client(
    op: &TestOp,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Option<Client> {
    let (id, secret) = match headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
    {
        Some(basic) => {
            let decoded = STANDARD.decode(basic.trim()).ok()?;
            let text = String::from_utf8(decoded).ok()?;
            let (id, secret) = text.split_once(':')?;
            let decode = |s: &str| {
                form_urlencoded::parse(format!("x={s}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
            };
            (decode(id)?, decode(secret)?)
        }
        None => (
            form.get("client_id")?.clone(),
            form.get("client_secret").cloned().unwrap_or_default(),
        ),
    };
    let client = op.logins().clients.get(&id).cloned()?;
    secrets_equal(client.secret.as_bytes(), secret.as_bytes()).then_some(client)
}

/// The authorization-code grant. `None` when the request is not one.
pub(super) fn code_grant(
    op: &TestOp,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Option<Response> {
    if form.get("grant_type").map(String::as_str) != Some("authorization_code") {
        return None;
    }
    let Some(client) = authenticated_client(op, headers, form) else {
        return Some(token_error(StatusCode::UNAUTHORIZED, "invalid_client"));
    };
    // A code is used up by its own client's attempt only (another client cannot burn it).
    let code = form.get("code").and_then(|c| {
        let mut logins = op.logins();
        let owned = logins.codes.get(c)?.request.client == client.id;
        owned.then(|| logins.codes.remove(c)).flatten()
    });
    let Some(code) = code.filter(|c| c.expires > unix_now()) else {
        return Some(token_error(StatusCode::BAD_REQUEST, "invalid_grant"));
    };
    if form.get("redirect_uri") != Some(&code.request.redirect_uri) {
        return Some(token_error(StatusCode::BAD_REQUEST, "invalid_grant"));
    }
    let verifier = form
        .get("code_verifier")
        .map(String::as_str)
        .unwrap_or_default();
    let computed = URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, verifier.as_bytes()));
    if !secrets_equal(computed.as_bytes(), code.request.challenge.as_bytes()) {
        return Some(token_error(StatusCode::BAD_REQUEST, "invalid_grant"));
    }
    let session = op.logins().sessions.get(&code.sid).cloned();
    let Some(session) = session else {
        return Some(token_error(StatusCode::BAD_REQUEST, "invalid_grant"));
    };
    let grant = Grant {
        client: client.id.clone(),
        sub: session.sub.clone(),
        sid: code.sid.clone(),
        scope: code.request.scope.clone(),
        family: form.get("code").cloned().unwrap_or_default(),
    };
    let now = unix_now();
    let mut id_claims = json!({
        "iss": op.issuer(),
        "sub": session.sub,
        "aud": client.id,
        "iat": now,
        "exp": now + TOKEN_LIFETIME,
        "auth_time": session.auth_time,
        "sid": code.sid,
    });
    if let (Some(nonce), Some(map)) = (&code.request.nonce, id_claims.as_object_mut()) {
        map.insert("nonce".into(), nonce.clone().into());
    }
    let Some(id_token) = op.sign("JWT", &id_claims) else {
        return Some(token_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
        ));
    };
    Some(tokens(op, &grant, Some(id_token)))
}

/// The refresh-token grant for a token a login issued. `None` when the token is not one.
pub(super) fn refresh_grant(
    op: &TestOp,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Option<Response> {
    if form.get("grant_type").map(String::as_str) != Some("refresh_token") {
        return None;
    }
    let token = form.get("refresh_token")?;
    {
        let mut logins = op.logins();
        if let Some(family) = logins.spent.get(token).cloned() {
            // Reuse of a rotated token, as Okta, Auth0 and Keycloak detect it: the whole
            // family is revoked, the current token too.
            logins.grants.retain(|_, g| g.family != family);
            drop(logins);
            op.refresh_token_reused();
            return Some(token_error(StatusCode::BAD_REQUEST, "invalid_grant"));
        }
        if !logins.grants.contains_key(token) {
            return None;
        }
    }
    let client = authenticated_client(op, headers, form);
    // Rotation, atomically: of two requests with one token, one gets the grant.
    let grant = {
        let mut logins = op.logins();
        let owned = logins
            .grants
            .get(token)
            .is_some_and(|g| client.as_ref().map(|c| &c.id) == Some(&g.client));
        if !owned {
            return Some(token_error(StatusCode::UNAUTHORIZED, "invalid_client"));
        }
        let grant = logins.grants.remove(token)?;
        if logins.spent.len() >= MAX_PENDING {
            logins.spent.clear();
        }
        logins.spent.insert(token.clone(), grant.family.clone());
        if !logins.sessions.contains_key(&grant.sid) {
            return Some(token_error(StatusCode::BAD_REQUEST, "invalid_grant"));
        }
        grant
    };
    Some(tokens(op, &grant, None))
}

/// Whether a refresh token is one a login issued (for revocation).
pub(super) fn revoke_grant(op: &TestOp, token: &str) -> bool {
    op.logins().grants.remove(token).is_some()
}

/// An access token (JWT, RFC 9068), and a refresh token with `offline_access`.
fn tokens(op: &TestOp, grant: &Grant, id_token: Option<String>) -> Response {
    let now = unix_now();
    let (Ok(jti), Ok(refresh)) = (random_id(16), random_id(24)) else {
        return token_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error");
    };
    let access_claims = json!({
        "iss": op.issuer(),
        "sub": grant.sub,
        "aud": grant.client,
        "client_id": grant.client,
        "iat": now,
        "exp": now + TOKEN_LIFETIME,
        "jti": jti,
        "sid": grant.sid,
        "scope": grant.scope,
    });
    let Some(access_token) = op.sign("at+jwt", &access_claims) else {
        return token_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error");
    };
    {
        let mut tokens = op
            .access_tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if tokens.len() >= MAX_PENDING {
            tokens.clear();
        }
        tokens.insert(access_token.clone(), grant.sub.clone());
    }
    let mut answer = json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": TOKEN_LIFETIME,
        "scope": grant.scope,
    });
    if let Some(map) = answer.as_object_mut() {
        if let Some(id_token) = id_token {
            map.insert("id_token".into(), id_token.into());
        }
        if grant.scope.split(' ').any(|s| s == "offline_access") {
            op.logins().grants.insert(refresh.clone(), grant.clone());
            map.insert("refresh_token".into(), refresh.into());
        }
    }
    ([(header::CACHE_CONTROL, "no-store")], axum::Json(answer)).into_response()
}

#[derive(Deserialize)]
pub(super) struct EndSessionParams {
    id_token_hint: Option<String>,
    post_logout_redirect_uri: Option<String>,
    state: Option<String>,
    client_id: Option<String>,
}

/// The client an `id_token_hint` was issued to (its `aud`), read without trusting it further:
/// it only chooses where the browser may be sent back, among registered clients' URLs.
fn hinted_client(hint: &str) -> Option<String> {
    let payload = hint.split('.').nth(1)?;
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    match claims.get("aud")? {
        Value::String(aud) => Some(aud.clone()),
        Value::Array(auds) => auds.first()?.as_str().map(str::to_owned),
        _ => None,
    }
}

/// `GET /session/end`: RP-Initiated Logout. Ends the browser's OP session, delivers a
/// back-channel logout token to every client of it, and sends the browser back.
pub(super) async fn end_session(
    State(op): State<std::sync::Arc<TestOp>>,
    headers: HeaderMap,
    Query(params): Query<EndSessionParams>,
) -> Response {
    let client_id = params
        .client_id
        .clone()
        .or_else(|| params.id_token_hint.as_deref().and_then(hinted_client));
    let client = client_id.and_then(|id| op.logins().clients.get(&id).cloned());
    let back_to = match (&params.post_logout_redirect_uri, &client) {
        (Some(uri), Some(client)) if client.owns(uri) => Some(uri.clone()),
        (Some(_), _) => {
            return page(
                StatusCode::BAD_REQUEST,
                "<p>post_logout_redirect_uri is not under the client's base URL.</p>",
            );
        }
        _ => None,
    };
    let ended = cookie_of(&headers).and_then(|cookie| {
        let mut logins = op.logins();
        let sid = logins.by_cookie.remove(&cookie)?;
        let session = logins.sessions.remove(&sid)?;
        logins.grants.retain(|_, g| g.sid != sid);
        let clients: Vec<Client> = session
            .clients
            .iter()
            .filter_map(|id| logins.clients.get(id).cloned())
            .collect();
        Some((sid, session.sub, clients))
    });
    if let Some((sid, sub, clients)) = ended {
        deliver(&op, &sid, &sub, &clients).await;
    }
    let mut response = match back_to {
        Some(uri) => back(&uri, &[], params.state.as_deref()),
        None => page(StatusCode::OK, "<p>You are logged out of the test OP.</p>"),
    };
    if let Ok(value) = HeaderValue::from_str(&format!(
        "{COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax"
    )) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// Back-channel logout tokens to `clients` for the OP session `sid` of `sub`, each delivery
/// waited for (a few seconds at most), so the browser comes back after the applications know.
async fn deliver(op: &TestOp, sid: &str, sub: &str, clients: &[Client]) {
    let Ok(http) = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
    else {
        return;
    };
    for client in clients {
        let Ok(claims) = super::logout_claims(op.issuer(), &client.id, Some(sub), Some(sid)) else {
            continue;
        };
        let Some(token) = op.sign("logout+jwt", &claims) else {
            continue;
        };
        let uri = client.backchannel_logout_uri();
        match super::send::post(&http, &uri, &token).await {
            Ok(reply) => {
                tracing::info!(client = %client.id, status = reply.status, "back-channel logout delivered")
            }
            Err(error) => {
                tracing::warn!(client = %client.id, %error, "back-channel logout not delivered")
            }
        }
    }
}
