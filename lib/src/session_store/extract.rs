//! axum extractors for the request's login, and answers for the errors a handler meets.
//!
//! [`LoggedIn`] is the [`Login`] of the request's session, required: an API handler that takes it
//! answers `401` to a request without one. [`LoggedInPage`] is the same for pages: the browser is
//! sent to the login page instead (`/login`, or the path of a [`LoginPage`] extension).
//! `Option<LoggedIn>` is the optional form. The session is the one tower-sessions'
//! `SessionManagerLayer` put in the request (0.15, or 0.14 with the feature
//! `tower-sessions-014`), so these work behind [`LogoutAware`](super::LogoutAware): a session a
//! logout ended has no login.
//!
//! [`SessionError`] and [`RpError`](crate::rp::RpError) implement `IntoResponse`: a handler
//! returns them with `?` and the browser gets a short answer that names no internals (the
//! detail goes to the log).

use std::ops::Deref;

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{Login, SessionAccess, SessionError};

/// The login of the request's session; a request without one is refused with `401`.
///
/// ```
/// use axum::{Router, routing::get};
/// use oidc_logout::session_store::LoggedIn;
///
/// async fn me(user: LoggedIn) -> String {
///     format!("you are {}", user.sub)
/// }
///
/// async fn home(user: Option<LoggedIn>) -> String {
///     match user {
///         Some(user) => format!("welcome back, {}", user.sub),
///         None => "welcome".into(),
///     }
/// }
///
/// // Behind `SessionManagerLayer::new(store)`, with `store` a `LogoutAware`.
/// let app: Router = Router::new().route("/me", get(me)).route("/", get(home));
/// ```
#[derive(Debug, Clone)]
pub struct LoggedIn(pub Login);

/// The login of the request's session, for pages: a request without one is sent to the login
/// page (`303` to `/login`, or to the path of the [`LoginPage`] extension).
///
/// ```
/// use axum::{Extension, Router, routing::get};
/// use oidc_logout::session_store::{LoggedInPage, LoginPage};
///
/// async fn account(user: LoggedInPage) -> String {
///     format!("the account of {}", user.sub)
/// }
///
/// let app: Router = Router::new()
///     .route("/account", get(account))
///     .layer(Extension(LoginPage::new("/auth/login")));
/// ```
#[derive(Debug, Clone)]
pub struct LoggedInPage(pub Login);

/// Where [`LoggedInPage`] sends a browser that is not logged in: add it to the router as an
/// extension (`.layer(Extension(LoginPage::new("/auth/login")))`). Without it, `/login`.
#[derive(Debug, Clone)]
pub struct LoginPage(String);

impl LoginPage {
    /// The login page at `path` (a path on this site).
    pub fn new(path: impl Into<String>) -> Self {
        Self(path.into())
    }
}

impl Deref for LoggedIn {
    type Target = Login;
    fn deref(&self) -> &Login {
        &self.0
    }
}

impl Deref for LoggedInPage {
    type Target = Login;
    fn deref(&self) -> &Login {
        &self.0
    }
}

/// Why a request has no login to hand to a handler.
#[derive(Debug)]
#[non_exhaustive]
pub enum LoginRejection {
    /// The session holds no login (never logged in, logged out, or ended by a logout): `401`.
    NotLoggedIn,
    /// The same, for a page: a redirect to the login page.
    ToLoginPage(String),
    /// The session store could not be read: `503`.
    Unavailable(SessionError),
    /// No tower-sessions layer runs in front of the handler (a mistake in the application's
    /// router): `500`.
    NoSessionLayer,
}

impl IntoResponse for LoginRejection {
    fn into_response(self) -> Response {
        match self {
            Self::NotLoggedIn => plain(StatusCode::UNAUTHORIZED, "log in first"),
            Self::ToLoginPage(path) => (
                StatusCode::SEE_OTHER,
                [
                    (header::LOCATION, path),
                    (header::CACHE_CONTROL, "no-store".into()),
                ],
            )
                .into_response(),
            Self::Unavailable(error) => error.into_response(),
            Self::NoSessionLayer => {
                tracing::error!(
                    "a handler asks for the login but no tower-sessions SessionManagerLayer runs in front of it"
                );
                plain(StatusCode::INTERNAL_SERVER_ERROR, "server error")
            }
        }
    }
}

impl IntoResponse for SessionError {
    fn into_response(self) -> Response {
        tracing::warn!(error = %self, "the session store failed");
        let mut response = plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "the session store is unavailable; try again",
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        response
    }
}

/// A short plain-text answer that is never cached.
pub(crate) fn plain(status: StatusCode, message: &'static str) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        message,
    )
        .into_response()
}

/// The login of the request's session, from whichever tower-sessions version put it there.
async fn login_of(parts: &Parts) -> Result<Option<Login>, LoginRejection> {
    async fn read(session: &impl SessionAccess) -> Result<Option<Login>, LoginRejection> {
        Login::from_session(session)
            .await
            .map_err(LoginRejection::Unavailable)
    }
    #[cfg(feature = "tower-sessions-015")]
    if let Some(session) = parts.extensions.get::<tower_sessions_core::Session>() {
        return read(session).await;
    }
    #[cfg(feature = "tower-sessions-014")]
    if let Some(session) = parts.extensions.get::<tower_sessions_core_014::Session>() {
        return read(session).await;
    }
    Err(LoginRejection::NoSessionLayer)
}

impl<S: Send + Sync> FromRequestParts<S> for LoggedIn {
    type Rejection = LoginRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        login_of(parts)
            .await?
            .map(Self)
            .ok_or(LoginRejection::NotLoggedIn)
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for LoggedIn {
    type Rejection = LoginRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        Ok(login_of(parts).await?.map(Self))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for LoggedInPage {
    type Rejection = LoginRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        match login_of(parts).await? {
            Some(login) => Ok(Self(login)),
            None => {
                let page = parts
                    .extensions
                    .get::<LoginPage>()
                    .map_or_else(|| "/login".to_owned(), |p| p.0.clone());
                Err(LoginRejection::ToLoginPage(page))
            }
        }
    }
}
