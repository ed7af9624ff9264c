//! The running gateway: loads and compiles config, builds the snapshot, binds one listener per
//! Gateway server port, and reloads. The only writer of the snapshot `ArcSwap`.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::HeaderValue;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::compile::{self, Compiled, Summary};
use crate::config::{self, Report};
use crate::proxy::{self, Shared};
use crate::snapshot::Snapshot;
use crate::upstream::{Clients, Registry, Resolver};

/// How the gateway runs (the CLI flags).
#[derive(Debug, Clone)]
pub struct Settings {
    /// A YAML file or a directory of them.
    pub config: PathBuf,
    /// Address listeners bind to. Default is `0.0.0.0`.
    pub bind: IpAddr,
    /// Per Gateway port, a different local address (`--listen 80=127.0.0.1:8080`); port 0 picks one.
    pub listen: HashMap<u16, SocketAddr>,
    /// Bind every listener without its own `listen` entry to port 0 on `bind` (tests, side-by-side
    /// runs); `Gateway::addr` tells where each Gateway port ended up. Default is `false`.
    pub ephemeral_ports: bool,
    /// `server` response header; `None` leaves the upstream's. Default is `istio-envoy`.
    pub server_header: Option<String>,
    /// Namespace of resources that do not set one. Default is `default`.
    pub default_namespace: String,
    pub compile: compile::Options,
}

impl Settings {
    pub fn new(config: impl Into<PathBuf>) -> Self {
        Settings {
            config: config.into(),
            bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            listen: HashMap::new(),
            ephemeral_ports: false,
            server_header: Some("istio-envoy".into()),
            default_namespace: "default".into(),
            compile: compile::Options::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("the configuration has {} error(s)", .0.errors.len())]
    Config(Report),
    #[error("cannot listen on {addr} for Gateway port {port}: {source}")]
    Bind {
        port: u16,
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A running gateway.
pub struct Gateway {
    shared: Arc<Shared>,
    settings: Settings,
    registry: Registry,
    resolver: Resolver,
    generation: AtomicU64,
    addrs: BTreeMap<u16, SocketAddr>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// Loads and compiles the config at `path`: everything `meshgate validate` checks.
pub fn load_and_compile(
    path: &Path,
    default_namespace: &str,
    opts: &compile::Options,
) -> (Option<Compiled>, Report) {
    let (resources, mut report) = config::load_path(path, default_namespace);
    if !report.is_ok() {
        return (None, report);
    }
    let (compiled, compile_report) = compile::compile(&resources, opts);
    report.extend(compile_report);
    (compiled, report)
}

impl Gateway {
    /// Loads the config and starts serving. Fails on any config error or bind failure.
    pub async fn start(settings: Settings) -> Result<Gateway, StartError> {
        let (compiled, report) = load_and_compile(
            &settings.config,
            &settings.default_namespace,
            &settings.compile,
        );
        for w in &report.warnings {
            tracing::warn!("{w}");
        }
        let Some(compiled) = compiled else {
            return Err(StartError::Config(report));
        };
        let registry = Registry::default();
        let resolver = Resolver::from_system();
        let snapshot = Snapshot::build(compiled, 1, &registry, &resolver).await;
        tracing::info!(generation = 1, "config loaded: {}", snapshot.summary);
        let ports: Vec<u16> = snapshot.ports().collect();
        let shared = Arc::new(Shared {
            snapshot: ArcSwap::from_pointee(snapshot),
            clients: Clients::new(),
            server_header: settings
                .server_header
                .as_deref()
                .and_then(|s| HeaderValue::from_str(s).ok()),
            hostname: std::env::var("HOSTNAME").unwrap_or_else(|_| "meshgate".into()),
        });
        let (stop, stop_rx) = watch::channel(false);
        let mut addrs = BTreeMap::new();
        let mut tasks = Vec::new();
        for port in ports {
            let default_port = if settings.ephemeral_ports { 0 } else { port };
            let addr = settings
                .listen
                .get(&port)
                .copied()
                .unwrap_or(SocketAddr::new(settings.bind, default_port));
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Bind { port, addr, source })?;
            let local =
                listener
                    .local_addr()
                    .map_err(|source| StartError::Bind { port, addr, source })?;
            tracing::info!(gateway_port = port, addr = %local, "listening");
            addrs.insert(port, local);
            tasks.push(tokio::spawn(proxy::serve(
                listener,
                port,
                shared.clone(),
                stop_rx.clone(),
            )));
        }
        Ok(Gateway {
            shared,
            settings,
            registry,
            resolver,
            generation: AtomicU64::new(1),
            addrs,
            stop,
            tasks,
        })
    }

    /// The local address serving a Gateway server port.
    pub fn addr(&self, gateway_port: u16) -> Option<SocketAddr> {
        self.addrs.get(&gateway_port).copied()
    }

    pub fn addrs(&self) -> &BTreeMap<u16, SocketAddr> {
        &self.addrs
    }

    /// The snapshot requests are served from now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.shared.snapshot.load_full()
    }

    /// Re-reads the config and swaps in the new routes. On any error the current config stays
    /// and the errors are returned. (Listener ports are fixed at start for now.)
    pub async fn reload(&self) -> Result<Summary, Report> {
        let s = &self.settings;
        let (compiled, report) = load_and_compile(&s.config, &s.default_namespace, &s.compile);
        for w in &report.warnings {
            tracing::warn!("{w}");
        }
        let Some(compiled) = compiled else {
            for e in &report.errors {
                tracing::error!("{e}");
            }
            tracing::error!(
                "config reload failed; still serving generation {}",
                self.generation.load(Ordering::Relaxed)
            );
            return Err(report);
        };
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        let snapshot = Snapshot::build(compiled, generation, &self.registry, &self.resolver).await;
        let summary = snapshot.summary.clone();
        self.shared.snapshot.store(Arc::new(snapshot));
        tracing::info!(generation, "config reloaded: {summary}");
        Ok(summary)
    }

    /// Stops accepting, lets in-flight requests finish, and waits for the listeners to end.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}
