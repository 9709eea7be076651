//! The console: the central view of sessions for the people who answer "is this user still
//! in, and where?" — a help desk, a security engineer — at `/console` on the admin listener.
//! Server-rendered HTML that works without JavaScript.
//!
//! - **Sign-in** through the OP (`sign_in.rs`: administrators are those whose ID token's
//!   configured claim holds a configured value) or, for break-glass, with an admin API token;
//!   every other page refuses before sign-in (pages redirect to the sign-in page, forms answer
//!   403).
//! - **Search** (`q`) by `sub`, session id, or SCIM `userName` (which is also how an e-mail is
//!   found: the index keeps no e-mail addresses).
//! - **A user's page**: their live sessions across applications, with buttons to end one, end
//!   those of one application, or revoke the user everywhere (denylist marker, refresh tokens),
//!   each confirmed on a page of its own.
//! - **Activity**: the core's latest audit entries ([`Core::activity`]).
//!
//! Every change is an [`Event`] of the sender `console:<who>` through [`Core::apply`], like
//! every input's: the same scope (a scoped token's issuer and customer), hooks and audit line.
//! Every form carries the session's CSRF token; the cookies are `HttpOnly` and
//! `SameSite=Strict` (`session.rs`); every answer forbids framing, scripts and caching.

pub mod config;
mod pages;
mod session;
mod sign_in;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Map, Value};
use tower::ServiceBuilder;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::set_header::SetResponseHeaderLayer;

use self::pages::{Chrome, Match};
use self::session::{Admin, Sessions, Signed};
use self::sign_in::Oidc;
use super::bearer::BearerTokens;
use crate::core::{Action, Core, CoreError, Event, Outcome, Scope, Sender};
use crate::index::{Lookup, Owner, RecordStore, SessionIndex, UserDirectory};

/// The largest form read, in bytes.
const MAX_BODY_BYTES: usize = 16 * 1024;
/// The longest search accepted.
const MAX_QUERY_CHARS: usize = 512;
/// OIDC code exchanges in flight at once: enough for people signing in, not for a flood of
/// replayed callbacks to keep the OP busy.
const MAX_EXCHANGES: usize = 4;
/// How many activity entries the page shows.
const ACTIVITY_SHOWN: usize = 200;

/// What the pages allow: their own style sheet and forms, nothing else.
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

/// A SCIM client whose users the search looks through.
pub(crate) struct ScimOwner {
    issuer: String,
    /// Its name among the issuer's clients.
    client: String,
    /// Its customer, when it is scoped to one.
    customer: Option<String>,
}

struct Console<S, D> {
    core: Core<S>,
    /// Requests to the OP in flight at most, discovery and code exchanges (see
    /// [`MAX_EXCHANGES`]).
    exchanges: tokio::sync::Semaphore,
    sessions: Sessions<S>,
    oidc: Option<Oidc>,
    tokens: BearerTokens<Scope>,
    directory: D,
    scim: Vec<ScimOwner>,
    issuers: Vec<String>,
}

type Shared<S, D> = Arc<Console<S, D>>;

/// What the console is built from.
pub(crate) struct Parts<'a, S, D> {
    pub(crate) core: Core<S>,
    pub(crate) directory: D,
    pub(crate) http: reqwest::Client,
    pub(crate) settings: &'a config::ConsoleSettings,
    pub(crate) tokens: Vec<(&'a secrecy::SecretString, Scope)>,
    pub(crate) scim: Vec<ScimOwner>,
    pub(crate) issuers: Vec<String>,
}

/// The console's router (paths under `/console`).
pub(crate) fn router<S, D>(parts: Parts<'_, S, D>) -> Router
where
    S: SessionIndex + RecordStore,
    D: UserDirectory,
{
    let secure = parts.settings.secure_cookies;
    let console = Arc::new(Console {
        exchanges: tokio::sync::Semaphore::new(MAX_EXCHANGES),
        sessions: Sessions::new(parts.core.index().clone(), parts.settings.session, secure),
        core: parts.core,
        oidc: parts
            .settings
            .oidc
            .clone()
            .map(|settings| Oidc::new(settings, parts.http)),
        tokens: BearerTokens::new(parts.tokens),
        directory: parts.directory,
        scim: parts.scim,
        issuers: parts.issuers,
    });
    let header =
        |name, value| SetResponseHeaderLayer::overriding(name, HeaderValue::from_static(value));
    Router::new()
        .route("/console", get(search::<S, D>))
        .route("/console/style.css", get(style))
        .route("/console/sign-in", get(sign_in_page::<S, D>))
        .route("/console/sign-in/oidc", get(oidc_begin::<S, D>))
        .route("/console/sign-in/token", post(token_sign_in::<S, D>))
        .route("/console/callback", get(callback))
        .route("/console/callback/finish", get(oidc_finish::<S, D>))
        .route("/console/sign-out", post(sign_out::<S, D>))
        .route("/console/user", get(user::<S, D>))
        .route("/console/act", post(act::<S, D>))
        .route("/console/activity", get(activity::<S, D>))
        .route("/console/{*rest}", axum::routing::any(not_found))
        .with_state(console)
        .layer(
            ServiceBuilder::new()
                .layer(header(header::CONTENT_SECURITY_POLICY, CSP))
                .layer(header(header::X_FRAME_OPTIONS, "DENY"))
                .layer(header(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
                .layer(header(header::REFERRER_POLICY, "no-referrer"))
                .layer(crate::response::no_store())
                .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES)),
        )
}

fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

fn see_other(to: &str) -> Response {
    let location =
        HeaderValue::from_str(to).unwrap_or_else(|_| HeaderValue::from_static("/console"));
    (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response()
}

fn with_cookies(
    mut response: Response,
    cookies: impl IntoIterator<Item = HeaderValue>,
) -> Response {
    for cookie in cookies {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

/// The store failed: say so without detail (the log has it).
fn unavailable(error: impl std::fmt::Display) -> Response {
    tracing::warn!(%error, "console: the index failed");
    html(
        StatusCode::SERVICE_UNAVAILABLE,
        pages::problem(
            None,
            "Unavailable",
            "The session index is not answering. Try again shortly.",
        ),
    )
}

/// The query string's fields (the first of each name).
fn query(uri: &Uri) -> HashMap<String, String> {
    fields(uri.query().unwrap_or_default().as_bytes())
}

/// A form's or query's fields (the first of each name).
fn fields(bytes: &[u8]) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for (name, value) in form_urlencoded::parse(bytes) {
        out.entry(name.into_owned())
            .or_insert_with(|| value.into_owned());
    }
    out
}

/// The signed-in session of a page request, or the answer for one that has none.
async fn signed<S: SessionIndex + RecordStore, D>(
    console: &Console<S, D>,
    headers: &HeaderMap,
    page: bool,
) -> Result<(String, Signed), Response> {
    let found = console.sessions.signed_in(headers).await;
    // A sign-in with a token lasts only while that token is configured, with the same scope.
    let found = found.map(|found| {
        found.filter(|(_, signed)| {
            signed.admin.token.as_ref().is_none_or(|fingerprint| {
                console
                    .tokens
                    .by_fingerprint(fingerprint)
                    .is_some_and(|scope| {
                        scope.the_issuer() == signed.admin.issuer.as_deref()
                            && scope.customer() == signed.admin.customer.as_deref()
                    })
            })
        })
    });
    match found {
        Ok(Some(found)) => Ok(found),
        Ok(None) if page => Err(see_other("/console/sign-in")),
        Ok(None) => Err(html(
            StatusCode::FORBIDDEN,
            pages::problem(None, "Not signed in", "Sign in to the console first."),
        )),
        Err(error) => Err(unavailable(error)),
    }
}

/// A signed-in form: the session, and the form's fields when its CSRF token is the session's.
async fn signed_form<S: SessionIndex + RecordStore, D>(
    console: &Console<S, D>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(String, Signed, HashMap<String, String>), Response> {
    let (id, signed) = signed(console, headers, false).await?;
    let form = fields(body);
    if !signed.csrf_matches(form.get("csrf").map(String::as_str)) {
        crate::telemetry::refused_unauthenticated("console", "csrf");
        return Err(html(
            StatusCode::FORBIDDEN,
            pages::problem(
                None,
                "Refused",
                "The form is not this session's: reload the page and try again.",
            ),
        ));
    }
    Ok((id, signed, form))
}

fn chrome(signed: &Signed) -> Chrome<'_> {
    Chrome {
        admin: &signed.admin.display,
        csrf: &signed.csrf,
    }
}

async fn style() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        pages::STYLE,
    )
        .into_response()
}

async fn not_found() -> Response {
    html(
        StatusCode::NOT_FOUND,
        pages::problem(None, "Not found", "There is no such page."),
    )
}

async fn sign_in_page<S: SessionIndex + RecordStore, D>(
    State(console): State<Shared<S, D>>,
    headers: HeaderMap,
) -> Response {
    if let Ok(Some(_)) = console.sessions.signed_in(&headers).await {
        return see_other("/console");
    }
    sign_in_form(&console, &headers, StatusCode::OK, None)
}

/// The sign-in page, keeping the browser's sign-in in progress (its CSRF token).
fn sign_in_form<S: SessionIndex + RecordStore, D>(
    console: &Console<S, D>,
    headers: &HeaderMap,
    status: StatusCode,
    problem: Option<&str>,
) -> Response {
    match session::start(
        session::pending(headers, console.sessions.secure),
        None,
        console.sessions.secure,
    ) {
        Ok((pending, cookie)) => with_cookies(
            html(
                status,
                pages::sign_in(&pending.csrf, console.oidc.is_some(), problem),
            ),
            [cookie],
        ),
        Err(error) => unavailable(error),
    }
}

async fn oidc_begin<S: SessionIndex + RecordStore, D>(
    State(console): State<Shared<S, D>>,
    headers: HeaderMap,
) -> Response {
    let Some(oidc) = &console.oidc else {
        return not_found().await;
    };
    // Until the OP is discovered, starting a sign-in asks it: as few at once as code exchanges.
    let Ok(_discovering) = console.exchanges.try_acquire() else {
        return sign_in_form(
            &console,
            &headers,
            StatusCode::SERVICE_UNAVAILABLE,
            Some("Too many sign-ins at once: try again in a moment."),
        );
    };
    let (pending, url) = match oidc.begin().await {
        Ok(begun) => begun,
        Err(error) => {
            return sign_in_form(
                &console,
                &headers,
                StatusCode::BAD_GATEWAY,
                Some(&error.to_string()),
            );
        }
    };
    match session::start(
        session::pending(&headers, console.sessions.secure),
        Some(pending),
        console.sessions.secure,
    ) {
        Ok((_, cookie)) => with_cookies(see_other(url.as_str()), [cookie]),
        Err(error) => unavailable(error),
    }
}

/// The OP's redirect arrives cross-site, without the `SameSite=Strict` cookie: hop to a
/// same-site page with the same answer, which the browser sends the cookie to.
async fn callback(uri: Uri) -> Response {
    let answer = query(&uri);
    let mut next = form_urlencoded::Serializer::new(String::new());
    for name in ["code", "state", "error"] {
        if let Some(value) = answer.get(name).filter(|v| v.len() <= 2048) {
            next.append_pair(name, value);
        }
    }
    html(
        StatusCode::OK,
        pages::hop(&format!("/console/callback/finish?{}", next.finish())),
    )
}

async fn oidc_finish<S: SessionIndex + RecordStore, D>(
    State(console): State<Shared<S, D>>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let Some(oidc) = &console.oidc else {
        return not_found().await;
    };
    let pending = session::pending(&headers, console.sessions.secure).and_then(|p| p.oidc);
    let Some(pending) = pending else {
        return sign_in_form(
            &console,
            &headers,
            StatusCode::BAD_REQUEST,
            Some(&sign_in::SignInError::NoSignIn.to_string()),
        );
    };
    let answer: Map<String, Value> = query(&uri)
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    // A few code exchanges at a time: each is a request to the OP with the client's secret.
    let Ok(_exchanging) = console.exchanges.try_acquire() else {
        return sign_in_form(
            &console,
            &headers,
            StatusCode::SERVICE_UNAVAILABLE,
            Some("Too many sign-ins at once: try again in a moment."),
        );
    };
    match oidc.finish(&pending, &answer).await {
        Ok(admin) => signed_in(&console, admin).await,
        Err(error) => {
            // Counted, with one aggregate line per interval: anyone may send junk callbacks.
            crate::telemetry::refused_unauthenticated("console", error.reason());
            let status = match error {
                sign_in::SignInError::NotAdmin => StatusCode::FORBIDDEN,
                _ => StatusCode::BAD_REQUEST,
            };
            sign_in_form(&console, &headers, status, Some(&error.to_string()))
        }
    }
}

async fn token_sign_in<S: SessionIndex + RecordStore, D>(
    State(console): State<Shared<S, D>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = fields(&body);
    let csrf_matches = session::pending(&headers, console.sessions.secure).is_some_and(|p| {
        form.get("csrf")
            .is_some_and(|c| crate::sys::secrets_equal(c.as_bytes(), p.csrf.as_bytes()))
    });
    if !csrf_matches {
        crate::telemetry::refused_unauthenticated("console", "csrf");
        return sign_in_form(
            &console,
            &headers,
            StatusCode::FORBIDDEN,
            Some("The sign-in form expired: try again."),
        );
    }
    let Some((fingerprint, scope)) = form.get("token").and_then(|t| console.tokens.find(t)) else {
        crate::telemetry::refused_unauthenticated("console", "wrong_token");
        return sign_in_form(
            &console,
            &headers,
            StatusCode::UNAUTHORIZED,
            Some("The token is not accepted."),
        );
    };
    let admin = Admin {
        name: format!("token:{fingerprint}"),
        display: format!("token:{fingerprint}"),
        token: Some(fingerprint),
        issuer: scope.the_issuer().map(str::to_owned),
        customer: scope.customer().map(str::to_owned),
    };
    signed_in(&console, admin).await
}

/// Sign `admin` in, and go to the search page.
async fn signed_in<S: SessionIndex + RecordStore, D>(
    console: &Console<S, D>,
    admin: Admin,
) -> Response {
    tracing::info!(target: crate::core::AUDIT_TARGET, input = "console", sender = ?admin.name, action = "sign_in", "console sign-in");
    match console.sessions.sign_in(admin).await {
        Ok(cookie) => with_cookies(
            see_other("/console"),
            [
                cookie,
                session::clear(session::PRE_COOKIE, console.sessions.secure),
            ],
        ),
        Err(error) => unavailable(error),
    }
}

async fn sign_out<S: SessionIndex + RecordStore, D>(
    State(console): State<Shared<S, D>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (id, _, _) = match signed_form(&console, &headers, &body).await {
        Ok(found) => found,
        Err(refused) => return refused,
    };
    if let Err(error) = console.sessions.sign_out(&id).await {
        return unavailable(error);
    }
    with_cookies(
        see_other("/console/sign-in"),
        [session::clear(session::COOKIE, console.sessions.secure)],
    )
}

async fn search<S: SessionIndex + RecordStore, D: UserDirectory>(
    State(console): State<Shared<S, D>>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let (_, signed) = match signed(&console, &headers, true).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let q = query(&uri).remove("q").unwrap_or_default();
    let q = q.trim();
    if q.is_empty() {
        return html(StatusCode::OK, pages::search(&chrome(&signed), "", None));
    }
    if q.chars().count() > MAX_QUERY_CHARS {
        return html(
            StatusCode::BAD_REQUEST,
            pages::problem(
                Some(&chrome(&signed)),
                "Search",
                "That is too long to be a user or a session.",
            ),
        );
    }
    match find(&console, &signed.admin.sender(), q).await {
        Ok(found) => html(
            StatusCode::OK,
            pages::search(&chrome(&signed), q, Some(&found)),
        ),
        Err(error) => unavailable(error),
    }
}

/// The users `q` names, as `sender` may see them: as a `sub` with live sessions, as a SCIM
/// `userName`, or as a session id.
async fn find<S: SessionIndex + RecordStore, D: UserDirectory>(
    console: &Console<S, D>,
    sender: &Sender,
    q: &str,
) -> Result<Vec<Match>, CoreError> {
    let visible = |issuer: &str| sender.scope().the_issuer().is_none_or(|own| own == issuer);
    let mut found: Vec<Match> = Vec::new();
    let mut add = |issuer: &str, sub: &str, by: String, sessions: usize| {
        if !found.iter().any(|m| m.issuer == issuer && m.sub == sub) {
            found.push(Match {
                issuer: issuer.to_owned(),
                sub: sub.to_owned(),
                by,
                sessions,
            });
        }
    };
    // What was typed is never logged (it may be a session id or an address): the lookups are
    // unlisted, and only the users found are, below.
    for issuer in console.issuers.iter().filter(|i| visible(i)) {
        let sessions = console.core.sessions_unlisted(sender, issuer, q).await?;
        if !sessions.is_empty() {
            add(issuer, q, "sub".into(), sessions.len());
        }
    }
    // A sender scoped to a customer looks only through that customer's SCIM clients.
    let own_clients = console.scim.iter().filter(|c| {
        visible(&c.issuer)
            && sender
                .scope()
                .customer()
                .is_none_or(|own| c.customer.as_deref() == Some(own))
    });
    for c in own_clients {
        let owner = Owner {
            issuer: &c.issuer,
            client: &c.client,
        };
        if let Some(user) = console.directory.find(owner, Lookup::UserName, q).await? {
            let sessions = console
                .core
                .sessions(sender, &c.issuer, &user.user.sub)
                .await?;
            let client = if c.client.is_empty() {
                "SCIM"
            } else {
                c.client.as_str()
            };
            add(
                &c.issuer,
                &user.user.sub,
                format!("userName at {client}"),
                sessions.len(),
            );
        }
    }
    if let Some((issuer, sub)) = console.core.session_owner(sender, q).await? {
        let sessions = console
            .core
            .sessions_unlisted(sender, &issuer, &sub)
            .await?;
        // A customer-scoped sender sees no session of another customer's user: no match.
        if !sessions.is_empty() {
            add(&issuer, &sub, "session id".into(), sessions.len());
        }
    }
    // Who looked at whom: the audit line of each user found.
    for m in &found {
        console.core.listed(sender, &m.issuer, &m.sub, m.sessions);
    }
    Ok(found)
}

/// The issuer and user a request names, when both are given and short enough.
fn named_user(fields: &HashMap<String, String>) -> Option<(String, String)> {
    let issuer = fields
        .get("issuer")
        .filter(|v| !v.is_empty() && v.len() <= 2048)?;
    let sub = fields
        .get("sub")
        .filter(|v| !v.is_empty() && v.len() <= 2048)?;
    Some((issuer.clone(), sub.clone()))
}

fn refused(signed: &Signed, error: &CoreError) -> Response {
    let (status, message) = match error {
        CoreError::OutOfScope => (
            StatusCode::FORBIDDEN,
            "That user is outside what you may see.",
        ),
        CoreError::UnknownIssuer => (StatusCode::NOT_FOUND, "That issuer is not configured."),
        CoreError::Invalid(_) => (StatusCode::BAD_REQUEST, "That request is not complete."),
        _ => return unavailable(error),
    };
    html(
        status,
        pages::problem(Some(&chrome(signed)), "Refused", message),
    )
}

async fn user<S: SessionIndex + RecordStore, D>(
    State(console): State<Shared<S, D>>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let (_, signed) = match signed(&console, &headers, true).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let fields = query(&uri);
    let Some((issuer, sub)) = named_user(&fields) else {
        return html(
            StatusCode::BAD_REQUEST,
            pages::problem(
                Some(&chrome(&signed)),
                "No user",
                "Name an issuer and a user.",
            ),
        );
    };
    let done = fields
        .get("done")
        .and_then(|d| done_message(d, fields.get("n")));
    match console
        .core
        .sessions(&signed.admin.sender(), &issuer, &sub)
        .await
    {
        Ok(sessions) => html(
            StatusCode::OK,
            pages::user(&chrome(&signed), &issuer, &sub, &sessions, done.as_deref()),
        ),
        Err(error) => refused(&signed, &error),
    }
}

/// What the user page says after an action (`done`, with the count `n` of ended sessions).
fn done_message(done: &str, n: Option<&String>) -> Option<String> {
    let n: usize = n.and_then(|n| n.parse().ok()).unwrap_or(0);
    let sessions = if n == 1 { "session" } else { "sessions" };
    Some(match done {
        "session" => format!("Ended {n} {sessions}."),
        "app" => format!("Ended {n} {sessions} in that application."),
        "revoke" => format!(
            "Revoked the user everywhere: ended {n} {sessions}; their access tokens are refused and their refresh tokens revoked."
        ),
        _ => return None,
    })
}

async fn act<S: SessionIndex + RecordStore, D>(
    State(console): State<Shared<S, D>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (_, signed, form) = match signed_form(&console, &headers, &body).await {
        Ok(found) => found,
        Err(refused) => return refused,
    };
    let Some((issuer, sub)) = named_user(&form) else {
        return html(
            StatusCode::BAD_REQUEST,
            pages::problem(
                Some(&chrome(&signed)),
                "No user",
                "Name an issuer and a user.",
            ),
        );
    };
    let sender = signed.admin.sender();
    let back = format!(
        "/console/user?{}",
        form_urlencoded::Serializer::new(String::new())
            .append_pair("issuer", &issuer)
            .append_pair("sub", &sub)
            .finish()
    );
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or_default();
    let (action, what, done, fields) = match field("action") {
        "end-session" => {
            let handle = field("session");
            let sessions = match console.core.sessions(&sender, &issuer, &sub).await {
                Ok(sessions) => sessions,
                Err(error) => return refused(&signed, &error),
            };
            let Some(session) = sessions
                .iter()
                .find(|s| !handle.is_empty() && pages::handle(&s.session_id) == handle)
            else {
                return html(
                    StatusCode::NOT_FOUND,
                    pages::problem(
                        Some(&chrome(&signed)),
                        "Gone",
                        "That session is not live any more.",
                    ),
                );
            };
            (
                Action::EndSession {
                    issuer: issuer.clone(),
                    session_id: session.session_id.clone(),
                    sub: Some(sub.clone()),
                },
                format!(
                    "End session {handle} of {sub}? Its application logs the user out at their next request."
                ),
                "session",
                vec![("action", "end-session"), ("session", handle)],
            )
        }
        "end-app" => {
            let client = field("client");
            if client.is_empty() || client.len() > 256 {
                return html(
                    StatusCode::BAD_REQUEST,
                    pages::problem(
                        Some(&chrome(&signed)),
                        "No application",
                        "Name an application.",
                    ),
                );
            }
            (
                Action::EndUserSessions {
                    issuer: issuer.clone(),
                    sub: sub.clone(),
                    clients: Some(vec![client.to_owned()]),
                },
                format!("End every session of {sub} in {client}?"),
                "app",
                vec![("action", "end-app"), ("client", client)],
            )
        }
        "revoke" => (
            Action::RevokeUser {
                issuer: issuer.clone(),
                sub: sub.clone(),
            },
            format!(
                "Revoke {sub} everywhere? Every session ends, their access tokens are refused by \
                 the APIs and their refresh tokens are revoked at the OP."
            ),
            "revoke",
            vec![("action", "revoke")],
        ),
        _ => {
            return html(
                StatusCode::BAD_REQUEST,
                pages::problem(
                    Some(&chrome(&signed)),
                    "Unknown action",
                    "That is not something the console does.",
                ),
            );
        }
    };
    if field("confirmed") != "yes" {
        let mut all = vec![("issuer", issuer.as_str()), ("sub", sub.as_str())];
        all.extend(fields);
        return html(
            StatusCode::OK,
            pages::confirm(&chrome(&signed), &what, &all, &back),
        );
    }
    match console.core.apply(Event::new(sender, vec![action])).await {
        Ok(Outcome::Applied(done_list)) if done_list.iter().any(|d| d.out_of_scope) => {
            refused(&signed, &CoreError::OutOfScope)
        }
        Ok(outcome) => see_other(&format!("{back}&done={done}&n={}", outcome.ended())),
        Err(error) => refused(&signed, &error),
    }
}

async fn activity<S: SessionIndex + RecordStore, D>(
    State(console): State<Shared<S, D>>,
    headers: HeaderMap,
) -> Response {
    let (_, signed) = match signed(&console, &headers, true).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    match console
        .core
        .activity(&signed.admin.sender(), ACTIVITY_SHOWN)
        .await
    {
        Ok(entries) => html(StatusCode::OK, pages::activity(&chrome(&signed), &entries)),
        Err(error) => unavailable(error),
    }
}

/// The console on the admin listener, when admin tokens or an OIDC sign-in are configured.
pub(crate) fn mount<S, D>(m: &super::Mount<'_, S, D>) -> Option<super::Mounted>
where
    S: SessionIndex + RecordStore,
    D: UserDirectory,
{
    let settings = &m.settings.inputs.console;
    let tokens = &m.settings.inputs.admin;
    if tokens.is_empty() && settings.oidc.is_none() {
        return None;
    }
    let scoped = tokens.iter().map(|t| (&t.token, t.scope())).collect();
    let parts = Parts {
        core: m.core.clone(),
        directory: m.directory.clone(),
        http: m.http.clone(),
        settings,
        tokens: scoped,
        scim: m
            .settings
            .inputs
            .scim
            .iter()
            .map(|c| ScimOwner {
                issuer: c.issuer.clone(),
                client: c.name.clone(),
                customer: c.customer.clone(),
            })
            .collect(),
        issuers: m
            .issuers
            .iter()
            .map(|(p, _)| p.issuer().to_owned())
            .collect(),
    };
    Some(super::Mounted {
        router: router(parts),
        place: super::Place::Admin,
        health: None,
    })
}
