//! The `oidc-logout` command: parses the command line, sets up logging, the Prometheus exporter
//! and the allocator, then hands over to the library (`oidc_logout::server` for `serve`).

#![forbid(unsafe_code)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod demo;
mod op;
#[cfg(feature = "otel")]
mod otel;
mod sessions;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use clap::{ArgMatches, Args, FromArgMatches, Parser, Subcommand};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use oidc_logout::config::{FLAGS, Kind, LogFormat, Settings, Sources};
use oidc_logout::server::{Server, shutdown_signal};
use oidc_logout::telemetry;

#[derive(Parser)]
#[command(version, about = "OpenID Connect Back-Channel Logout receiver")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve POST /backchannel-logout (and the other configured inputs).
    Serve(SettingsArgs),
    /// Print the effective settings (file, then environment, then flags) with secrets redacted,
    /// or fail naming the wrong setting. Contacts nothing.
    CheckConfig(SettingsArgs),
    /// Try it with nothing else installed: a built-in issuer, the receiver, one session, and a
    /// ready-to-send signed logout for it.
    Demo(demo::DemoArgs),
    /// A test OP for integrators: log users in (`op serve --client …`), send signed logout
    /// tokens (valid, broken, or as a load) to any receiver.
    #[command(subcommand)]
    Op(op::OpCommand),
    /// List and end users' sessions in the shared Redis index (as the admin API does).
    #[command(subcommand)]
    Sessions(sessions::SessionsCommand),
    /// Revoke a user: end every session, write the access-token denylist marker, revoke the
    /// refresh tokens the sessions hold.
    Revoke(sessions::UserArgs),
}

/// `--config` and one flag per setting of [`FLAGS`]; each also reads `OIDC_LOGOUT_<FLAG>`
/// (the library reads the environment, so it can refuse variables it does not know).
#[derive(Args, Clone)]
pub(crate) struct SettingsArgs {
    /// TOML file with several issuers and per-issuer settings (see docs/configuration.md).
    #[arg(long, env = "OIDC_LOGOUT_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    flags: SettingFlags,
}

impl SettingsArgs {
    /// Where the settings come from: the file, this process's environment, the flags.
    pub(crate) fn sources(&self) -> Sources {
        let mut sources = Sources::from_env(self.config.clone());
        sources.flags.clone_from(&self.flags.0);
        sources
    }

    pub(crate) fn settings(&self) -> Result<Settings> {
        Ok(Settings::load(&self.sources())?)
    }
}

/// The setting flags given, as `(key, value)`.
#[derive(Clone, Default)]
struct SettingFlags(Vec<(String, String)>);

impl FromArgMatches for SettingFlags {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut flags = Self::default();
        flags.update_from_arg_matches(matches)?;
        Ok(flags)
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        for flag in FLAGS {
            if let Some(value) = matches.get_one::<String>(flag.key) {
                self.0.push((flag.key.to_owned(), value.clone()));
            }
        }
        Ok(())
    }
}

impl Args for SettingFlags {
    fn augment_args(mut command: clap::Command) -> clap::Command {
        for flag in FLAGS {
            let long = flag.long();
            let mut arg = clap::Arg::new(flag.key)
                .long(long.trim_start_matches('-').to_owned())
                .help(format!("{} [env: {}]", flag.help, flag.env()));
            arg = match flag.kind {
                // A bare `--allow-insecure-http` means true.
                Kind::Bool => arg
                    .num_args(0..=1)
                    .default_missing_value("true")
                    .value_name("BOOL"),
                _ => arg.num_args(1).value_name(flag.key.to_ascii_uppercase()),
            };
            command = command.arg(arg);
        }
        command
    }

    fn augment_args_for_update(command: clap::Command) -> clap::Command {
        Self::augment_args(command)
    }
}

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Cli::parse().command).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // One line with every cause, without a backtrace: this is for operators.
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> Result<()> {
    match command {
        Command::Serve(args) => {
            let settings = args.settings()?;
            let traces = init_logs(settings.log_format)?;
            let mut server = Server::new(settings.clone());
            // Before anything records a metric (the issuers' first JWKS fetches).
            if settings.listeners.metrics.is_some() {
                server = server.with_metrics(prometheus()?);
            }
            let served = server.run(shutdown_signal()).await;
            if let Some(traces) = traces {
                traces.shutdown().await;
            }
            Ok(served?)
        }
        Command::CheckConfig(args) => {
            let settings = args.settings()?;
            println!("# oidc-logout: effective settings (secrets shown as ***)");
            for warning in &settings.warnings {
                println!("# warning: {warning}");
            }
            print!("{}", settings.to_redacted_toml());
            Ok(())
        }
        Command::Demo(args) => {
            init_logs(LogFormat::Text)?;
            demo::run(args).await
        }
        Command::Op(command) => {
            init_logs(LogFormat::Text)?;
            op::run(command).await
        }
        Command::Sessions(command) => {
            init_logs(LogFormat::Text)?;
            sessions::sessions(command).await
        }
        Command::Revoke(args) => {
            init_logs(LogFormat::Text)?;
            sessions::revoke(args).await
        }
    }
}

/// Logs go to stderr, filtered by `RUST_LOG` (default `info`). Text lines escape control
/// characters in every field and message (a value from a request cannot start a forged line or
/// send terminal escapes); JSON escapes them by itself, and names the line's span and the spans
/// it is in (the request's, with its id). With the feature `otel` and an OTLP endpoint set, the
/// same spans are exported as traces (`otel.rs`); what flushes them is returned.
fn init_logs(format: LogFormat) -> Result<Option<Traces>> {
    use tracing_subscriber::field::MakeExt as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::{EnvFilter, Layer as _};
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs = match format {
        LogFormat::Json => logs
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .boxed(),
        _ => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .fmt_fields(
                tracing_subscriber::fmt::format::debug_fn(|writer, field, value| {
                    let text = escape_controls(&format!("{value:?}"));
                    if field.name() == "message" {
                        write!(writer, "{text}")
                    } else {
                        write!(writer, "{field}={text}")
                    }
                })
                .delimited(" "),
            )
            .boxed(),
    };
    let registry = tracing_subscriber::registry().with(filter).with(logs);
    #[cfg(feature = "otel")]
    {
        let (traces, flush) = match otel::layer()? {
            Some((layer, flush)) => (Some(layer), Some(flush)),
            None => (None, None),
        };
        registry.with(traces).init();
        Ok(flush.map(Traces))
    }
    #[cfg(not(feature = "otel"))]
    {
        registry.init();
        Ok(None)
    }
}

/// What flushes the exported traces at exit (nothing without the feature `otel`).
struct Traces(#[cfg(feature = "otel")] otel::Traces);

impl Traces {
    async fn shutdown(self) {
        #[cfg(feature = "otel")]
        self.0.shutdown().await;
    }
}

/// `text` with every control character written as an escape (`\n`, `\u{1b}`).
fn escape_controls(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_owned();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Install the Prometheus recorder; returns what renders `/metrics`.
fn prometheus() -> Result<oidc_logout::server::MetricsRender> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(telemetry::REQUEST_DURATION.to_owned()),
            telemetry::LATENCY_BUCKETS,
        )
        .context("metrics buckets")?
        .install_recorder()
        .context("cannot install the metrics recorder")?;
    Ok(Arc::new(move || handle.render()))
}
