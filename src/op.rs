//! `oidc-logout op serve` and `oidc-logout op send`: the built-in OP on the command line, so an
//! integrator can send real, signed logout tokens (valid or deliberately broken) at any receiver
//! without configuring an identity provider.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clap::{Args, Subcommand};
use oidc_logout::test_op::forge::{self, DEFAULT_ALGORITHMS, Subject};
use oidc_logout::test_op::{Client, Defect, KeyFile, SigningAlg, SigningKey, TestOp, send};
use tokio::net::TcpListener;

/// Where the key file is unless `--keys` (or `OIDC_LOGOUT_OP_KEYS`) says otherwise: one place
/// per user, so `op send` finds the keys `op serve` wrote from whatever folder it runs in.
fn default_key_file() -> PathBuf {
    let state = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(std::env::temp_dir);
    state.join("oidc-logout").join("op-keys.json")
}

fn key_file(given: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(path) = given {
        return Ok(path);
    }
    let path = default_key_file();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create {} for the key file", dir.display()))?;
    }
    Ok(path)
}

#[derive(Subcommand)]
pub(crate) enum OpCommand {
    /// Serve the test OP on loopback: discovery, keys, logins for its --client's, RP-initiated
    /// logout with back-channel delivery; writes the key file `op send` signs with.
    Serve(ServeArgs),
    /// Sign logout tokens with the key file's keys and POST them to a receiver.
    Send(SendArgs),
}

#[derive(Args)]
pub(crate) struct ServeArgs {
    /// host:port to serve on; the issuer is http://<this> unless --issuer says otherwise.
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: String,
    /// Key file: loaded if it exists, else created with fresh keys. Holds private keys (mode
    /// 0600). Default: $XDG_STATE_HOME (or ~/.local/state)/oidc-logout/op-keys.json.
    #[arg(long, env = "OIDC_LOGOUT_OP_KEYS")]
    keys: Option<PathBuf>,
    /// Issuer identifier to publish (when a proxy serves this OP under another URL).
    #[arg(long)]
    issuer: Option<String>,
    /// Algorithms to generate keys for when the key file is new, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = DEFAULT_ALGORITHMS)]
    alg: Vec<SigningAlg>,
    /// A client that logs users in: ID:SECRET@BASE_URL (redirect URIs under BASE_URL,
    /// back-channel logout at BASE_URL/backchannel-logout). Repeatable.
    #[arg(long = "client", value_name = "ID:SECRET@BASE_URL")]
    clients: Vec<String>,
    /// Log every login in as this user, without the login page (for scripts).
    #[arg(long)]
    user: Option<String>,
}

#[derive(Args)]
pub(crate) struct SendArgs {
    /// The receiver's back-channel logout URL; without it the tokens are printed, one per line.
    #[arg(long)]
    to: Option<String>,
    /// The receiver's client id (the token's `aud`).
    #[arg(long)]
    aud: String,
    /// `sub` of the user to log out; `{i}` is replaced by the token's number with --count.
    #[arg(long, allow_hyphen_values = true)]
    sub: Option<String>,
    /// `sid` of the session to log out; `{i}` is replaced by the token's number with --count.
    #[arg(long, allow_hyphen_values = true)]
    sid: Option<String>,
    /// Algorithm of the signing key (the key file must hold one).
    #[arg(long, default_value_t = SigningAlg::Rs256)]
    alg: SigningAlg,
    /// Send deliberately broken tokens instead: comma-separated defects, or `all`. Each must be
    /// refused with 400; the exit status says whether every one was.
    #[arg(long, value_delimiter = ',', conflicts_with = "count")]
    broken: Vec<String>,
    /// Send this many valid tokens as a load (distinct jti each) and print rate and latency.
    #[arg(long)]
    count: Option<usize>,
    /// Connections for --count.
    #[arg(long, default_value_t = 16, requires = "count")]
    connections: usize,
    /// Key file written by `op serve` (the same default).
    #[arg(long, env = "OIDC_LOGOUT_OP_KEYS")]
    keys: Option<PathBuf>,
}

pub(crate) async fn run(command: OpCommand) -> Result<()> {
    match command {
        OpCommand::Serve(args) => serve(args).await,
        OpCommand::Send(args) => send_tokens(args).await,
    }
}

async fn serve(args: ServeArgs) -> Result<()> {
    let listener = TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {} (use --listen)", args.listen))?;
    let issuer = match args.issuer {
        Some(issuer) => issuer,
        None => format!("http://{}", listener.local_addr()?),
    };
    let path = key_file(args.keys)?;
    let keys = if path.exists() {
        KeyFile::load(&path)?.keys
    } else {
        args.alg
            .iter()
            .map(|&alg| SigningKey::generate(alg))
            .collect::<Result<Vec<_>, _>>()?
    };
    let file = KeyFile { issuer, keys };
    file.save(&path)?;
    let algorithms: Vec<&str> = file.keys.iter().map(|k| k.alg().name()).collect();
    println!("oidc-logout test OP (any user name logs in: not for real users)");
    println!("  issuer   : {}", file.issuer);
    println!(
        "  discovery: {}/.well-known/openid-configuration",
        file.issuer
    );
    println!(
        "  keys     : {} ({})",
        path.display(),
        algorithms.join(", ")
    );
    println!();
    println!("Point a receiver at it, e.g.:");
    println!(
        "  oidc-logout serve --issuer {} --client-id my-app --algorithms {}",
        file.issuer,
        algorithms.join(",")
    );
    println!("then send logout tokens:");
    println!(
        "  oidc-logout op send --keys {} --to http://127.0.0.1:8080/backchannel-logout --aud my-app --sid <sid>",
        path.display()
    );
    let op = TestOp::new(file.issuer, file.keys.into_iter().map(Arc::new).collect());
    for spec in &args.clients {
        let client = Client::parse(spec).with_context(
            || "--client takes ID:SECRET@BASE_URL, e.g. app-1:secret-1@http://127.0.0.1:3001",
        )?;
        println!(
            "  client   : {} at {} (back-channel logout {}/backchannel-logout)",
            client.id, client.base_url, client.base_url
        );
        op.register_client(client);
    }
    if let Some(user) = &args.user {
        println!("  logins   : everyone is {user} (--user), no login page");
    }
    op.set_auto_user(args.user);
    axum::serve(listener, op.router())
        .with_graceful_shutdown(oidc_logout::server::shutdown_signal())
        .await
        .context("server failed")
}

fn templated(value: Option<&str>, i: usize) -> Option<String> {
    value.map(|v| v.replace("{i}", &i.to_string()))
}

fn load_key(path: &Path, alg: SigningAlg) -> Result<(String, SigningKey)> {
    let file = KeyFile::load(path).context(
        "cannot load the test OP's keys (run `oidc-logout op serve` first, or pass --keys)",
    )?;
    let issuer = file.issuer.clone();
    let Some(index) = file.keys.iter().position(|k| k.alg() == alg) else {
        bail!(
            "{} has no {alg} key; delete it and run `oidc-logout op serve --alg {alg}`",
            path.display()
        );
    };
    let key = file.keys.into_iter().nth(index).context("key vanished")?;
    Ok((issuer, key))
}

async fn send_tokens(args: SendArgs) -> Result<()> {
    let defects: Vec<Defect> = match args.broken.as_slice() {
        [] => Vec::new(),
        [all] if all == "all" => Defect::ALL.to_vec(),
        names => names.iter().map(|n| n.parse()).collect::<Result<_, _>>()?,
    };
    if defects.is_empty() && args.sub.is_none() && args.sid.is_none() {
        bail!("give --sub, --sid or both: a logout token names a user, a session, or both");
    }
    let (issuer, key) = load_key(&key_file(args.keys.clone())?, args.alg)?;
    let key = Arc::new(key);
    let subject = |i: usize| {
        (
            templated(args.sub.as_deref(), i),
            templated(args.sid.as_deref(), i),
        )
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;

    if let Some(count) = args.count {
        let tokens = sign_many(&key, &issuer, &args.aud, count, &subject).await?;
        let Some(to) = &args.to else {
            tokens.iter().for_each(|t| println!("{t}"));
            return Ok(());
        };
        println!(
            "sending {count} {} logout tokens to {to} over {} connections...",
            args.alg, args.connections
        );
        let report = send::load(to, Arc::new(tokens), args.connections).await;
        print_load(&report);
        if report.count(200) != count {
            bail!(
                "{} of {count} logouts were not answered 200",
                count - report.count(200)
            );
        }
        return Ok(());
    }

    let (sub, sid) = subject(0);
    let who = Subject {
        issuer: &issuer,
        audience: &args.aud,
        sub: sub.as_deref(),
        sid: sid.as_deref(),
    };
    if defects.is_empty() {
        let token = forge::valid(&key, &who)?;
        let Some(to) = &args.to else {
            println!("{token}");
            return Ok(());
        };
        describe(&token, "valid");
        let reply = send::post(&http, to, &token)
            .await
            .with_context(|| format!("POST {to}"))?;
        print_reply(&reply);
        if reply.status != 200 {
            bail!("the receiver did not accept a valid logout token (expected 200)");
        }
        return Ok(());
    }

    let mut failed = Vec::new();
    let sent = defects.len();
    for defect in defects {
        let token = forge::broken(&key, &who, defect)?;
        let Some(to) = &args.to else {
            println!("{defect}\t{token}");
            continue;
        };
        describe(&token, defect.name());
        let mut reply = send::post(&http, to, &token)
            .await
            .with_context(|| format!("POST {to}"))?;
        if defect == Defect::Replay {
            print_reply(&reply);
            if reply.status != 200 {
                println!(
                    "  the first delivery must be accepted (200) before a replay can be tested"
                );
                failed.push(defect);
                continue;
            }
            println!("  sending the same token again");
            reply = send::post(&http, to, &token)
                .await
                .with_context(|| format!("POST {to}"))?;
        }
        print_reply(&reply);
        let refused = reply.status == 400;
        println!(
            "  {}",
            if refused {
                "ok: refused"
            } else {
                "FAIL: expected 400"
            }
        );
        if !refused {
            failed.push(defect);
        }
    }
    if args.to.is_some() {
        println!("{} of {sent} broken tokens refused", sent - failed.len());
    }
    if !failed.is_empty() {
        let names: Vec<&str> = failed.iter().map(|d| d.name()).collect();
        bail!("not refused with 400: {}", names.join(", "));
    }
    Ok(())
}

async fn sign_many(
    key: &Arc<SigningKey>,
    issuer: &str,
    aud: &str,
    count: usize,
    subject: &(dyn Fn(usize) -> (Option<String>, Option<String>) + Sync),
) -> Result<Vec<String>> {
    eprintln!("signing {count} tokens...");
    let subjects: Vec<_> = (0..count).map(subject).collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = count.div_ceil(threads).max(1);
    let signed: Result<Vec<Vec<String>>> = std::thread::scope(|s| {
        let workers: Vec<_> = subjects
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|(sub, sid)| {
                            forge::valid(
                                key,
                                &Subject {
                                    issuer,
                                    audience: aud,
                                    sub: sub.as_deref(),
                                    sid: sid.as_deref(),
                                },
                            )
                        })
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(anyhow::Error::from)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .map_err(|_| anyhow::anyhow!("a signing thread panicked"))?
            })
            .collect()
    });
    Ok(signed?.into_iter().flatten().collect())
}

/// Print a token's header and claims, decoded, as what was sent.
fn describe(token: &str, what: &str) {
    let part = |i: usize| {
        token
            .split('.')
            .nth(i)
            .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
            .and_then(|b| String::from_utf8(b).ok())
            .filter(|text| text.starts_with('{'))
            .unwrap_or_else(|| "(not base64url JSON)".into())
    };
    println!("sent {what}");
    println!("  header: {}", part(0));
    println!("  claims: {}", part(1));
}

fn print_reply(reply: &send::Reply) {
    let body = if reply.body.is_empty() {
        "(empty body)".to_owned()
    } else {
        reply.body.clone()
    };
    println!("  got {} in {:.1?}: {body}", reply.status, reply.elapsed);
}

fn print_load(report: &send::LoadReport) {
    println!(
        "{} sent in {:.2?}: {:.0}/s; latency p50 {:.2?}, p99 {:.2?}, p999 {:.2?}, max {:.2?}",
        report.sent(),
        report.elapsed,
        report.rate(),
        report.percentile(50.0),
        report.percentile(99.0),
        report.percentile(99.9),
        report.latencies.last().copied().unwrap_or_default(),
    );
    let statuses: Vec<String> = report
        .statuses
        .iter()
        .map(|(status, n)| format!("{status}: {n}"))
        .collect();
    println!(
        "answers: {}; no answer: {}",
        statuses.join(", "),
        report.transport_errors
    );
}
