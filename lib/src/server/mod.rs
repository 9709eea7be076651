//! The library server: what `oidc-logout serve` runs, for anyone's `main`.
//!
//! [`Server::run`] turns validated [`Settings`] into a running service, top to bottom: fetch
//! every issuer's keys, connect the index (Redis, or memory), build the one [`Core`] with its
//! after-logout hook (refresh-token revocation), mount each configured input on top of it (in
//! turn, [`inputs`](crate::inputs): each builds its router from its own settings), bind the
//! listeners (main; metrics and health; the admin API's own), and serve them until the
//! shutdown future resolves, then let in-flight requests finish for the grace period. Nothing here parses flags or installs a logger or a metrics exporter: that is the
//! caller's, as in `src/main.rs`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{IssuerSettings, Limits, Settings};
use crate::core::{AfterLogout, Core};
use crate::index::{
    IndexSettings, MemoryDirectory, MemoryIndex, RecordStore, RedisIndex, SessionIndex,
    UserDirectory,
};
use crate::inputs::backchannel::PATH;
use crate::inputs::{Mount, Place};
use crate::provider::{Provider, http_client};
use crate::rp::RefreshTokenRevocation;
use crate::telemetry;

mod admission;
mod error;
mod head_scan;
pub(crate) mod http;

pub use self::error::ServerError;

/// Renders the metrics exposition served at `/metrics` on the metrics listener.
#[doc(hidden)]
pub type MetricsRender = Arc<dyn Fn() -> String + Send + Sync>;

/// A service built from [`Settings`]; see the module docs.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use oidc_logout::config::{Settings, Sources};
/// use oidc_logout::server::{Server, shutdown_signal};
///
/// // What `oidc-logout serve` runs: the settings from a file, the environment and no flags.
/// let settings = Settings::load(&Sources::from_env(Some("/etc/oidc-logout.toml".into())))?;
/// Server::new(settings).run(shutdown_signal()).await?;
/// # Ok(()) }
/// ```
pub struct Server {
    settings: Settings,
    metrics: Option<MetricsRender>,
    memory: Option<MemoryIndex>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("settings", &self.settings)
            .field("metrics", &self.metrics.is_some())
            .finish()
    }
}

/// A server whose listeners are bound: ready to [`run`](Bound::run).
pub struct Bound {
    main: (TcpListener, Router),
    metrics: Option<(TcpListener, Router)>,
    admin: Option<(TcpListener, Router)>,
    gateway: Option<(TcpListener, Router)>,
    grace: Duration,
    limits: Limits,
}

impl std::fmt::Debug for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bound")
            .field("main", &self.main.0.local_addr().ok())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// A server for `settings`.
    pub fn new(settings: Settings) -> Self {
        Self {
            settings,
            metrics: None,
            memory: None,
        }
    }

    /// Serve `/metrics` on the metrics listener with what `render` returns (e.g. a Prometheus
    /// exporter's handle). Without it the metrics listener serves the health checks only.
    #[must_use]
    pub fn with_metrics(mut self, render: MetricsRender) -> Self {
        self.metrics = Some(render);
        self
    }

    /// Use this in-memory index when no Redis is configured (to see into it, as the demo does).
    #[must_use]
    pub fn with_memory_index(mut self, index: MemoryIndex) -> Self {
        self.memory = Some(index);
        self
    }

    /// Load keys, connect, build every input and bind the listeners.
    pub async fn bind(self) -> Result<Bound, ServerError> {
        for warning in &self.settings.warnings {
            tracing::warn!("{warning}");
        }
        let http = http_client().map_err(ServerError::Http)?;
        let mut issuers = Vec::with_capacity(self.settings.issuers.len());
        for issuer in &self.settings.issuers {
            let name = &issuer.policy.issuer;
            let provider = Provider::discover(name, http.clone(), issuer.provider.clone())
                .await
                .map_err(|source| ServerError::Issuer {
                    setting: self.settings.name("issuer"),
                    issuer: name.clone(),
                    source,
                })?;
            issuers.push((provider, issuer));
        }
        let inputs = Inputs {
            settings: &self.settings,
            issuers,
            http,
            metrics: self.metrics,
        };
        match &self.settings.redis {
            Some(target) => {
                let index = RedisIndex::connect_to(target, self.settings.index.clone())
                    .await
                    .map_err(|source| ServerError::Redis {
                        setting: self.settings.name("redis_url"),
                        target: target.redacted(),
                        source,
                    })?;
                // The applications' session records live in the same Redis: revoke their
                // refresh tokens when their sessions end.
                let mut revocation = RefreshTokenRevocation::new(index.clone());
                if let Some(keys) = &self.settings.token_keys {
                    revocation = revocation.with_token_keys(keys.clone());
                }
                let revocation = inputs
                    .issuers
                    .iter()
                    .fold(revocation, |r, (provider, issuer)| {
                        match &issuer.revocation {
                            Some(clients) => r.with_issuer(Arc::clone(provider), clients.clone()),
                            None => r,
                        }
                    });
                let directory = index.clone();
                inputs
                    .bind(index, directory, Some(Arc::new(revocation)))
                    .await
            }
            // No application shares an in-memory index with a standalone receiver: there are
            // no refresh tokens to revoke.
            None => {
                let index = self.memory.unwrap_or_else(|| {
                    MemoryIndex::new(IndexSettings::clone(&self.settings.index))
                });
                inputs.bind(index, MemoryDirectory::new(), None).await
            }
        }
    }

    /// [`bind`](Self::bind), then [`run`](Bound::run) until `shutdown` resolves.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        self.bind().await?.run(shutdown).await
    }
}

/// What the inputs are built from.
struct Inputs<'a> {
    settings: &'a Settings,
    issuers: Vec<(Arc<Provider>, &'a IssuerSettings)>,
    http: reqwest::Client,
    metrics: Option<MetricsRender>,
}

impl Inputs<'_> {
    /// One core over `index`; each enabled input on top of it; the routers on their listeners.
    async fn bind<S: SessionIndex + RecordStore, D: UserDirectory>(
        self,
        index: S,
        directory: D,
        after_logout: Option<Arc<dyn AfterLogout>>,
    ) -> Result<Bound, ServerError> {
        let settings = self.settings;
        let mut core = Core::builder(index).clock_skew(settings.clock_skew);
        for (_, issuer) in &self.issuers {
            core = core
                .issuer_with_lifetime(issuer.policy.issuer.clone(), issuer.access_token_lifetime)
                .sid_logout(issuer.policy.issuer.clone(), issuer.sid_logout);
        }
        if let Some(hook) = after_logout {
            core = core.after_logout(hook);
        }
        let core = core.build();

        let mount = Mount {
            core: &core,
            settings,
            issuers: &self.issuers,
            http: &self.http,
            directory: &directory,
        };
        let mut main = Router::new();
        let mut health = Router::new();
        let mut admin_api: Option<Router> = None;
        let mut gateway_api = Router::new();
        for mounted in crate::inputs::mount_all(&mount).await? {
            if let Some(h) = mounted.health {
                health = health.merge(h);
            }
            match mounted.place {
                Place::Main => main = main.merge(mounted.router),
                Place::Admin => {
                    admin_api = Some(match admin_api {
                        Some(routes) => routes.merge(mounted.router),
                        None => mounted.router,
                    });
                }
                Place::Gateway => gateway_api = gateway_api.merge(mounted.router),
            }
        }
        main = main.merge(health.clone());
        let listeners = &settings.listeners;
        let main_listener = bind(listeners.main, settings.name("listen")).await?;
        tracing::info!("listening on http://{}{PATH}", local(&main_listener));
        let admin = match (admin_api, listeners.admin) {
            (Some(router), Some(address)) => {
                let listener = bind(address, settings.name("admin_listen")).await?;
                tracing::info!(
                    "admin API on http://{}{}",
                    local(&listener),
                    crate::inputs::admin::PREFIX
                );
                Some((listener, telemetry::observe(router)))
            }
            (Some(router), None) => {
                tracing::info!(
                    "admin API on the main listener under {}",
                    crate::inputs::admin::PREFIX
                );
                main = main.merge(router);
                None
            }
            (None, _) => None,
        };
        let gateway = match listeners.gateway {
            Some(address) => {
                let listener = bind(address, settings.name("gateway_listen")).await?;
                tracing::info!(
                    "forward-auth check on http://{}{}",
                    local(&listener),
                    crate::inputs::gateway::CHECK_PATH
                );
                Some((
                    listener,
                    telemetry::observe(gateway_api.merge(health.clone())),
                ))
            }
            None => None,
        };
        let metrics = match listeners.metrics {
            None => None,
            Some(address) => {
                let listener = bind(address, settings.name("metrics_listen")).await?;
                tracing::info!("metrics and health on http://{}/metrics", local(&listener));
                let mut router =
                    health.layer(axum::Extension(crate::inputs::backchannel::HealthDetail));
                if let Some(render) = self.metrics {
                    router = router.route(
                        "/metrics",
                        axum::routing::get(move || std::future::ready(render())),
                    );
                }
                Some((listener, router))
            }
        };
        Ok(Bound {
            main: (main_listener, telemetry::observe(main)),
            metrics,
            admin,
            gateway,
            grace: listeners.shutdown_grace,
            limits: listeners.limits.clone(),
        })
    }
}

/// Connections the kernel may queue for a listener before accepting them: deep enough that a
/// burst of connections (a flood the admission sheds) does not make the kernel drop an OP's
/// connection attempt, which would cost it a SYN retransmission (a second). The kernel caps it
/// at `net.core.somaxconn` (4,096 by default on current Linux).
const LISTEN_BACKLOG: u32 = 4096;

async fn bind(address: SocketAddr, setting: String) -> Result<TcpListener, ServerError> {
    let failed = |source| ServerError::Bind {
        address,
        setting: setting.clone(),
        source,
    };
    let socket = if address.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(failed)?;
    // As std's listener does: a restarted receiver binds while old connections linger.
    #[cfg(unix)]
    socket.set_reuseaddr(true).map_err(failed)?;
    socket.bind(address).map_err(failed)?;
    socket.listen(LISTEN_BACKLOG).map_err(failed)
}

fn local(listener: &TcpListener) -> String {
    listener
        .local_addr()
        .map_or_else(|_| "?".to_owned(), |a| a.to_string())
}

impl Bound {
    /// The main listener's address (with the port the system chose for port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.main.0.local_addr().ok()
    }

    /// Serve every listener until `shutdown` resolves; then stop accepting, let in-flight
    /// requests finish for the grace period, and return.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            tracing::info!("shutting down: finishing in-flight requests");
            let _ = stop.send(true);
        });
        // The main listener takes what the file descriptors allow, less what the others may
        // hold, so an attack on it leaves room for metrics, the admin API, the gateways and
        // Redis. The gateways keep many connections open to the check, one per worker.
        let side = 32;
        let gateway_places = if self.gateway.is_some() { 256 } else { 0 };
        let main_limits = Limits {
            max_connections: Some(self.limits.max_connections.unwrap_or_else(|| {
                http::connection_budget()
                    .saturating_sub(2 * side + gateway_places)
                    .max(16)
            })),
            ..self.limits.clone()
        };
        let side_limits = Limits {
            max_connections: Some(side),
            ..self.limits.clone()
        };
        let gateway_limits = Limits {
            max_connections: Some(gateway_places.max(side)),
            ..self.limits
        };
        let serving = futures_util::future::try_join4(
            serve("main", Some(self.main), main_limits, stopped.clone()),
            serve(
                "metrics",
                self.metrics,
                side_limits.clone(),
                stopped.clone(),
            ),
            serve("admin", self.admin, side_limits, stopped.clone()),
            serve("gateway", self.gateway, gateway_limits, stopped.clone()),
        );
        let grace = self.grace;
        let deadline = async move {
            let mut stopped = stopped;
            let _ = stopped.wait_for(|s| *s).await;
            tokio::time::sleep(grace).await;
        };
        tokio::select! {
            result = serving => {
                result?;
                tracing::info!("stopped");
                Ok(())
            }
            () = deadline => {
                tracing::warn!("requests still running {grace:?} after the shutdown signal; exiting anyway");
                Ok(())
            }
        }
    }
}

/// Serve one listener until stopped, under the listeners' limits.
async fn serve(
    name: &'static str,
    listener: Option<(TcpListener, Router)>,
    limits: Limits,
    stopped: watch::Receiver<bool>,
) -> Result<(), ServerError> {
    if let Some((listener, router)) = listener {
        http::serve(name, listener, router, limits, stopped).await;
    }
    Ok(())
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM: the usual shutdown signal for [`Server::run`].
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
