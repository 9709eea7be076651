//! SCIM 2.0 deprovisioning (RFC 7643, RFC 7644): the `/scim/v2` endpoint Microsoft Entra ID and
//! Okta provisioning talk to. It keeps a minimal record of each user the client creates (SCIM
//! id, `userName`, `externalId`, `active`, and the OIDC `sub` it maps to) and turns
//! deactivation and deletion into the core's "revoke the user": every session ended, the
//! denylist marker written, refresh tokens revoked. Reactivation lets new logins live.
//!
//! Each client has its own bearer tokens and is scoped to one issuer (one customer), with the
//! attribute mapped to `sub` (default `externalId`). The token is checked before the body is
//! read; bodies are at most [`MAX_BODY_BYTES`]. Errors are SCIM error messages and never echo
//! the request.
//!
//! Supported: `POST /Users`, `GET /Users/{id}`, `GET /Users?filter=userName eq "…"` (or
//! `externalId`, `id`), `PUT` and `PATCH /Users/{id}` (both PATCH forms, Entra ID's string
//! booleans), `DELETE /Users/{id}`, and `ServiceProviderConfig`, `ResourceTypes`, `Schemas`.
//! `GET /Users` without a filter lists every user, 100 at most per page. Not supported: groups,
//! other filters, sorting, bulk, ETags.

mod patch;
mod path;
mod resources;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use headers::authorization::Bearer;
use headers::{Authorization, HeaderMapExt as _};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Map, Value};

use self::patch::{Draft, Invalid};
use crate::core::{Core, CoreError};
use crate::index::{
    Lookup, RecordStore, ScimUser, SessionIndex, StoreError, UserDirectory, Written, directory,
};
use crate::inputs::bearer::BearerTokens;
use crate::sys::{random_id, unix_now};

/// Where the endpoint is mounted.
pub const PREFIX: &str = "/scim/v2";

/// The largest request body read, in bytes (a user resource is a few hundred bytes).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The attribute mapped to `sub` unless configured.
pub const DEFAULT_SUB_ATTRIBUTE: &str = "externalId";

/// A provisioning client: its bearer tokens, the issuer whose users it manages, and which
/// attribute of its users is their OIDC `sub`.
#[derive(Clone)]
#[non_exhaustive]
pub struct ScimClient {
    /// Bearer tokens (32 characters or more).
    pub tokens: Vec<SecretString>,
    /// The issuer whose sessions its users' `sub`s name.
    pub issuer: String,
    /// The attribute path mapped to `sub`: `externalId` (default), `userName`, or any path
    /// (`emails[type eq "work"].value`, an enterprise-extension attribute).
    pub sub_attribute: String,
}

impl std::fmt::Debug for ScimClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScimClient")
            .field("issuer", &self.issuer)
            .field("sub_attribute", &self.sub_attribute)
            .finish_non_exhaustive()
    }
}

impl ScimClient {
    /// A client for `issuer` with these tokens, `sub` from `externalId`.
    pub fn new(issuer: impl Into<String>, tokens: Vec<SecretString>) -> Self {
        Self {
            tokens,
            issuer: issuer.into(),
            sub_attribute: DEFAULT_SUB_ATTRIBUTE.into(),
        }
    }

    /// Map this attribute path to `sub`.
    #[must_use]
    pub fn with_sub_attribute(mut self, path: impl Into<String>) -> Self {
        self.sub_attribute = path.into();
        self
    }
}

/// Who is calling: the client a token belongs to, and the token's fingerprint for audit lines.
#[derive(Clone)]
struct Caller {
    client: Arc<ScimClient>,
    fingerprint: String,
}

struct Scim<S, D> {
    core: Core<S>,
    directory: D,
}

/// The SCIM router (paths under [`PREFIX`]) for `clients`, ending sessions through `core` and
/// keeping users in `directory` (the same Redis, or [`MemoryDirectory`](crate::index::MemoryDirectory)).
pub fn router<S, D>(core: Core<S>, directory: D, clients: &[ScimClient]) -> Router
where
    S: SessionIndex + RecordStore,
    D: UserDirectory,
{
    let clients: Vec<Arc<ScimClient>> = clients.iter().cloned().map(Arc::new).collect();
    let tokens =
        Arc::new(BearerTokens::new(clients.iter().flat_map(|client| {
            client.tokens.iter().map(|t| (t, Arc::clone(client)))
        })));
    let routes = Router::new()
        .route(
            &format!("{PREFIX}/Users"),
            get(list::<S, D>).post(create::<S, D>),
        )
        .route(
            &format!("{PREFIX}/Users/{{id}}"),
            get(read::<S, D>)
                .put(replace::<S, D>)
                .patch(patch::<S, D>)
                .delete(delete::<S, D>),
        )
        .route(
            &format!("{PREFIX}/ServiceProviderConfig"),
            get(|| async { scim_json(StatusCode::OK, &resources::service_provider_config()) }),
        )
        .route(
            &format!("{PREFIX}/ResourceTypes"),
            get(|| async { scim_json(StatusCode::OK, &resources::resource_types()) }),
        )
        .route(
            &format!("{PREFIX}/ResourceTypes/User"),
            get(|| async { scim_json(StatusCode::OK, &resources::user_resource_type()) }),
        )
        .route(
            &format!("{PREFIX}/Schemas"),
            get(|| async { scim_json(StatusCode::OK, &resources::schemas()) }),
        )
        .route(
            &format!("{PREFIX}/Schemas/{{id}}"),
            get(|Path(id): Path<String>| async move {
                match resources::schema(&id) {
                    Some(schema) => scim_json(StatusCode::OK, &schema),
                    None => scim_error(StatusCode::NOT_FOUND, None, "no such schema"),
                }
            }),
        )
        .with_state(Arc::new(Scim { core, directory }))
        // Inside the body limit, outside the handlers: no body is read before this passes.
        .route_layer(axum::middleware::from_fn_with_state(tokens, authenticate));
    crate::response::protect_scim(routes, MAX_BODY_BYTES)
}

async fn authenticate(
    State(tokens): State<Arc<BearerTokens<Arc<ScimClient>>>>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(Authorization(bearer)) = request.headers().typed_get::<Authorization<Bearer>>() else {
        return unauthorized();
    };
    let Some((fingerprint, client)) = tokens.find(bearer.token()) else {
        tracing::warn!(target: "oidc_logout::audit", "SCIM request with a wrong token refused");
        return unauthorized();
    };
    request.extensions_mut().insert(Caller {
        client,
        fingerprint,
    });
    next.run(request).await
}

fn unauthorized() -> Response {
    let mut response = scim_error(
        StatusCode::UNAUTHORIZED,
        None,
        "a bearer token of a configured SCIM client is required",
    );
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// A SCIM JSON response.
fn scim_json(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/scim+json")],
        body.to_string(),
    )
        .into_response()
}

/// A SCIM error message (RFC 7644 §3.12).
pub(crate) fn scim_error(status: StatusCode, scim_type: Option<&str>, detail: &str) -> Response {
    let mut body = Map::new();
    body.insert(
        "schemas".into(),
        Value::from(vec!["urn:ietf:params:scim:api:messages:2.0:Error"]),
    );
    body.insert("status".into(), status.as_u16().to_string().into());
    if let Some(scim_type) = scim_type {
        body.insert("scimType".into(), scim_type.into());
    }
    body.insert("detail".into(), detail.into());
    scim_json(status, &Value::Object(body))
}

fn refused(invalid: &Invalid) -> Response {
    scim_error(
        StatusCode::BAD_REQUEST,
        Some(invalid.scim_type),
        invalid.detail,
    )
}

fn store_failed(error: &StoreError) -> Response {
    tracing::error!(%error, "SCIM request failed: session store unavailable");
    scim_error(
        StatusCode::SERVICE_UNAVAILABLE,
        None,
        "the session store is unavailable; retry",
    )
}

fn core_failed(error: &CoreError) -> Response {
    match error {
        CoreError::Unavailable(store) => store_failed(store),
        other => {
            tracing::error!(error = %other, "SCIM request failed");
            scim_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                None,
                "the client's issuer is not configured here",
            )
        }
    }
}

fn not_found() -> Response {
    scim_error(StatusCode::NOT_FOUND, None, "no such user")
}

fn taken() -> Response {
    scim_error(
        StatusCode::CONFLICT,
        Some("uniqueness"),
        "another user has this userName or externalId",
    )
}

/// A JSON object body.
fn object(bytes: &[u8]) -> Option<Value> {
    serde_json::from_slice::<Value>(bytes)
        .ok()
        .filter(Value::is_object)
}

fn not_an_object() -> Response {
    scim_error(
        StatusCode::BAD_REQUEST,
        Some("invalidSyntax"),
        "the body must be a JSON object",
    )
}

/// The kept attributes of a full User resource (POST; PUT with the user it replaces, whose
/// `externalId` and `sub` stay when the resource omits them, as Okta's PUT does).
fn draft_of(
    resource: &Value,
    sub_attribute: &str,
    was: Option<&ScimUser>,
) -> Result<Draft, Invalid> {
    let invalid = |detail| Invalid {
        scim_type: "invalidValue",
        detail,
    };
    let object = resource
        .as_object()
        .ok_or(invalid("the body must be a User"))?;
    let text = |name: &str| path::member(object, name).and_then(Value::as_str);
    let user_name = text("userName")
        .filter(|n| !n.is_empty())
        .ok_or(invalid("userName is required"))?
        .to_owned();
    let external_id = match path::member(object, "externalId") {
        None | Some(Value::Null) => was.and_then(|u| u.external_id.clone()),
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(_) => return Err(invalid("externalId must be a non-empty string")),
    };
    let active = match path::member(object, "active") {
        // A PUT that leaves `active` out does not reactivate (or deactivate) the user.
        None | Some(Value::Null) => was.is_none_or(|u| u.active),
        Some(value) => patch::boolean(value).ok_or(invalid("active must be true or false"))?,
    };
    let sub = match path::value_at(object, sub_attribute) {
        Some(Value::String(sub)) if !sub.is_empty() => sub.clone(),
        None | Some(Value::Null) if was.is_some() => was.map(|u| u.sub.clone()).unwrap_or_default(),
        _ => {
            return Err(invalid(
                "the attribute mapped to the user's OIDC sub is missing or not a string",
            ));
        }
    };
    Ok(Draft {
        user_name,
        external_id,
        active,
        sub,
    })
}

/// Revoke the user (sessions, denylist marker, refresh tokens): before the record is written,
/// so that a failure leaves the record as it was and the client's retry revokes again.
async fn revoke<S: SessionIndex + RecordStore, D>(
    scim: &Scim<S, D>,
    caller: &Caller,
    sub: &str,
    id: &str,
) -> Result<(), CoreError> {
    let ended = scim.core.revoke_user(&caller.client.issuer, sub).await?;
    tracing::info!(target: "oidc_logout::audit", token = %caller.fingerprint, action = "revoke_user", issuer = ?caller.client.issuer, scim_id = ?id, ended = ended.len(), "SCIM deprovisioning");
    Ok(())
}

/// The most users one page lists.
const MAX_PAGE: usize = 100;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListQuery {
    filter: Option<String>,
    start_index: Option<String>,
    count: Option<String>,
}

/// A page of every user (`startIndex` from 1, `count` at most 100; RFC 7644 §3.4.2.4).
async fn page<D: UserDirectory>(directory: &D, issuer: &str, query: &ListQuery) -> Response {
    // RFC 7644 §3.4.2.4: a startIndex below 1 means 1, a negative count means 0.
    let number = |value: &Option<String>, default: usize| match value {
        None => Some(default),
        Some(v) => v
            .trim()
            .parse::<i64>()
            .ok()
            .map(|n| usize::try_from(n.max(0)).unwrap_or(usize::MAX)),
    };
    let (Some(start), Some(count)) = (
        number(&query.start_index, 1),
        number(&query.count, MAX_PAGE),
    ) else {
        return scim_error(
            StatusCode::BAD_REQUEST,
            Some("invalidValue"),
            "startIndex and count must be integers",
        );
    };
    let start = start.max(1);
    match directory.page(issuer, start - 1, count.min(MAX_PAGE)).await {
        Ok((total, users)) => scim_json(
            StatusCode::OK,
            &resources::page(users.iter().map(resources::user).collect(), total, start),
        ),
        Err(error) => store_failed(&error),
    }
}

async fn list<S: SessionIndex + RecordStore, D: UserDirectory>(
    State(scim): State<Arc<Scim<S, D>>>,
    axum::Extension(caller): axum::Extension<Caller>,
    Query(query): Query<ListQuery>,
) -> Response {
    let Some(filter) = &query.filter else {
        return page(&scim.directory, &caller.client.issuer, &query).await;
    };
    let equals = match path::parse_filter(filter) {
        Ok(equals) => equals,
        Err(why) => return scim_error(StatusCode::BAD_REQUEST, Some("invalidFilter"), why),
    };
    let Some(value) = equals.value.as_str() else {
        return scim_json(StatusCode::OK, &resources::list(Vec::new()));
    };
    let issuer = &caller.client.issuer;
    let found = if path::names(&equals.attribute, "userName") {
        scim.directory.find(issuer, Lookup::UserName, value).await
    } else if path::names(&equals.attribute, "externalId") {
        scim.directory.find(issuer, Lookup::ExternalId, value).await
    } else if path::names(&equals.attribute, "id") {
        scim.directory.user(issuer, value).await
    } else {
        return scim_error(
            StatusCode::BAD_REQUEST,
            Some("invalidFilter"),
            "users can be filtered by userName, externalId or id",
        );
    };
    match found {
        Ok(user) => scim_json(
            StatusCode::OK,
            &resources::list(user.iter().map(resources::user).collect()),
        ),
        Err(error) => store_failed(&error),
    }
}

async fn read<S: SessionIndex + RecordStore, D: UserDirectory>(
    State(scim): State<Arc<Scim<S, D>>>,
    axum::Extension(caller): axum::Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    match scim.directory.user(&caller.client.issuer, &id).await {
        Ok(Some(user)) => scim_json(StatusCode::OK, &resources::user(&user)),
        Ok(None) => not_found(),
        Err(error) => store_failed(&error),
    }
}

async fn create<S: SessionIndex + RecordStore, D: UserDirectory>(
    State(scim): State<Arc<Scim<S, D>>>,
    axum::Extension(caller): axum::Extension<Caller>,
    bytes: Bytes,
) -> Response {
    let Some(resource) = object(&bytes) else {
        return not_an_object();
    };
    let draft = match draft_of(&resource, &caller.client.sub_attribute, None) {
        Ok(draft) => draft,
        Err(invalid) => return refused(&invalid),
    };
    let issuer = &caller.client.issuer;
    // A clash is refused before anything happens.
    for (by, value) in [
        (Lookup::UserName, Some(draft.user_name.as_str())),
        (Lookup::ExternalId, draft.external_id.as_deref()),
    ] {
        let Some(value) = value else { continue };
        match scim.directory.find(issuer, by, value).await {
            Ok(Some(_)) => return taken(),
            Ok(None) => {}
            Err(error) => return store_failed(&error),
        }
    }
    let Ok(id) = random_id(16) else {
        return scim_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            None,
            "no randomness for an id",
        );
    };
    // Created inactive: whatever sessions the user has are ended.
    if !draft.active
        && let Err(error) = revoke(&scim, &caller, &draft.sub, &id).await
    {
        return core_failed(&error);
    }
    let user = ScimUser::new(
        id,
        draft.user_name,
        draft.external_id,
        draft.active,
        draft.sub,
        unix_now(),
    );
    match scim.directory.create(issuer, &user).await {
        Ok(Written::Done) => {
            tracing::info!(target: "oidc_logout::audit", token = %caller.fingerprint, action = "create_user", issuer = ?issuer, scim_id = ?user.id, active = user.active, "SCIM provisioning");
            let mut response = scim_json(StatusCode::CREATED, &resources::user(&user));
            if let Ok(location) = HeaderValue::from_str(&resources::location(&user.id)) {
                response.headers_mut().insert(header::LOCATION, location);
            }
            response
        }
        Ok(_) => taken(),
        Err(error) => store_failed(&error),
    }
}

/// Write a changed user. A `userName` or `externalId` another user holds is refused before
/// anything happens; then every `sub` the change takes access from is revoked (the user's when
/// it is deactivated; the old one when the mapped attribute changed, as the record no longer
/// names it; the new one when the user stays inactive), and last the record is written.
async fn change<S: SessionIndex + RecordStore, D: UserDirectory>(
    scim: &Scim<S, D>,
    caller: &Caller,
    was: ScimUser,
    draft: Draft,
    action: &'static str,
) -> Response {
    let issuer = &caller.client.issuer;
    let renamed = directory::folded(&draft.user_name) != directory::folded(&was.user_name);
    let reidentified = draft.external_id.is_some() && draft.external_id != was.external_id;
    for (changed, by, value) in [
        (renamed, Lookup::UserName, Some(draft.user_name.as_str())),
        (
            reidentified,
            Lookup::ExternalId,
            draft.external_id.as_deref(),
        ),
    ] {
        let Some(value) = value.filter(|_| changed) else {
            continue;
        };
        match scim.directory.find(issuer, by, value).await {
            Ok(Some(other)) if other.id != was.id => return taken(),
            Ok(_) => {}
            Err(error) => return store_failed(&error),
        }
    }
    let mut to_revoke: Vec<&str> = Vec::new();
    if (was.active && !draft.active) || draft.sub != was.sub {
        to_revoke.push(&was.sub);
    }
    if !draft.active && draft.sub != was.sub {
        to_revoke.push(&draft.sub);
    }
    for sub in to_revoke {
        if let Err(error) = revoke(scim, caller, sub, &was.id).await {
            return core_failed(&error);
        }
    }
    let user = ScimUser {
        user_name: draft.user_name,
        external_id: draft.external_id,
        active: draft.active,
        sub: draft.sub,
        modified: unix_now(),
        ..was
    };
    match scim.directory.replace(issuer, &user).await {
        Ok(Written::Done) => {
            tracing::info!(target: "oidc_logout::audit", token = %caller.fingerprint, action, issuer = ?issuer, scim_id = ?user.id, active = user.active, "SCIM provisioning");
            scim_json(StatusCode::OK, &resources::user(&user))
        }
        Ok(Written::Taken) => taken(),
        Ok(_) => not_found(),
        Err(error) => store_failed(&error),
    }
}

async fn replace<S: SessionIndex + RecordStore, D: UserDirectory>(
    State(scim): State<Arc<Scim<S, D>>>,
    axum::Extension(caller): axum::Extension<Caller>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Response {
    let Some(resource) = object(&bytes) else {
        return not_an_object();
    };
    let was = match scim.directory.user(&caller.client.issuer, &id).await {
        Ok(Some(was)) => was,
        Ok(None) => return not_found(),
        Err(error) => return store_failed(&error),
    };
    let draft = match draft_of(&resource, &caller.client.sub_attribute, Some(&was)) {
        Ok(draft) => draft,
        Err(invalid) => return refused(&invalid),
    };
    change(&scim, &caller, was, draft, "replace_user").await
}

async fn patch<S: SessionIndex + RecordStore, D: UserDirectory>(
    State(scim): State<Arc<Scim<S, D>>>,
    axum::Extension(caller): axum::Extension<Caller>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Response {
    let Some(message) = object(&bytes) else {
        return not_an_object();
    };
    let was = match scim.directory.user(&caller.client.issuer, &id).await {
        Ok(Some(was)) => was,
        Ok(None) => return not_found(),
        Err(error) => return store_failed(&error),
    };
    let mut draft = Draft {
        user_name: was.user_name.clone(),
        external_id: was.external_id.clone(),
        active: was.active,
        sub: was.sub.clone(),
    };
    if let Err(invalid) = patch::apply(&message, &mut draft, &caller.client.sub_attribute) {
        return refused(&invalid);
    }
    change(&scim, &caller, was, draft, "patch_user").await
}

async fn delete<S: SessionIndex + RecordStore, D: UserDirectory>(
    State(scim): State<Arc<Scim<S, D>>>,
    axum::Extension(caller): axum::Extension<Caller>,
    Path(id): Path<String>,
) -> Response {
    let issuer = &caller.client.issuer;
    let was = match scim.directory.user(issuer, &id).await {
        Ok(Some(was)) => was,
        Ok(None) => return not_found(),
        Err(error) => return store_failed(&error),
    };
    if let Err(error) = revoke(&scim, &caller, &was.sub, &id).await {
        return core_failed(&error);
    }
    match scim.directory.delete(issuer, &id).await {
        Ok(_) => {
            tracing::info!(target: "oidc_logout::audit", token = %caller.fingerprint, action = "delete_user", issuer = ?issuer, scim_id = ?id, "SCIM deprovisioning");
            StatusCode::NO_CONTENT.into_response()
        }
        Err(error) => store_failed(&error),
    }
}

/// Every parser of this endpoint on one input, for the fuzz target (`crate::fuzz::scim`).
#[cfg(feature = "__fuzz")]
pub(crate) fn fuzz_parse(filter: &str, body: &[u8]) {
    let _ = path::parse_filter(filter);
    if let Ok(value) = serde_json::from_slice::<Value>(body) {
        if let Some(object) = value.as_object() {
            let _ = path::value_at(object, filter);
        }
        let _ = draft_of(&value, filter, None);
        let mut draft = Draft {
            user_name: "u".into(),
            external_id: None,
            active: true,
            sub: "s".into(),
        };
        let _ = patch::apply(&value, &mut draft, filter);
    }
}
