//! The binary as an operator watches and runs it: Prometheus metrics and health checks on their
//! own listener, JSON logs with a request id and no secrets, SIGTERM finishing in-flight logouts,
//! and `check-config`.

mod common;

use std::time::Duration;

use common::topologies::TlsRedis;
use common::{CLIENT, Op, RedisServer, command, endpoint, failure, index_on, now, start};
use oidc_logout::index::{IndexSettings, RedisIndex, SessionRecord, SessionState};
use serde_json::{Value, json};

fn session(issuer: &str, id: &str, sid: &str) -> SessionRecord {
    SessionRecord {
        session_id: id.into(),
        issuer: issuer.into(),
        sub: "alice".into(),
        sid: Some(sid.into()),
        auth_time: now() - 5,
        ttl: Duration::from_secs(600),
        customer: None,
    }
}

/// The message of a JSON log line.
fn message(line: &Value) -> &str {
    line["fields"]["message"].as_str().unwrap_or_default()
}

async fn get(url: &str) -> (u16, String) {
    let response = reqwest::get(url).await.expect("GET");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

/// The value of the sample whose line starts with `name_and_labels ` in a Prometheus page.
fn sample(page: &str, name_and_labels: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_health_request_ids_and_json_logs_without_secrets() {
    let redis = TlsRedis::start();
    let op = Op::start().await;
    let redis_url = redis.plain_url();
    let mut running = start(
        &["serve", "--metrics-listen", "127.0.0.1:0"],
        &[
            ("OIDC_LOGOUT_ISSUER", op.issuer()),
            ("OIDC_LOGOUT_CLIENT_ID", CLIENT),
            ("OIDC_LOGOUT_CLIENT_SECRET", "client-secret-never-logged"),
            ("OIDC_LOGOUT_REDIS_URL", &redis_url),
            ("OIDC_LOGOUT_LISTEN", "127.0.0.1:0"),
            ("OIDC_LOGOUT_LOG_FORMAT", "json"),
            ("RUST_LOG", "debug"),
        ],
    );
    let mut logs: Vec<Value> = Vec::new();
    let mut addresses = Vec::new();
    while addresses.len() < 2 {
        let line = running
            .lines
            .recv_timeout(Duration::from_secs(30))
            .expect("startup lines");
        let json: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        for prefix in ["listening on ", "metrics and health on "] {
            if let Some(url) = message(&json).strip_prefix(prefix) {
                addresses.push(url.to_owned());
            }
        }
        logs.push(json);
    }
    let (endpoint, metrics) = (addresses[0].clone(), addresses[1].clone());
    let base = endpoint.trim_end_matches("/backchannel-logout").to_owned();
    let ops_base = metrics.trim_end_matches("/metrics").to_owned();

    for url in [&base, &ops_base] {
        assert_eq!(get(&format!("{url}/healthz")).await, (200, "ok".into()));
        let (status, body) = get(&format!("{url}/readyz")).await;
        assert_eq!(status, 200, "{body}");
        let ready: Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(ready["status"], "ready");
        // Which issuers are configured is said only where the OPs cannot ask.
        let detail = if url == &ops_base {
            json!("ok")
        } else {
            Value::Null
        };
        assert_eq!(ready["issuers"][op.issuer()], detail, "{url}: {body}");
    }

    let index = RedisIndex::connect(&redis_url, IndexSettings::default())
        .await
        .expect("connect");
    common::register(&index, &session(op.issuer(), "s-1", "op-sid-1")).await;
    let http = reqwest::Client::new();
    let token = op.sign(&op.claims(None, Some("op-sid-1")));
    let applied = http
        .post(&endpoint)
        .header("x-request-id", "req-from-the-op-42")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("logout_token={token}"))
        .send()
        .await
        .expect("POST");
    assert_eq!(applied.status(), 200);
    assert_eq!(applied.headers()["x-request-id"], "req-from-the-op-42");
    // A logout that matches no session succeeds, as its own outcome.
    let nothing = op.sign(&op.claims(Some("carol"), Some("op-sid-9")));
    let unmatched = http
        .post(&endpoint)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("logout_token={nothing}"))
        .send()
        .await
        .expect("POST");
    assert_eq!(unmatched.status(), 200);
    let wrong_audience = op.sign(
        &oidc_logout::test_op::logout_claims(op.issuer(), "someone-else", None, Some("x"))
            .expect("claims"),
    );
    let refused = http
        .post(&endpoint)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("logout_token={wrong_audience}"))
        .send()
        .await
        .expect("POST");
    assert_eq!(refused.status(), 400);
    let made = refused.headers()["x-request-id"]
        .to_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(
        made.len(),
        16,
        "a request id is made when none is given: {made}"
    );
    let not_form = http.post(&endpoint).body("x").send().await.expect("POST");
    assert_eq!(not_form.status(), 400);

    let (status, page) = get(&metrics).await;
    assert_eq!(status, 200);
    assert_eq!(
        sample(&page, "oidc_logout_logouts_total{outcome=\"applied\"}"),
        Some(1.0),
        "{page}"
    );
    assert_eq!(
        sample(
            &page,
            "oidc_logout_logouts_total{outcome=\"rejected\",reason=\"audience_mismatch\"}"
        ),
        Some(1.0),
        "{page}"
    );
    assert_eq!(
        sample(
            &page,
            "oidc_logout_logouts_total{outcome=\"rejected\",reason=\"content_type\"}"
        ),
        Some(1.0),
        "{page}"
    );
    assert_eq!(
        sample(
            &page,
            "oidc_logout_logouts_total{named=\"sid_sub\",outcome=\"no_session\"}"
        ),
        Some(1.0),
        "{page}"
    );
    assert_eq!(
        sample(&page, "oidc_logout_sessions_ended_total"),
        Some(1.0),
        "{page}"
    );
    let fetches = format!(
        "oidc_logout_jwks_fetches_total{{issuer=\"{}\",result=\"ok\"}}",
        op.issuer()
    );
    assert_eq!(sample(&page, &fetches), Some(1.0), "{page}");
    assert_eq!(
        sample(
            &page,
            "oidc_logout_http_request_duration_seconds_count{path=\"/backchannel-logout\",status=\"200\"}"
        ),
        Some(2.0),
        "{page}"
    );
    assert!(page.contains("oidc_logout_http_request_duration_seconds_bucket{path=\"/backchannel-logout\",status=\"400\",le=\"0.005\"}"), "{page}");

    // Redis goes away: not ready, and logouts are a retryable 503, counted.
    drop(redis);
    let (status, body) = get(&format!("{base}/readyz")).await;
    assert_eq!((status, body.as_str()), (503, "{\"status\":\"not ready\"}"));
    let (status, body) = get(&format!("{ops_base}/readyz")).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("\"index\":\"unavailable\""), "{body}");
    let token = op.sign(&op.claims(None, Some("op-sid-2")));
    let reply = http
        .post(&endpoint)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("logout_token={token}"))
        .send()
        .await
        .expect("POST");
    assert_eq!(reply.status(), 503);
    let (_, page) = get(&metrics).await;
    assert_eq!(
        sample(&page, "oidc_logout_logouts_total{outcome=\"unavailable\"}"),
        Some(1.0),
        "{page}"
    );
    assert_eq!(
        sample(
            &page,
            "oidc_logout_redis_errors_total{operation=\"logout\"}"
        ),
        Some(1.0),
        "{page}"
    );

    running.signal("TERM");
    assert!(
        running
            .wait_exit(Duration::from_secs(10))
            .is_some_and(|s| s.success())
    );
    for line in running.drain() {
        logs.push(serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")));
    }
    let applied_line = logs
        .iter()
        .find(|l| message(l) == "logout applied")
        .expect("a log line for the applied logout");
    assert_eq!(
        applied_line["span"]["request_id"], "req-from-the-op-42",
        "{applied_line}"
    );
    let unmatched_line = logs
        .iter()
        .find(|l| message(l) == "logout matched no session")
        .expect("a log line for the logout that matched nothing");
    assert_eq!(
        unmatched_line["fields"]["outcome"], "no_session",
        "{unmatched_line}"
    );
    assert_eq!(
        unmatched_line["fields"]["named_sid"], true,
        "{unmatched_line}"
    );
    assert_eq!(
        unmatched_line["fields"]["named_sub"], true,
        "{unmatched_line}"
    );
    assert!(
        logs.iter()
            .any(|l| message(l) == "logout refused" && l["span"]["request_id"] == made.as_str()),
        "the refusal is logged with the request id"
    );
    let all = logs
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    for secret in [
        token.as_str(),
        nothing.as_str(),
        wrong_audience.as_str(),
        TlsRedis::PASSWORD,
        "client-secret-never-logged",
    ] {
        assert!(!all.contains(secret), "a secret reached the logs: {secret}");
    }
    // Not even a token's signature, or its payload.
    let signature = token.rsplit('.').next().unwrap_or_default();
    assert!(!all.contains(signature));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_logouts_then_exits() {
    let redis = RedisServer::start();
    let op = Op::start().await;
    let redis_url = redis.url();
    let mut running = start(
        &["serve"],
        &[
            ("OIDC_LOGOUT_ISSUER", op.issuer()),
            ("OIDC_LOGOUT_CLIENT_ID", CLIENT),
            ("OIDC_LOGOUT_REDIS_URL", &redis_url),
            ("OIDC_LOGOUT_LISTEN", "127.0.0.1:0"),
        ],
    );
    let endpoint = endpoint(&running);
    let index = index_on(&redis).await;
    common::register(&index, &session(op.issuer(), "in-flight", "op-sid-9")).await;
    // Redis holds every command for 1.5 s, so the logout is in flight when SIGTERM arrives.
    let mut admin = redis::Client::open(redis_url.as_str())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(1500)
        .arg("ALL")
        .query_async(&mut admin)
        .await
        .expect("CLIENT PAUSE");
    let token = op.sign(&op.claims(None, Some("op-sid-9")));
    let url = endpoint.clone();
    let in_flight = tokio::spawn(async move {
        let reply = reqwest::Client::new()
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("logout_token={token}"))
            .send()
            .await
            .expect("POST");
        reply.status().as_u16()
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    running.signal("TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let late = reqwest::Client::new()
        .post(&endpoint)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("logout_token=x")
        .send()
        .await;
    assert!(late.is_err(), "no new connections after SIGTERM: {late:?}");
    assert_eq!(
        in_flight.await.expect("task"),
        200,
        "the in-flight logout is finished"
    );
    let status = running.wait_exit(Duration::from_secs(10)).expect("exits");
    assert!(status.success(), "{status:?}");
    assert_eq!(
        common::state_of(&index, op.issuer(), "in-flight").await,
        SessionState::Ended
    );
}

#[test]
fn check_config_prints_the_effective_settings_without_secrets() {
    let dir = common::topologies::TempDir::new("check-config");
    let path = dir.0.join("config.toml");
    std::fs::write(
        &path,
        "redis_url = \"redis://app:hunter2@127.0.0.1:6379/\"\n\
         [[issuers]]\n\
         issuer = \"https://op.example\"\n\
         clients = [\"one\", { id = \"two\", secret = \"very-secret\", algorithms = [\"ES256\"] }]\n\
         access_token_lifetime_secs = 300\n",
    )
    .expect("write");
    let config = path.display().to_string();
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let output = command(args, env).output().expect("run");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    };
    let printed = run(
        &[
            "check-config",
            "--config",
            &config,
            "--metrics-listen",
            "127.0.0.1:9100",
        ],
        &[("OIDC_LOGOUT_LISTEN", "0.0.0.0:8081")],
    );
    for expected in [
        "listen = \"0.0.0.0:8081\"",
        "metrics_listen = \"127.0.0.1:9100\"",
        "redis_url = \"redis://app:***@127.0.0.1:6379/\"",
        "redis_mode = \"standalone\"",
        "secret = \"***\"",
        "access_token_lifetime_secs = 300",
        "max_token_age_secs = 300",
        "algorithms = [\"ES256\"]",
        "shutdown_grace_secs = 30",
    ] {
        assert!(
            printed.contains(expected),
            "{expected} missing from:\n{printed}"
        );
    }
    assert!(
        !printed.contains("hunter2") && !printed.contains("very-secret"),
        "{printed}"
    );

    // What it prints is a config file that gives the same settings.
    let again = dir.0.join("effective.toml");
    std::fs::write(&again, &printed).expect("write");
    let reprinted = run(
        &["check-config", "--config", &again.display().to_string()],
        &[],
    );
    assert_eq!(reprinted, printed);

    for (file, key) in [
        (
            "[[issuers]]\nissuer = \"https://a\"\nclients = [\"x\"]\nmax_token_age = 3\n",
            "max_token_age",
        ),
        (
            "redis_url = \"redis://a/\"\nredis_mode = \"ring\"\n[[issuers]]\nissuer = \"https://a\"\nclients = [\"x\"]\n",
            "redis_mode",
        ),
        (
            "metrics_listen = \"everywhere\"\n[[issuers]]\nissuer = \"https://a\"\nclients = [\"x\"]\n",
            "metrics_listen",
        ),
        (
            "log_format = \"xml\"\n[[issuers]]\nissuer = \"https://a\"\nclients = [\"x\"]\n",
            "log_format",
        ),
    ] {
        std::fs::write(&path, file).expect("write");
        let stderr = failure(&["check-config", "--config", &config], &[]);
        assert!(stderr.contains(key), "{key} not named: {stderr}");
    }
}
