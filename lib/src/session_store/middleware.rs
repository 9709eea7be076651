//! One tower layer for per-request work with a request's session — the policy checks
//! ([`Revalidation`](crate::rp::Revalidation)) and the session details ([`SessionDetails`](super::SessionDetails)):
//! the layer finds the session the session layer outside put in the request's extensions, hands
//! it to the [`PerRequest`] work, and either answers for the request or passes it on.

use std::future::Future;
use std::marker::PhantomData;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::request::Parts;
use axum::http::{Request, Response};
use futures_util::future::BoxFuture;

use super::SessionAccess;

mod sealed {
    pub trait Sealed {}
}

/// Work done with each request's session before the request is served: `None` passes the
/// request on, `Some` answers it. Implemented by this crate's per-request helpers only.
pub trait PerRequest: sealed::Sealed + Clone + Send + Sync + 'static {
    /// Do the work for a request (its head: `request`), whose session is `session`.
    fn before<T: SessionAccess>(
        &self,
        session: &T,
        request: &Parts,
    ) -> impl Future<Output = Option<Response<Body>>> + Send;
}

pub(crate) use sealed::Sealed;

/// The layer running `M` with each request's session of type `T` (`tower_sessions::Session`,
/// of the tower-sessions version the application uses).
#[derive(Debug)]
pub struct SessionLayer<M, T> {
    work: M,
    session: PhantomData<fn() -> T>,
}

impl<M, T> SessionLayer<M, T> {
    pub(crate) fn new(work: M) -> Self {
        Self {
            work,
            session: PhantomData,
        }
    }
}

impl<M: Clone, T> Clone for SessionLayer<M, T> {
    fn clone(&self) -> Self {
        Self::new(self.work.clone())
    }
}

impl<S, M: Clone, T> tower::Layer<S> for SessionLayer<M, T> {
    type Service = SessionService<S, M, T>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService {
            inner,
            work: self.work.clone(),
            session: PhantomData,
        }
    }
}

/// The service of [`SessionLayer`].
#[derive(Debug)]
pub struct SessionService<S, M, T> {
    inner: S,
    work: M,
    session: PhantomData<fn() -> T>,
}

impl<S: Clone, M: Clone, T> Clone for SessionService<S, M, T> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            work: self.work.clone(),
            session: PhantomData,
        }
    }
}

impl<S, M, T> tower::Service<Request<Body>> for SessionService<S, M, T>
where
    S: tower::Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    M: PerRequest,
    T: SessionAccess + Clone + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        // The clone that was polled ready serves this request (tower's usual swap).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let work = self.work.clone();
        Box::pin(async move {
            let (head, body) = request.into_parts();
            if let Some(session) = head.extensions.get::<T>().cloned()
                && let Some(answer) = work.before(&session, &head).await
            {
                return Ok(answer);
            }
            inner.call(Request::from_parts(head, body)).await
        })
    }
}
