//! The `oidc-logout` binary as an operator runs it: settings from the environment, a real
//! redis-server, the built-in OP over HTTP; and startup failures that say what to fix.

mod common;

use std::time::Duration;

use common::{
    CLIENT, Op, RedisServer, command, endpoint, failure, index_on, now, post_form, start,
};
use oidc_logout::index::{SessionRecord, SessionState};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_from_environment_ends_a_session_in_redis() {
    let redis = RedisServer::start();
    let op = Op::start().await;
    let redis_url = redis.url();
    let running = start(
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
    let session = SessionRecord {
        session_id: "app-session-1".into(),
        issuer: op.issuer().into(),
        sub: "alice".into(),
        sid: Some("op-sid-1".into()),
        auth_time: now() - 5,
        ttl: Duration::from_secs(600),
        customer: None,
    };
    common::register(&index, &session).await;
    let http = reqwest::Client::new();
    let token = op.sign(&op.claims(Some("alice"), Some("op-sid-1")));
    let reply = post_form(&http, &endpoint, &[("logout_token", &token)]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        common::state_of(&index, op.issuer(), "app-session-1").await,
        SessionState::Ended
    );
    let reply = post_form(&http, &endpoint, &[("logout_token", &token)]).await;
    assert_eq!(reply.status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_reads_a_config_file_with_several_issuers() {
    let (a, b) = (Op::start().await, Op::start().await);
    let dir = std::env::temp_dir().join(format!("oidc-logout-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("config.toml");
    let config = format!(
        "listen = \"127.0.0.1:0\"\n\
         [[issuers]]\nissuer = \"{}\"\nclients = [\"{CLIENT}\"]\n\
         [[issuers]]\nissuer = \"{}\"\nclients = [{{ id = \"{CLIENT}\", algorithms = [\"RS256\"] }}]\n",
        a.issuer(),
        b.issuer()
    );
    std::fs::write(&path, config).expect("write config");
    let running = start(&["serve", "--config", &path.to_string_lossy()], &[]);
    running.wait_for("in-memory index");
    let endpoint = endpoint(&running);
    let http = reqwest::Client::new();
    for op in [&a, &b] {
        let token = op.sign(&op.claims(Some("alice"), None));
        let reply = post_form(&http, &endpoint, &[("logout_token", &token)]).await;
        assert_eq!(reply.status, 200, "{}: {}", op.issuer(), reply.body);
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_failures_say_what_to_fix() {
    let stderr = failure(&["serve"], &[]);
    assert!(stderr.contains("OIDC_LOGOUT_ISSUER"), "{stderr}");

    let stderr = failure(
        &["serve"],
        &[
            ("OIDC_LOGOUT_ISSUER", "http://op.example.com"),
            ("OIDC_LOGOUT_CLIENT_ID", "a"),
        ],
    );
    assert!(
        stderr.contains("OIDC_LOGOUT_ALLOW_INSECURE_HTTP"),
        "{stderr}"
    );

    // Nothing listens on port 9 of loopback.
    let stderr = failure(
        &["serve"],
        &[
            ("OIDC_LOGOUT_ISSUER", "http://127.0.0.1:9"),
            ("OIDC_LOGOUT_CLIENT_ID", "a"),
        ],
    );
    assert!(
        stderr.contains("cannot load issuer http://127.0.0.1:9"),
        "{stderr}"
    );

    let op = Op::start().await;
    let stderr = failure(
        &["serve"],
        &[
            ("OIDC_LOGOUT_ISSUER", op.issuer()),
            ("OIDC_LOGOUT_CLIENT_ID", "a"),
            ("OIDC_LOGOUT_REDIS_URL", "redis://127.0.0.1:9/"),
            ("OIDC_LOGOUT_LISTEN", "127.0.0.1:0"),
        ],
    );
    let error = stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_default();
    assert!(error.contains("OIDC_LOGOUT_REDIS_URL"), "{stderr}");
    // The cause once, not once per layer of the error chain.
    assert_eq!(error.matches("onnection refused").count(), 1, "{error}");

    let stderr = failure(
        &["serve", "--algorithms", "HS256"],
        &[
            ("OIDC_LOGOUT_ISSUER", op.issuer()),
            ("OIDC_LOGOUT_CLIENT_ID", "a"),
        ],
    );
    assert!(
        stderr.contains("algorithms") && stderr.contains("HMAC"),
        "{stderr}"
    );

    let path = std::env::temp_dir().join(format!("oidc-logout-bad-{}.toml", std::process::id()));
    std::fs::write(
        &path,
        "[[issuers]]\nissuer = \"https://a\"\nclient = [\"x\"]\n",
    )
    .expect("write");
    let stderr = failure(&["serve", "--config", &path.to_string_lossy()], &[]);
    assert!(stderr.contains("client"), "{stderr}");
    let _ = std::fs::remove_file(path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_prints_a_logout_that_ends_its_session() {
    let running = start(&["demo", "--listen", "127.0.0.1:0"], &[]);
    let curl = running.wait_for("curl -i ");
    let line = running.wait_for(" op send --keys ");
    let mut words = curl.split_whitespace().skip(2);
    let endpoint = words.next().unwrap_or_default().to_owned();
    let token = curl
        .split("logout_token=")
        .nth(1)
        .unwrap_or_default()
        .trim()
        .to_owned();
    let http = reqwest::Client::new();
    let reply = post_form(&http, &endpoint, &[("logout_token", &token)]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    running.wait_for("ended by the back-channel logout");
    let reply = post_form(&http, &endpoint, &[("logout_token", &token)]).await;
    assert_eq!(
        reply.status, 400,
        "the demo token is refused the second time"
    );
    // The sender command it prints signs with the demo issuer's key.
    let mut list: Vec<String> = line.split_whitespace().skip(1).map(str::to_owned).collect();
    list.extend(args(&["--broken", "all"]));
    let (ok, stdout, stderr) = run_to_end(list).await;
    assert!(ok, "{stdout}{stderr}");
    assert!(
        stdout.contains("21 of 21 broken tokens refused"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_revokes_the_refresh_token_of_an_ended_app_session() {
    use oidc_logout::session_store::{LOGIN_KEY, Login, OidcSessionStore, TokenSecret};
    use tower_sessions::SessionStore as _;
    use tower_sessions::session::{Id, Record};

    let redis = RedisServer::start();
    let op = Op::start().await;
    let redis_url = redis.url();
    let running = start(
        &["serve"],
        &[
            ("OIDC_LOGOUT_ISSUER", op.issuer()),
            ("OIDC_LOGOUT_CLIENT_ID", CLIENT),
            ("OIDC_LOGOUT_CLIENT_SECRET", "app-secret"),
            ("OIDC_LOGOUT_REDIS_URL", &redis_url),
            ("OIDC_LOGOUT_LISTEN", "127.0.0.1:0"),
        ],
    );
    let endpoint = endpoint(&running);
    // An application (another process in real life) logged alice in through the session store.
    let store = OidcSessionStore::new(index_on(&redis).await);
    let login = Login {
        issuer: op.issuer().into(),
        sub: "alice".into(),
        client_id: Some(CLIENT.into()),
        sid: Some("op-sid-9".into()),
        auth_time: now() - 5,
        logged_in_at: now(),
        policy: None,
        id_token: None,
        refresh_token: Some(TokenSecret::new("alice-refresh-token")),
        access_token: None,
        customer: None,
    };
    let mut record = Record {
        id: Id::default(),
        data: [(
            LOGIN_KEY.to_owned(),
            serde_json::to_value(&login).expect("login json"),
        )]
        .into(),
        expiry_date: time::OffsetDateTime::now_utc() + time::Duration::hours(1),
    };
    store.create(&mut record).await.expect("create session");
    let token = op.sign(&op.claims(None, Some("op-sid-9")));
    let reply = post_form(
        &reqwest::Client::new(),
        &endpoint,
        &[("logout_token", &token)],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(
        store.load(&record.id).await.expect("load").is_none(),
        "the app session is over"
    );
    for _ in 0..50 {
        if !op.op.revoked().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT}:app-secret"));
    assert_eq!(
        op.op.revoked(),
        vec![(
            "alice-refresh-token".to_owned(),
            Some(format!("Basic {basic}"))
        )]
    );
}

/// Run the binary to completion off the async runtime; returns (success, stdout, stderr).
async fn run_to_end(args: Vec<String>) -> (bool, String, String) {
    tokio::task::spawn_blocking(move || {
        let output = command(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[])
            .output()
            .expect("run oidc-logout");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    })
    .await
    .expect("join")
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn op_serve_and_op_send_end_sessions_and_every_broken_token_is_refused() {
    let redis = RedisServer::start();
    let keys = std::env::temp_dir().join(format!("oidc-logout-op-{}.json", std::process::id()));
    let _ = std::fs::remove_file(&keys);
    let keys_arg = keys.to_string_lossy().into_owned();
    let op = start(
        &[
            "op",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--keys",
            &keys_arg,
        ],
        &[],
    );
    let issuer = op
        .wait_for("issuer   : ")
        .split("issuer   : ")
        .nth(1)
        .unwrap_or_default()
        .trim()
        .to_owned();
    let redis_url = redis.url();
    let receiver = start(
        &["serve", "--algorithms", "RS256,ES256,EdDSA"],
        &[
            ("OIDC_LOGOUT_ISSUER", &issuer),
            ("OIDC_LOGOUT_CLIENT_ID", CLIENT),
            ("OIDC_LOGOUT_REDIS_URL", &redis_url),
            ("OIDC_LOGOUT_LISTEN", "127.0.0.1:0"),
        ],
    );
    let endpoint = endpoint(&receiver);
    let index = index_on(&redis).await;
    for (session, sid) in (0..20)
        .map(|i| (format!("load-session-{i}"), format!("load-{i}")))
        .chain([("app-session".to_owned(), "op-sid".to_owned())])
    {
        let record = SessionRecord {
            session_id: session,
            issuer: issuer.clone(),
            sub: "alice".into(),
            sid: Some(sid),
            auth_time: now() - 5,
            ttl: Duration::from_secs(600),
            customer: None,
        };
        common::register(&index, &record).await;
    }
    let send = |extra: &[&str]| {
        let mut list = args(&[
            "op", "send", "--keys", &keys_arg, "--to", &endpoint, "--aud", CLIENT,
        ]);
        list.extend(args(extra));
        list
    };

    let (ok, stdout, stderr) = run_to_end(send(&["--sid", "op-sid", "--alg", "ES256"])).await;
    assert!(ok, "{stdout}{stderr}");
    assert!(
        stdout.contains("\"sid\":\"op-sid\"") && stdout.contains("got 200"),
        "{stdout}"
    );
    let state = common::state_of(&index, &issuer, "app-session").await;
    assert_eq!(state, SessionState::Ended);

    let (ok, stdout, stderr) =
        run_to_end(send(&["--sub", "bob", "--alg", "EdDSA", "--broken", "all"])).await;
    assert!(ok, "{stdout}{stderr}");
    assert!(
        stdout.contains("21 of 21 broken tokens refused"),
        "{stdout}"
    );

    let (ok, stdout, stderr) = run_to_end(send(&[
        "--sid",
        "load-{i}",
        "--count",
        "20",
        "--connections",
        "4",
    ]))
    .await;
    assert!(ok, "{stdout}{stderr}");
    assert!(
        stdout.contains("answers: 200: 20; no answer: 0"),
        "{stdout}"
    );
    for i in 0..20 {
        let state = common::state_of(&index, &issuer, &format!("load-session-{i}")).await;
        assert_eq!(state, SessionState::Ended, "load-session-{i}");
    }
    drop(op);
    let _ = std::fs::remove_file(keys);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn op_send_names_what_a_careless_receiver_accepted() {
    use oidc_logout::test_op::{KeyFile, SigningAlg, SigningKey};
    // A receiver that answers 200 to anything.
    let careless = common::serve(
        axum::Router::new().route("/backchannel-logout", axum::routing::post(|| async { "" })),
    )
    .await;
    let keys = std::env::temp_dir().join(format!("oidc-logout-op2-{}.json", std::process::id()));
    KeyFile {
        issuer: "http://127.0.0.1:9".into(),
        keys: vec![SigningKey::generate(SigningAlg::Rs256).expect("key")],
    }
    .save(&keys)
    .expect("save");
    let keys_arg = keys.to_string_lossy().into_owned();
    let to = format!("{careless}/backchannel-logout");
    let (ok, stdout, stderr) = run_to_end(args(&[
        "op",
        "send",
        "--keys",
        &keys_arg,
        "--to",
        &to,
        "--aud",
        CLIENT,
        "--sid",
        "s",
        "--broken",
        "wrong-aud,alg-none",
    ]))
    .await;
    assert!(!ok, "{stdout}");
    assert!(stdout.contains("FAIL: expected 400"), "{stdout}");
    assert!(
        stderr.contains("not refused with 400: wrong-aud, alg-none"),
        "{stderr}"
    );

    let (ok, _, stderr) = run_to_end(args(&[
        "op", "send", "--keys", &keys_arg, "--aud", CLIENT, "--sid", "s", "--broken", "bogus",
    ]))
    .await;
    assert!(!ok);
    assert!(stderr.contains("unknown defect \"bogus\""), "{stderr}");
    let _ = std::fs::remove_file(keys);
}

/// Run `args` with `env` in `dir` to completion; returns (success, stdout, stderr).
fn run_in(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let output = command(args, env)
        .current_dir(dir)
        .output()
        .expect("run oidc-logout");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_work_as_flags_and_variables_and_errors_name_what_was_used() {
    let dir = common::topologies::TempDir::new("settings");
    // A bare boolean flag means true.
    let (ok, stdout, stderr) = run_in(
        &dir.0,
        &[
            "check-config",
            "--issuer",
            "http://op.internal",
            "--client-id",
            "a",
            "--allow-insecure-http",
        ],
        &[],
    );
    assert!(ok, "{stderr}");
    assert!(stdout.contains("allow_insecure_http = true"), "{stdout}");
    // The error names the flag the user gave, and the flag that would allow it.
    let stderr = failure(
        &[
            "check-config",
            "--issuer",
            "http://op.internal",
            "--client-id",
            "a",
        ],
        &[],
    );
    assert!(
        stderr.contains("error: --issuer: ") && stderr.contains("--allow-insecure-http"),
        "{stderr}"
    );
    assert!(!stderr.contains("OIDC_LOGOUT_ISSUER"), "{stderr}");
    // ... and the variable when it came from the environment.
    let stderr = failure(
        &["check-config"],
        &[
            ("OIDC_LOGOUT_ISSUER", "http://op.internal"),
            ("OIDC_LOGOUT_CLIENT_ID", "a"),
        ],
    );
    assert!(
        stderr.contains("error: OIDC_LOGOUT_ISSUER: ")
            && stderr.contains("OIDC_LOGOUT_ALLOW_INSECURE_HTTP"),
        "{stderr}"
    );
    // Every setting works by environment, the grace period and marker lifetime included.
    let (ok, stdout, stderr) = run_in(
        &dir.0,
        &["check-config"],
        &[
            ("OIDC_LOGOUT_ISSUER", "https://op.example"),
            ("OIDC_LOGOUT_CLIENT_ID", "a"),
            ("OIDC_LOGOUT_SHUTDOWN_GRACE_SECS", "7"),
            ("OIDC_LOGOUT_MARKER_TTL_SECS", "99"),
        ],
    );
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("shutdown_grace_secs = 7") && stdout.contains("marker_ttl_secs = 99"),
        "{stdout}"
    );
    // Session ids and subs are base64url or free text: one may start with `-`.
    let stderr = failure(
        &[
            "sessions",
            "end",
            "https://op.example",
            "-akb6U6Iz",
            "--redis-url",
            "redis://127.0.0.1:9/",
        ],
        &[],
    );
    assert!(stderr.contains("cannot connect to Redis"), "{stderr}");
    // A variable the program does not know stops it, naming the variable.
    let stderr = failure(
        &["serve"],
        &[
            ("OIDC_LOGOUT_ISSUER", "https://op.example"),
            ("OIDC_LOGOUT_CLIENT_ID", "a"),
            ("OIDC_LOGOUT_REDIS_ULR", "redis://127.0.0.1/"),
        ],
    );
    assert!(
        stderr.contains("OIDC_LOGOUT_REDIS_ULR is not a setting"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_prints_no_warning_about_its_own_issuer() {
    let running = start(&["demo", "--listen", "127.0.0.1:0"], &[]);
    let mut before_curl = Vec::new();
    loop {
        let line = running
            .lines
            .recv_timeout(Duration::from_secs(60))
            .expect("the demo prints its curl command");
        if line.contains("curl -i ") {
            break;
        }
        before_curl.push(line);
    }
    assert!(
        before_curl.iter().any(|l| l.contains("oidc-logout demo")),
        "{before_curl:#?}"
    );
    assert!(
        !before_curl
            .iter()
            .any(|l| l.contains("WARN") || l.contains("plain http")),
        "{before_curl:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn op_send_finds_the_keys_op_serve_wrote_from_another_folder() {
    let state = common::topologies::TempDir::new("op-state");
    let (serve_dir, send_dir) = (
        common::topologies::TempDir::new("op-serve"),
        common::topologies::TempDir::new("op-send"),
    );
    let state_path = state.0.to_string_lossy().into_owned();
    let env = [("XDG_STATE_HOME", state_path.as_str())];
    let mut serve = command(&["op", "serve", "--listen", "127.0.0.1:0"], &env);
    serve
        .current_dir(&serve_dir.0)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let op = common::Proc::spawn("op serve", serve);
    let issuer = op.wait_for("issuer   : ");
    let issuer = issuer
        .split("issuer   : ")
        .nth(1)
        .unwrap_or_default()
        .trim();
    // Without --to, the token is printed: signed for the issuer `op serve` runs.
    let (ok, stdout, stderr) = run_in(
        &send_dir.0,
        &["op", "send", "--aud", CLIENT, "--sid", "s"],
        &env,
    );
    assert!(ok, "{stdout}{stderr}");
    use base64::Engine as _;
    let payload = stdout.trim().split('.').nth(1).unwrap_or_default();
    let claims: serde_json::Value = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    assert_eq!(claims["iss"], issuer, "{stdout}");
    assert_eq!(claims["sid"], "s");
}
