//! `oidc-logout demo`: the whole path with nothing else installed. A built-in issuer on a free
//! loopback port, the receiver trusting it (in-memory index), one live session, and a signed
//! logout token for it to send with `curl`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::Args;
use oidc_logout::config::{DEFAULT_LISTEN, Settings, Sources};
use oidc_logout::index::{IndexSettings, MemoryIndex, SessionIndex, SessionRecord, SessionState};
use oidc_logout::inputs::backchannel::PATH;
use oidc_logout::server::{Server, shutdown_signal};
use oidc_logout::sys::{random_id, unix_now};
use oidc_logout::test_op::{KeyFile, SigningAlg, SigningKey, TestOp, logout_claims};
use tokio::net::TcpListener;

const CLIENT: &str = "demo-app";

#[derive(Args)]
pub(crate) struct DemoArgs {
    /// host:port for the receiver.
    #[arg(long, default_value = DEFAULT_LISTEN)]
    listen: String,
}

pub(crate) async fn run(args: DemoArgs) -> Result<()> {
    // The built-in issuer on a free loopback port.
    let op_listener = TcpListener::bind("127.0.0.1:0").await?;
    let issuer = format!("http://{}", op_listener.local_addr()?);
    let key = Arc::new(SigningKey::generate(SigningAlg::Rs256)?);
    let op_router = TestOp::new(issuer.clone(), vec![Arc::clone(&key)]).router();
    tokio::spawn(async move { axum::serve(op_listener, op_router).await });

    // The receiver, configured as `serve` would be by these flags. Its own loopback issuer and
    // in-memory index are what a demo is; their warnings would only be noise here.
    let flags = [("issuer", &issuer), ("client_id", &CLIENT.to_owned())]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.clone()))
        .chain([("listen".to_owned(), args.listen.clone())])
        .collect();
    let mut settings = Settings::load(&Sources {
        flags,
        ..Sources::default()
    })?;
    settings.warnings.clear();
    let index = MemoryIndex::new(IndexSettings::default());
    let server = Server::new(settings)
        .with_memory_index(index.clone())
        .bind()
        .await
        .with_context(|| {
            format!(
                "(use --listen 127.0.0.1:<free port> if {} is taken)",
                args.listen
            )
        })?;
    let endpoint = match server.local_addr() {
        Some(addr) => format!("http://{addr}{PATH}"),
        None => format!("http://{}{PATH}", args.listen),
    };

    let now = unix_now();
    let (session_id, sid) = (random_id(16)?, random_id(12)?);
    let session = SessionRecord {
        session_id: session_id.clone(),
        issuer: issuer.clone(),
        sub: "demo-user".into(),
        sid: Some(sid.clone()),
        auth_time: now.saturating_sub(1),
        ttl: Duration::from_secs(3600),
        customer: None,
    };
    index.register(&session).await?;
    let mut claims = logout_claims(&issuer, CLIENT, Some("demo-user"), Some(&sid))?;
    if let Some(map) = claims.as_object_mut() {
        map.insert("exp".into(), (now + 3600).into());
    }
    let header = serde_json::Map::from_iter([("typ".into(), "logout+jwt".into())]);
    let token = key.sign(&header, &claims)?;

    println!("oidc-logout demo");
    println!("  built-in issuer : {issuer}  (client id {CLIENT}, RS256)");
    println!("  receiver        : {endpoint}  (in-memory index)");
    println!("  live session    : {session_id}  (sub demo-user, sid {sid})");
    println!();
    println!("End that session as the OP would, from another terminal (valid for an hour):");
    println!();
    println!("curl -i {endpoint} -d logout_token={token}");
    println!();
    println!("Expect HTTP 200 and the session ended; the same command again gets 400 (replay).");
    // The same key in a key file, so the test OP's sender can sign fresh tokens for this issuer.
    let key_file =
        std::env::temp_dir().join(format!("oidc-logout-demo-{}.json", std::process::id()));
    let copy = SigningKey::from_pkcs8(key.alg(), key.kid().to_owned(), &key.to_pkcs8()?)?;
    let saved = KeyFile {
        issuer: issuer.clone(),
        keys: vec![copy],
    }
    .save(&key_file);
    if saved.is_ok() {
        let exe = std::env::current_exe().unwrap_or_else(|_| "oidc-logout".into());
        println!();
        println!("Or sign fresh tokens (valid, or --broken all) with the test OP's sender:");
        println!();
        println!(
            "{} op send --keys {} --to {endpoint} --aud {CLIENT} --sid={sid}",
            exe.display(),
            key_file.display()
        );
    }

    let watcher = index.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if let Ok(SessionState::Ended) = watcher.state(&session.key()).await {
                println!("session {session_id} ended by the back-channel logout");
                return;
            }
        }
    });
    let served = server.run(shutdown_signal()).await;
    let _ = std::fs::remove_file(&key_file);
    Ok(served?)
}
