//! A browser for tests: follows redirects one hop at a time and keeps each site's cookies, so
//! that an application's own `cargo test` can log a user in through the test OP's login page with
//! a plain HTTP client, and see what its pages say.
//!
//! ```no_run
//! # async fn test() -> Result<(), Box<dyn std::error::Error>> {
//! use oidc_logout::test_op::{Browser, Client, TestOp};
//! // The OP on a free loopback port, the application registered as its client.
//! let (op, issuer) = TestOp::start_local().await?;
//! op.register_client(Client::new("my-app", "my-secret", "http://127.0.0.1:3000"));
//! // ... start the application with issuer, "my-app", "my-secret" ...
//! let mut alice = Browser::new()?;
//! let page = alice.log_in("http://127.0.0.1:3000/login", "alice").await?;
//! assert_eq!(page.status, 200);
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::time::Duration;

use reqwest::Url;

/// A page the browser ended on.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Page {
    /// Where it came from (after redirects).
    pub url: String,
    /// Its status.
    pub status: u16,
    /// Its body.
    pub body: String,
}

/// Why the browser could not go on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrowserError {
    /// A request failed.
    #[error("request failed: {0}")]
    Http(#[from] reqwest::Error),
    /// A URL or redirect that is not one.
    #[error("not a URL: {0}")]
    Url(String),
    /// More than 20 redirects.
    #[error("too many redirects")]
    Redirects,
    /// The OP's login page was not where a login form was expected.
    #[error("no login form at {0}")]
    NoLoginForm(String),
}

/// Cookies by site (`host:port`), each site's by name. Cookie attributes are not enforced:
/// every cookie goes back to the site that set it.
#[derive(Debug)]
pub struct Browser {
    http: reqwest::Client,
    jar: HashMap<String, HashMap<String, String>>,
}

fn site(url: &Url) -> String {
    format!(
        "{}:{}",
        url.host_str().unwrap_or_default(),
        url.port_or_known_default().unwrap_or_default()
    )
}

impl Browser {
    /// A browser with no cookies.
    pub fn new() -> Result<Self, BrowserError> {
        Ok(Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(30))
                .build()?,
            jar: HashMap::new(),
        })
    }

    fn cookies_for(&self, url: &Url) -> Option<String> {
        let jar = self.jar.get(&site(url))?;
        (!jar.is_empty()).then(|| {
            jar.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    fn keep_cookies(&mut self, url: &Url, response: &reqwest::Response) {
        for value in response.headers().get_all(reqwest::header::SET_COOKIE) {
            let Some((pair, attributes)) = value
                .to_str()
                .ok()
                .map(|v| v.split_once(';').unwrap_or((v, "")))
            else {
                continue;
            };
            let Some((name, value)) = pair.trim().split_once('=') else {
                continue;
            };
            let jar = self.jar.entry(site(url)).or_default();
            let expired = attributes
                .split(';')
                .any(|a| a.trim().eq_ignore_ascii_case("max-age=0"));
            if expired || value.is_empty() {
                jar.remove(name);
            } else {
                jar.insert(name.to_owned(), value.to_owned());
            }
        }
    }

    async fn send(
        &mut self,
        request: reqwest::RequestBuilder,
        url: &Url,
    ) -> Result<Page, BrowserError> {
        let mut request = request;
        if let Some(cookies) = self.cookies_for(url) {
            request = request.header(reqwest::header::COOKIE, cookies);
        }
        let mut response = request.send().await?;
        let mut here = url.clone();
        for _ in 0..20 {
            self.keep_cookies(&here, &response);
            if !response.status().is_redirection() {
                return Ok(Page {
                    url: here.to_string(),
                    status: response.status().as_u16(),
                    body: response.text().await?,
                });
            }
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .ok_or_else(|| BrowserError::Url("a redirect without Location".into()))?;
            here = here
                .join(location)
                .map_err(|_| BrowserError::Url(location.to_owned()))?;
            let mut next = self.http.get(here.clone());
            if let Some(cookies) = self.cookies_for(&here) {
                next = next.header(reqwest::header::COOKIE, cookies);
            }
            response = next.send().await?;
        }
        Err(BrowserError::Redirects)
    }

    /// `GET url`, following redirects.
    pub async fn get(&mut self, url: &str) -> Result<Page, BrowserError> {
        let url = Url::parse(url).map_err(|_| BrowserError::Url(url.to_owned()))?;
        self.send(self.http.get(url.clone()), &url).await
    }

    /// `POST url` with a form, following redirects.
    pub async fn post_form(
        &mut self,
        url: &str,
        form: &[(&str, &str)],
    ) -> Result<Page, BrowserError> {
        let url = Url::parse(url).map_err(|_| BrowserError::Url(url.to_owned()))?;
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let request = self
            .http
            .post(url.clone())
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body);
        self.send(request, &url).await
    }

    /// Start at an application's login URL and log in at the test OP as `user` (through its
    /// login page, unless the OP logs everyone in as one user or the OP session is still on);
    /// returns the page the application answers its callback with.
    pub async fn log_in(&mut self, login_url: &str, user: &str) -> Result<Page, BrowserError> {
        let page = self.get(login_url).await?;
        let Some(interaction) = hidden(&page.body, "interaction") else {
            // No login page: the OP logged the user in without asking.
            return Ok(page);
        };
        let action = Url::parse(&page.url)
            .and_then(|u| u.join("/auth"))
            .map_err(|_| BrowserError::NoLoginForm(page.url.clone()))?;
        self.post_form(
            action.as_str(),
            &[("interaction", &interaction), ("username", user)],
        )
        .await
    }
}

/// The value of the hidden input `name` in a page.
fn hidden(html: &str, name: &str) -> Option<String> {
    let at = html.find(&format!("name=\"{name}\""))?;
    let rest = html.get(at..)?;
    let start = rest.find("value=\"")? + 7;
    let value = rest.get(start..)?;
    Some(value.get(..value.find('"')?)?.to_owned())
}
