//! openidconnect's HTTP client, on this crate's reqwest: one HTTP stack in the application.
//!
//! openidconnect's own `reqwest` feature brings another reqwest version; this adapter lets it use
//! the one this crate already has, with the settings it uses for every request to an OP: short
//! timeouts, no redirects (openidconnect requires that a client not follow them, against
//! SSRF), and a bound on the size of an answer.

use std::future::Future;
use std::pin::Pin;

use openidconnect::{AsyncHttpClient, HttpRequest, HttpResponse};

/// The most an OP's answer may hold: discovery, keys and token responses are a few KB.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// An [`AsyncHttpClient`] for openidconnect on this crate's reqwest. Cheap to clone.
#[derive(Clone, Debug)]
pub struct HttpClient(reqwest::Client);

impl HttpClient {
    /// A client with short timeouts and no redirects
    /// ([`provider::http_client`](crate::provider::http_client)).
    pub fn new() -> Result<Self, HttpError> {
        Ok(Self(crate::provider::http_client()?))
    }

    /// Use `client`, which must not follow redirects.
    pub fn from_reqwest(client: reqwest::Client) -> Self {
        Self(client)
    }

    /// The reqwest client inside.
    pub fn reqwest(&self) -> &reqwest::Client {
        &self.0
    }
}

/// A request to the OP failed (no answer, or an answer too large).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The request could not be sent or its answer read.
    #[error("request to the OP failed: {0}")]
    Request(#[from] reqwest::Error),
    /// The answer was larger than this client accepts.
    #[error("the OP's answer is larger than {MAX_RESPONSE_BYTES} bytes")]
    TooLarge,
}

impl<'c> AsyncHttpClient<'c> for HttpClient {
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let mut response = self.0.execute(reqwest::Request::try_from(request)?).await?;
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await? {
                if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    return Err(HttpError::TooLarge);
                }
                body.extend_from_slice(&chunk);
            }
            let mut out = HttpResponse::new(body);
            *out.status_mut() = response.status();
            *out.headers_mut() = std::mem::take(response.headers_mut());
            Ok(out)
        })
    }
}
