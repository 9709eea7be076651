//! SCIM 2.0 deprovisioning (RFC 7643, RFC 7644): the `/scim/v2` endpoint Microsoft Entra ID and
//! Okta provisioning talk to. It keeps a minimal record of each user the client creates (SCIM
//! id, `userName`, `externalId`, `active`, and the OIDC `sub` it maps to) and turns
//! deactivation and deletion into the core's "revoke the user": every session ended, the
//! denylist marker written, refresh tokens revoked. Reactivation lets new logins live.
//!
//! Each client has its own bearer tokens (checked before the body is read) and is a sender of
//! its own, scoped to one issuer and, when configured, one customer: it sees and changes only
//! the users it provisioned (another client's user is a 404, absent from lists and filters),
//! may not provision a user whose `sub` another client's user has (409, before anything is
//! revoked), and reaches through the core only the sessions of its customer's users. Each write
//! is checked and done in one atomic step, then the `sub`s it takes access from are revoked
//! (see [`ScimUser::revoke_pending`](crate::index::ScimUser::revoke_pending)); a change names
//! the record it read, so concurrent requests are applied one after the other, never undone.
//!
//! Supported: `POST /Users`, `GET /Users/{id}`, `GET /Users` (all, 100 at most per page, or
//! `filter=userName eq "…"`, `externalId`, `id`), `POST /Users/.search` (RFC 7644 §3.4.3),
//! `PUT` and `PATCH /Users/{id}` (both PATCH forms, Entra ID's capitalised ops and string
//! booleans; `remove` of `active` deactivates), `DELETE /Users/{id}`, `attributes` and
//! `excludedAttributes` on every answer holding users, and `ServiceProviderConfig`,
//! `ResourceTypes`, `Schemas`. Every error, unknown paths and methods included, is a SCIM error
//! message that never echoes the request. Not supported: groups, other filters, sorting, bulk,
//! ETags.

#[cfg(feature = "server")]
#[doc(hidden)]
pub mod config;
mod patch;
mod path;
mod resources;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, any, get, post};
use headers::authorization::Bearer;
use headers::{Authorization, HeaderMapExt as _};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::Value;

use self::patch::{Draft, invalid};
use self::resources::Projection;
use crate::core::{Action, Core, Event, Scope, Sender};
use crate::index::{
    Found, Lookup, Owner, RecordStore, ScimUser, SessionIndex, UserDirectory, Written,
};
use crate::inputs::bearer::BearerTokens;
use crate::response::{self, Protocol, Refusal};
use crate::sys::{random_id, unix_now};

/// Where the endpoint is mounted.
#[doc(hidden)]
pub const PREFIX: &str = "/scim/v2";

/// The largest request body read, in bytes (a user resource is a few hundred bytes).
#[doc(hidden)]
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The attribute mapped to `sub` unless configured.
#[doc(hidden)]
pub const DEFAULT_SUB_ATTRIBUTE: &str = "externalId";

/// How many times a change is tried again when the user changed between its read and its
/// write (concurrent requests on one user).
const ATTEMPTS: usize = 16;

/// A provisioning client: its bearer tokens, the issuer (and optionally the customer) whose
/// users it manages, its name among that issuer's clients, and which attribute of its users is
/// their OIDC `sub`.
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
    /// Only the users of this customer (as the applications' logins recorded it), when set.
    pub customer: Option<String>,
    /// Its name among the issuer's clients: its users are kept under it (`""`, the default, for
    /// an issuer with one client).
    pub name: String,
}

impl std::fmt::Debug for ScimClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScimClient")
            .field("issuer", &self.issuer)
            .field("sub_attribute", &self.sub_attribute)
            .field("customer", &self.customer)
            .field("name", &self.name)
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
            customer: None,
            name: String::new(),
        }
    }

    /// Map this attribute path to `sub`.
    #[must_use]
    pub fn with_sub_attribute(mut self, path: impl Into<String>) -> Self {
        self.sub_attribute = path.into();
        self
    }

    /// Keep its users under `name` (each client of one issuer needs its own).
    #[must_use]
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Reach only the users of `customer`.
    #[must_use]
    pub fn with_customer(mut self, customer: Option<String>) -> Self {
        self.customer = customer;
        self
    }
}

/// Who is calling: the client a token belongs to.
#[derive(Clone)]
struct Caller {
    client: Arc<ScimClient>,
}

impl Caller {
    /// Whose users it sees.
    fn owner(&self) -> Owner<'_> {
        Owner {
            issuer: &self.client.issuer,
            client: &self.client.name,
        }
    }

    /// The sender the core sees.
    fn sender(&self) -> Sender {
        let name = if self.client.name.is_empty() {
            "(default)"
        } else {
            &self.client.name
        };
        Sender::new(
            "scim",
            name,
            Scope::issuer(self.client.issuer.clone()).with_customer(self.client.customer.clone()),
        )
    }
}

struct Scim<S, D> {
    core: Core<S>,
    directory: D,
}

/// A refusal, answered as a SCIM error.
struct ScimError(Refusal);

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        self.0.render(Protocol::Scim)
    }
}

impl<E: Into<Refusal>> From<E> for ScimError {
    fn from(error: E) -> Self {
        Self(error.into())
    }
}

/// A handler's answer: a response, or a refusal rendered as a SCIM error.
type Answer = Result<Response, ScimError>;

fn scim<S, D>(handler: impl Into<MethodRouter<Arc<Scim<S, D>>>>) -> MethodRouter<Arc<Scim<S, D>>>
where
    S: SessionIndex + RecordStore,
    D: UserDirectory,
{
    handler.into().fallback(|| async {
        Refusal::new(
            StatusCode::METHOD_NOT_ALLOWED,
            None,
            "this method is not supported here",
        )
        .render(Protocol::Scim)
    })
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
    let document =
        |body: fn() -> Value| get(move || async move { scim_json(StatusCode::OK, &body()) });
    let routes = Router::new()
        .route(
            &format!("{PREFIX}/Users"),
            scim(get(list::<S, D>).post(create::<S, D>)),
        )
        .route(
            &format!("{PREFIX}/Users/.search"),
            scim(post(search::<S, D>)),
        )
        .route(
            &format!("{PREFIX}/Users/{{id}}"),
            scim(
                get(read::<S, D>)
                    .put(replace::<S, D>)
                    .patch(change::<S, D>)
                    .delete(delete::<S, D>),
            ),
        )
        .route(
            &format!("{PREFIX}/ServiceProviderConfig"),
            scim(document(resources::service_provider_config)),
        )
        .route(
            &format!("{PREFIX}/ResourceTypes"),
            scim(document(resources::resource_types)),
        )
        .route(
            &format!("{PREFIX}/ResourceTypes/{{id}}"),
            scim(get(|Path(id): Path<String>| async move {
                if id == "User" {
                    scim_json(StatusCode::OK, &resources::user_resource_type())
                } else {
                    not_found("no such resource type").render(Protocol::Scim)
                }
            })),
        )
        .route(
            &format!("{PREFIX}/Schemas"),
            scim(document(resources::schemas)),
        )
        .route(
            &format!("{PREFIX}/Schemas/{{id}}"),
            scim(get(|Path(id): Path<String>| async move {
                match resources::schema(&id) {
                    Some(schema) => scim_json(StatusCode::OK, &schema),
                    None => not_found("no such schema").render(Protocol::Scim),
                }
            })),
        )
        // Every other path under the prefix (other resource types, `/Groups`, typos): a SCIM
        // 404, after the token like everything else.
        .route(PREFIX, any(unknown))
        .route(&format!("{PREFIX}/"), any(unknown))
        .route(&format!("{PREFIX}/{{*rest}}"), any(unknown))
        .with_state(Arc::new(Scim { core, directory }))
        // Inside the body limit, outside the handlers: no body is read before this passes.
        .route_layer(axum::middleware::from_fn_with_state(tokens, authenticate));
    response::protect(routes, MAX_BODY_BYTES, Protocol::Scim)
}

async fn unknown() -> Response {
    not_found("no such resource or endpoint").render(Protocol::Scim)
}

async fn authenticate(
    State(tokens): State<Arc<BearerTokens<Arc<ScimClient>>>>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(Authorization(bearer)) = request.headers().typed_get::<Authorization<Bearer>>() else {
        return unauthorized();
    };
    let Some((_, client)) = tokens.find(bearer.token()) else {
        crate::telemetry::refused_unauthenticated("scim", "wrong_token");
        return unauthorized();
    };
    request.extensions_mut().insert(Caller { client });
    next.run(request).await
}

fn unauthorized() -> Response {
    Refusal::unauthenticated(
        None,
        "a bearer token of a configured SCIM client is required",
        true,
    )
    .render(Protocol::Scim)
}

/// A SCIM JSON response.
fn scim_json(status: StatusCode, body: &Value) -> Response {
    response::typed_json(status, "application/scim+json", body)
}

fn not_found(detail: &'static str) -> Refusal {
    Refusal::new(StatusCode::NOT_FOUND, None, detail)
}

fn no_such_user() -> Refusal {
    not_found("no such user")
}

fn taken() -> Refusal {
    Refusal::new(
        StatusCode::CONFLICT,
        Some("uniqueness"),
        "another user has this userName or externalId",
    )
}

fn claimed() -> Refusal {
    Refusal::new(
        StatusCode::CONFLICT,
        Some("uniqueness"),
        "the attribute mapped to the user's sub names a user another client provisioned",
    )
}

fn busy() -> Refusal {
    Refusal::unavailable("the user is being changed by other requests; retry")
}

/// A JSON object body.
fn object(bytes: &[u8]) -> Result<Value, Refusal> {
    serde_json::from_slice::<Value>(bytes)
        .ok()
        .filter(Value::is_object)
        .ok_or_else(|| invalid("invalidSyntax", "the body must be a JSON object"))
}

/// The kept attributes of a full User resource (POST; PUT with the user it replaces, whose
/// `externalId`, `sub` and `active` stay when the resource omits them, as Okta's PUT does).
fn draft_of(
    resource: &Value,
    sub_attribute: &str,
    was: Option<&ScimUser>,
) -> Result<Draft, Refusal> {
    let object = resource
        .as_object()
        .ok_or(invalid("invalidValue", "the body must be a User"))?;
    let text = |name: &str| path::member(object, name).and_then(Value::as_str);
    let user_name = text("userName")
        .filter(|n| !n.is_empty())
        .ok_or(invalid("invalidValue", "userName is required"))?
        .to_owned();
    let external_id = match path::member(object, "externalId") {
        None | Some(Value::Null) => was.and_then(|u| u.external_id.clone()),
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(_) => {
            return Err(invalid(
                "invalidValue",
                "externalId must be a non-empty string",
            ));
        }
    };
    let active = match path::member(object, "active") {
        // A PUT that leaves `active` out does not reactivate (or deactivate) the user.
        None | Some(Value::Null) => was.is_none_or(|u| u.active),
        Some(value) => {
            patch::boolean(value).ok_or(invalid("invalidValue", "active must be true or false"))?
        }
    };
    let sub = match path::value_at(object, sub_attribute) {
        Some(Value::String(sub)) if !sub.is_empty() => sub.clone(),
        None | Some(Value::Null) if was.is_some() => was.map(|u| u.sub.clone()).unwrap_or_default(),
        _ => {
            return Err(invalid(
                "invalidValue",
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

/// Revoke the `sub`s a written change asked for (through the core: sessions, denylist marker,
/// refresh tokens), then clear them from the record. A failure leaves them in the record for
/// the next request (the client's retry) to revoke.
async fn settle<S: SessionIndex + RecordStore, D: UserDirectory>(
    scim: &Scim<S, D>,
    caller: &Caller,
    written: ScimUser,
) -> Result<ScimUser, Refusal> {
    if written.revoke_pending.is_empty() {
        return Ok(written);
    }
    let actions = written
        .revoke_pending
        .iter()
        .map(|sub| Action::RevokeUser {
            issuer: caller.client.issuer.clone(),
            sub: sub.clone(),
        })
        .collect();
    scim.core
        .apply(Event::new(caller.sender(), actions))
        .await?;
    let owner = caller.owner();
    // Cleared unless the record changed meanwhile: then the change that read it carries the
    // pending subs, and revokes them again (each revocation is safe to repeat).
    if let Some(now) = scim.directory.user(owner, &written.id).await? {
        let settled = ScimUser {
            revoke_pending: Vec::new(),
            ..now.user.clone()
        };
        if now.user == written {
            scim.directory.replace(owner, &now, &settled).await?;
            return Ok(settled);
        }
    }
    Ok(ScimUser {
        revoke_pending: Vec::new(),
        ..written
    })
}

/// The most users one page lists.
const MAX_PAGE: usize = 100;

/// The query of `GET /Users` and `GET /Users/{id}`.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ListQuery {
    filter: Option<String>,
    start_index: Option<String>,
    count: Option<String>,
    attributes: Option<String>,
    excluded_attributes: Option<String>,
}

impl ListQuery {
    fn projection(&self) -> Projection {
        Projection::from_query(
            self.attributes.as_deref(),
            self.excluded_attributes.as_deref(),
        )
    }
}

/// The query, or a SCIM 400 when it cannot be read.
fn query(query: Result<Query<ListQuery>, QueryRejection>) -> Result<ListQuery, Refusal> {
    query
        .map(|Query(q)| q)
        .map_err(|_| invalid("invalidSyntax", "the query string cannot be read"))
}

/// A search: a filter, a page and which attributes to return.
struct Search {
    filter: Option<String>,
    start: Option<i64>,
    count: Option<i64>,
    projection: Projection,
}

/// RFC 7644 §3.4.2.4: a startIndex below 1 means 1, a negative count means 0.
fn number(value: Option<&str>) -> Result<Option<i64>, Refusal> {
    value
        .map(|v| {
            v.trim()
                .parse::<i64>()
                .map_err(|_| invalid("invalidValue", "startIndex and count must be integers"))
        })
        .transpose()
}

async fn list<S: SessionIndex + RecordStore, D: UserDirectory>(
    State(scim): State<Arc<Scim<S, D>>>,
    axum::Extension(caller): axum::Extension<Caller>,
    raw: Result<Query<ListQuery>, QueryRejection>,
) -> Answer {
    let q = query(raw)?;
    let search = Search {
        start: number(q.start_index.as_deref())?,
        count: number(q.count.as_deref())?,
        projection: q.projection(),
        filter: q.filter,
    };
    find(&scim, &caller, search).await
}

/// `POST /Users/.search` (RFC 7644 §3.4.3): the query in a `SearchRequest` body.
async fn search<S: SessionIndex + RecordStore, D: UserDirectory>(
    State(scim): State<Arc<Scim<S, D>>>,
    axum::Extension(caller): axum::Extension<Caller>,
    bytes: Bytes,
) -> Answer {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct SearchRequest {
        #[serde(default)]
        schemas: Vec<String>,
        #[serde(default)]
        attributes: Vec<String>,
        #[serde(default)]
        excluded_attributes: Vec<String>,
        filter: Option<String>,
        start_index: Option<i64>,
        count: Option<i64>,
    }
    let body = object(&bytes)?;
    let request: SearchRequest = serde_json::from_value(body)
        .map_err(|_| invalid("invalidSyntax", "the body must be a SearchRequest"))?;
    if !request
        .schemas
        .iter()
        .any(|s| s == "urn:ietf:params:scim:api:messages:2.0:SearchRequest")
    {
        return Err(invalid(
            "invalidSyntax",
            "schemas must hold urn:ietf:params:scim:api:messages:2.0:SearchRequest",
        )
        .into());
    }
    let search = Search {
        filter: request.filter,
        start: request.start_index,
        count: request.count,
        projection: Projection::from_lists(&request.attributes, &request.excluded_attributes),
    };
    find(&scim, &caller, search).await
}

/// The users a search finds among the caller's.
async fn find<S: SessionIndex + RecordStore, D: UserDirectory>(
    scim: &Scim<S, D>,
    caller: &Caller,
    search: Search,
) -> Answer {
    let owner = caller.owner();
    let shown = |users: Vec<ScimUser>| -> Vec<Value> {
        users
            .iter()
            .map(|u| search.projection.apply(resources::user(u)))
            .collect()
    };
    let Some(filter) = &search.filter else {
        let start = usize::try_from(search.start.unwrap_or(1).max(1)).unwrap_or(usize::MAX);
        let count = usize::try_from(search.count.unwrap_or(MAX_PAGE as i64).max(0))
            .unwrap_or(usize::MAX)
            .min(MAX_PAGE);
        let (total, users) = scim.directory.page(owner, start - 1, count).await?;
        return Ok(scim_json(
            StatusCode::OK,
            &resources::page(shown(users), total, start),
        ));
    };
    let equals = path::parse_filter(filter).map_err(|why| invalid("invalidFilter", why))?;
    let Some(value) = equals.value.as_str() else {
        return Ok(scim_json(StatusCode::OK, &resources::list(Vec::new())));
    };
    let found = if path::names(&equals.attribute, "userName") {
        scim.directory.find(owner, Lookup::UserName, value).await?
    } else if path::names(&equals.attribute, "externalId") {
        scim.directory
            .find(owner, Lookup::ExternalId, value)
            .await?
    } else if path::names(&equals.attribute, "id") {
        scim.directory.user(owner, value).await?
    } else {
        return Err(invalid(
            "invalidFilter",
            "users can be filtered by userName, externalId or id",
        )
        .into());
    };
    let users = found.map(|f| f.user).into_iter().collect();
    Ok(scim_json(StatusCode::OK, &resources::list(shown(users))))
}

async fn read<S: SessionIndex + RecordStore, D: UserDirectory>(
    State(scim): State<Arc<Scim<S, D>>>,
    axum::Extension(caller): axum::Extension<Caller>,
    Path(id): Path<String>,
    raw: Result<Query<ListQuery>, QueryRejection>,
) -> Answer {
    let projection = query(raw)?.projection();
    let found = scim
        .directory
        .user(caller.owner(), &id)
        .await?
        .ok_or_else(no_such_user)?;
    Ok(scim_json(
        StatusCode::OK,
        &projection.apply(resources::user(&found.user)),
    ))
}

async fn create<S: SessionIndex + RecordStore, D: UserDirectory>(
    State(scim): State<Arc<Scim<S, D>>>,
    axum::Extension(caller): axum::Extension<Caller>,
    raw: Result<Query<ListQuery>, QueryRejection>,
    bytes: Bytes,
) -> Answer {
    let projection = query(raw)?.projection();
    let resource = object(&bytes)?;
    let draft = draft_of(&resource, &caller.client.sub_attribute, None)?;
    let id = random_id(16).map_err(|_| {
        Refusal::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            None,
            "no randomness for an id",
        )
    })?;
    let mut user = ScimUser::new(
        id,
        draft.user_name,
        draft.external_id,
        draft.active,
        draft.sub,
        unix_now(),
    );
    // Created inactive: whatever sessions the user has are ended, once the record is written.
    if !user.active {
        user.revoke_pending = vec![user.sub.clone()];
    }
    match scim.directory.create(caller.owner(), &user).await? {
        Written::Done => {}
        Written::Claimed => return Err(claimed().into()),
        _ => return Err(taken().into()),
    }
    written(&caller, "created", &user);
    let user = settle(&scim, &caller, user).await?;
    let mut response = scim_json(
        StatusCode::CREATED,
        &projection.apply(resources::user(&user)),
    );
    if let Ok(location) = HeaderValue::from_str(&resources::location(&user.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

fn written(caller: &Caller, what: &'static str, user: &ScimUser) {
    tracing::info!(
        client = ?caller.client.name,
        scim_id = ?user.id,
        active = user.active,
        "SCIM user {what}"
    );
}

/// Apply a change to the user `id` as read, again on the newest record while the write finds
/// it changed meanwhile: `draft` turns the user read into what it becomes. Every `sub` the
/// change takes access from is revoked once the write is done: the user's when it is
/// deactivated; the old one when the mapped attribute changed, as the record no longer names
/// it; the new one when the user stays inactive under a new `sub`.
async fn apply_change<S, D>(
    scim: &Scim<S, D>,
    caller: &Caller,
    id: &str,
    draft: impl Fn(&ScimUser) -> Result<Draft, Refusal>,
) -> Answer
where
    S: SessionIndex + RecordStore,
    D: UserDirectory,
{
    let owner = caller.owner();
    for _ in 0..ATTEMPTS {
        let was: Found = scim
            .directory
            .user(owner, id)
            .await?
            .ok_or_else(no_such_user)?;
        let draft = draft(&was.user)?;
        let old = &was.user;
        let mut pending = old.revoke_pending.clone();
        let mut revoke = |sub: &String| {
            if !pending.contains(sub) {
                pending.push(sub.clone());
            }
        };
        if (old.active && !draft.active) || draft.sub != old.sub {
            revoke(&old.sub);
        }
        if !draft.active && draft.sub != old.sub {
            revoke(&draft.sub);
        }
        let user = ScimUser {
            user_name: draft.user_name,
            external_id: draft.external_id,
            active: draft.active,
            sub: draft.sub,
            modified: unix_now(),
            revoke_pending: pending,
            ..old.clone()
        };
        match scim.directory.replace(owner, &was, &user).await? {
            Written::Done => {
                written(caller, "changed", &user);
                let user = settle(scim, caller, user).await?;
                return Ok(scim_json(StatusCode::OK, &resources::user(&user)));
            }
            Written::Stale => continue,
            Written::Claimed => return Err(claimed().into()),
            Written::Taken => return Err(taken().into()),
            _ => return Err(no_such_user().into()),
        }
    }
    Err(busy().into())
}

async fn replace<S: SessionIndex + RecordStore, D: UserDirectory>(
    State(scim): State<Arc<Scim<S, D>>>,
    axum::Extension(caller): axum::Extension<Caller>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Answer {
    let resource = object(&bytes)?;
    let sub_attribute = caller.client.sub_attribute.clone();
    apply_change(&scim, &caller, &id, |was| {
        draft_of(&resource, &sub_attribute, Some(was))
    })
    .await
}

async fn change<S: SessionIndex + RecordStore, D: UserDirectory>(
    State(scim): State<Arc<Scim<S, D>>>,
    axum::Extension(caller): axum::Extension<Caller>,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Answer {
    let message = object(&bytes)?;
    let sub_attribute = caller.client.sub_attribute.clone();
    apply_change(&scim, &caller, &id, |was| {
        let mut draft = Draft {
            user_name: was.user_name.clone(),
            external_id: was.external_id.clone(),
            active: was.active,
            sub: was.sub.clone(),
        };
        patch::apply(&message, &mut draft, &sub_attribute)?;
        Ok(draft)
    })
    .await
}

/// Revoke the user, then delete its record (freeing its names and `sub`): a failure leaves the
/// record as it was, and the client's retry revokes again.
async fn delete<S: SessionIndex + RecordStore, D: UserDirectory>(
    State(scim): State<Arc<Scim<S, D>>>,
    axum::Extension(caller): axum::Extension<Caller>,
    Path(id): Path<String>,
) -> Answer {
    let owner = caller.owner();
    for _ in 0..ATTEMPTS {
        let was = scim
            .directory
            .user(owner, &id)
            .await?
            .ok_or_else(no_such_user)?;
        let mut subs = was.user.revoke_pending.clone();
        if !subs.contains(&was.user.sub) {
            subs.push(was.user.sub.clone());
        }
        let actions = subs
            .into_iter()
            .map(|sub| Action::RevokeUser {
                issuer: caller.client.issuer.clone(),
                sub,
            })
            .collect();
        scim.core
            .apply(Event::new(caller.sender(), actions))
            .await?;
        match scim.directory.delete(owner, &was).await? {
            Written::Done | Written::Gone => {
                written(&caller, "deleted", &was.user);
                return Ok(StatusCode::NO_CONTENT.into_response());
            }
            _ => continue,
        }
    }
    Err(busy().into())
}

/// The SCIM endpoint of the library server: off without SCIM clients.
#[cfg(feature = "server")]
pub(crate) fn mount<S, D>(m: &super::Mount<'_, S, D>) -> Option<super::Mounted>
where
    S: SessionIndex + RecordStore,
    D: UserDirectory,
{
    let configured = &m.settings.inputs.scim;
    if configured.is_empty() {
        return None;
    }
    let clients: Vec<ScimClient> = configured
        .iter()
        .map(|c| {
            ScimClient::new(&c.issuer, c.tokens.clone())
                .with_sub_attribute(&c.sub_attribute)
                .with_name(&c.name)
                .with_customer(c.customer.clone())
        })
        .collect();
    tracing::info!("SCIM provisioning under {PREFIX}");
    Some(super::Mounted::main(router(
        m.core.clone(),
        m.directory.clone(),
        &clients,
    )))
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
        let _ = Projection::from_query(Some(filter), Some(filter)).apply(value);
    }
}
