//! Every endpoint of the library server answers the same way: errors in its protocol's format
//! with `Cache-Control: no-store`, bodies above the limit refused from `Content-Length` before a
//! byte of them is read, and `503` with `Retry-After` when Redis is down. The server runs
//! in-process (`oidc_logout::server::Server`, as `oidc-logout serve` runs it) over real HTTP,
//! with a real redis-server, the built-in OP, a Shared Signals transmitter and FusionAuth
//! webhook signatures.

mod common;

use std::io::{Read as _, Write as _};
use std::time::Duration;

use common::signals::{
    ADMIN_TOKEN, HMAC, TENANT, Transmitter, event, every_input, fusionauth_event,
    fusionauth_hmac_signature, iss_sub,
};
use common::{Op, RedisServer};
use oidc_logout::config::{Settings, Sources};
use oidc_logout::inputs::shared_signals::ACCOUNT_DISABLED;
use oidc_logout::server::Server;
use serde_json::{Value, json};

struct Running {
    redis: RedisServer,
    op: Op,
    transmitter: Transmitter,
    base: String,
    http: reqwest::Client,
    _dir: common::topologies::TempDir,
}

async fn start() -> Running {
    let dir = common::topologies::TempDir::new("responses");
    let (redis, op, transmitter, path) = every_input(&dir.0, 300).await;
    let settings = Settings::load(&Sources {
        file: Some(path),
        ..Sources::default()
    })
    .expect("settings");
    let bound = Server::new(settings).bind().await.expect("server starts");
    let addr = bound.local_addr().expect("address");
    tokio::spawn(bound.run(std::future::pending()));
    Running {
        redis,
        op,
        transmitter,
        base: format!("http://{addr}"),
        http: reqwest::Client::new(),
        _dir: dir,
    }
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    json: Value,
}

async fn call(request: reqwest::RequestBuilder) -> Answer {
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap_or_default();
    Answer {
        status,
        headers,
        json: serde_json::from_str(&text).unwrap_or(Value::Null),
    }
}

fn header<'h>(answer: &'h Answer, name: &str) -> &'h str {
    answer
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

impl Running {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A valid request to each input, as `(name, request)`.
    fn valid_requests(&self) -> Vec<(&'static str, reqwest::RequestBuilder)> {
        let logout = self.op.sign(&self.op.claims(Some("alice"), None));
        let set = self.transmitter.sign(&self.transmitter.set(
            event(ACCOUNT_DISABLED),
            Some(iss_sub(self.transmitter.issuer(), "alice")),
        ));
        let webhook = fusionauth_event(
            "user.deactivate",
            TENANT,
            json!({ "user": { "id": "alice" } }),
        );
        let signature = fusionauth_hmac_signature(&webhook, HMAC, json!({}));
        vec![
            (
                "back-channel logout",
                self.http
                    .post(self.url("/backchannel-logout"))
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(format!("logout_token={logout}")),
            ),
            (
                "shared signals",
                self.http
                    .post(self.url("/shared-signals/events"))
                    .header("content-type", "application/secevent+jwt")
                    .body(set),
            ),
            (
                "fusionauth",
                self.http
                    .post(self.url("/webhooks/fusionauth"))
                    .header("x-fusionauth-signature-jwt", signature)
                    .header("content-type", "application/json")
                    .body(webhook),
            ),
            (
                "admin",
                self.http
                    .post(self.url("/admin/v1/users/revoke"))
                    .bearer_auth(ADMIN_TOKEN)
                    .header("content-type", "application/json")
                    .body(json!({ "issuer": self.op.issuer(), "sub": "alice" }).to_string()),
            ),
        ]
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_of_every_endpoint_is_in_its_format_and_not_cached() {
    let s = start().await;
    let cases = [
        (
            "back-channel logout",
            s.http.post(s.url("/backchannel-logout")).body(""),
            400,
            "error",
        ),
        (
            "shared signals",
            s.http
                .post(s.url("/shared-signals/events"))
                .header("content-type", "text/plain")
                .body("x"),
            400,
            "err",
        ),
        (
            "fusionauth without a signature",
            s.http.post(s.url("/webhooks/fusionauth")).body("{}"),
            401,
            "error",
        ),
        (
            "admin without a token",
            s.http.get(s.url("/admin/v1/sessions?issuer=a&sub=b")),
            401,
            "error",
        ),
        (
            "admin with an empty sub",
            s.http
                .post(s.url("/admin/v1/users/revoke"))
                .bearer_auth(ADMIN_TOKEN)
                .header("content-type", "application/json")
                .body(json!({ "issuer": s.op.issuer(), "sub": "" }).to_string()),
            400,
            "error",
        ),
        ("no such path", s.http.get(s.url("/nothing-here")), 404, ""),
    ];
    for (name, request, status, field) in cases {
        let answer = call(request).await;
        assert_eq!(answer.status, status, "{name}: {:?}", answer.json);
        assert_eq!(header(&answer, "cache-control"), "no-store", "{name}");
        if !field.is_empty() {
            assert!(answer.json[field].is_string(), "{name}: {:?}", answer.json);
        }
    }
    for (name, request) in s.valid_requests() {
        let answer = call(request).await;
        assert!(
            answer.status < 300,
            "{name}: {} {:?}",
            answer.status,
            answer.json
        );
        assert_eq!(header(&answer, "cache-control"), "no-store", "{name}");
    }
}

/// Send only the headers of a POST whose `Content-Length` is 10 MB, and read the answer.
fn headers_only(base: &str, path: &str, content_type: &str) -> (u16, String) {
    let addr = base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\n\
         Authorization: Bearer {ADMIN_TOKEN}\r\nContent-Length: 10000000\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).expect("write");
    let mut answer = vec![0u8; 4096];
    let n = stream
        .read(&mut answer)
        .expect("an answer before any body byte was sent");
    let text = String::from_utf8_lossy(answer.get(..n).unwrap_or_default()).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_above_the_limit_is_refused_before_it_is_read() {
    let s = start().await;
    let base = s.base.clone();
    tokio::task::spawn_blocking(move || {
        for (path, content_type, field) in [
            (
                "/backchannel-logout",
                "application/x-www-form-urlencoded",
                "\"error\"",
            ),
            (
                "/shared-signals/events",
                "application/secevent+jwt",
                "\"err\"",
            ),
            ("/webhooks/fusionauth", "application/json", "\"error\""),
            ("/admin/v1/users/revoke", "application/json", "\"error\""),
        ] {
            let (status, text) = headers_only(&base, path, content_type);
            assert_eq!(status, 400, "{path}: {text}");
            assert!(
                text.to_ascii_lowercase()
                    .contains("cache-control: no-store"),
                "{text}"
            );
            assert!(
                text.contains(field) && text.contains("too large"),
                "{path}: {text}"
            );
        }
    })
    .await
    .expect("join");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_is_a_503_with_retry_after_on_every_input() {
    let mut s = start().await;
    s.redis.stop();
    for (name, request) in s.valid_requests() {
        let answer = call(request).await;
        assert_eq!(answer.status, 503, "{name}: {:?}", answer.json);
        assert!(
            header(&answer, "retry-after").parse::<u64>().is_ok(),
            "{name}: {:?}",
            answer.headers
        );
        assert_eq!(header(&answer, "cache-control"), "no-store", "{name}");
    }
    let ready = call(s.http.get(s.url("/readyz"))).await;
    assert_eq!(ready.status, 503);
    assert!(header(&ready, "retry-after").parse::<u64>().is_ok());
}
