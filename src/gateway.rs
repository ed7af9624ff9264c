//! The running gateway: loads and compiles config, builds the snapshot, binds one listener per
//! Gateway server port, and applies reloads. The only writer of the snapshot `ArcSwap`.
//!
//! A reload: load → admit (bad resources skipped or kept at their last good version, see
//! `compile::admit`; all or nothing with `--strict`) → compile (taking the served config's
//! compiled regexes, `compile::RegexCache`) → build the snapshot → bind listeners for new ports →
//! one `ArcSwap::store` → stop listeners of removed ports (they drain). A failure on the way
//! leaves the running config untouched.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use http::HeaderValue;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{watch, Mutex};
use tokio::task::JoinHandle;

use crate::compile::{self, Compiled, Summary};
use crate::config::{self, Diff, Report, Served};
use crate::config_heap;
use crate::ops;
use crate::proxy::{self, Shared};
use crate::snapshot::Snapshot;
use crate::telemetry::{self, AccessLog, IstioMetrics, Tracer};
use crate::tls::{CredentialWatcher, Credentials};
use crate::upstream::{Registry, Resolver};

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
    /// All or nothing: any error refuses the whole config (at start and on reload) instead of
    /// skipping the resources at fault. Default is `false`.
    pub strict: bool,
    /// Admin API address. Default `127.0.0.1:15000` (Envoy's admin port, loopback only).
    pub admin: Option<SocketAddr>,
    /// Readiness (`/healthz/ready`) address. Default `0.0.0.0:15021` (Istio's status port).
    pub health: Option<SocketAddr>,
    /// Prometheus (`/stats/prometheus`) address. Default `0.0.0.0:15090` (Istio's).
    pub stats: Option<SocketAddr>,
    /// Access log format and destination; `None` is off. Default off (the CLI turns it on).
    pub access_log: Option<(telemetry::Format, telemetry::Sink)>,
    /// Trace sampling and span export. Default is 1% sampling, no export.
    pub tracing: telemetry::TraceSettings,
    pub compile: compile::Options,
    /// Downstream connection limits and timeouts (backlog, request headers / stream idle / idle
    /// timeouts, max connection duration, max requests per connection, max connections).
    /// Default is `proxy::Limits::default()`.
    pub limits: proxy::Limits,
    /// Where `credentialName`s of HTTPS servers are folders (`tls.crt`, `tls.key`, `ca.crt`, as
    /// a Kubernetes Secret volume lays them out). Default is none: credentials cannot load.
    pub credentials_dir: Option<PathBuf>,
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
            strict: false,
            admin: Some(SocketAddr::from(([127, 0, 0, 1], 15000))),
            health: Some(SocketAddr::from(([0, 0, 0, 0], 15021))),
            stats: Some(SocketAddr::from(([0, 0, 0, 0], 15090))),
            access_log: None,
            tracing: telemetry::TraceSettings::default(),
            compile: compile::Options::default(),
            limits: proxy::Limits::default(),
            credentials_dir: None,
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

/// Why a reload was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("the configuration has {} error(s); still serving generation {generation}", .report.errors.len())]
    Config { report: Report, generation: u64 },
    #[error("{source}; still serving generation {generation}")]
    Bind { source: StartError, generation: u64 },
}

/// The outcome of the last reloads, published on a watch channel (tests and the future admin API
/// wait on it; nothing polls).
#[derive(Debug, Clone)]
pub struct Status {
    /// Generation of the active config; 1 at start, +1 per applied reload.
    pub generation: u64,
    /// `Resources::fingerprint` of the active config.
    pub fingerprint: u64,
    /// When the active config was applied.
    pub applied_at: SystemTime,
    pub successes: u64,
    pub failures: u64,
    /// Reloads that found nothing changed (not counted as successes).
    pub unchanged: u64,
    /// Reloads applied with some resources skipped or kept at their last good version.
    pub partial: u64,
    /// Errors of the last load (at start or reload), cleared by the next load without errors.
    pub last_errors: Vec<String>,
    /// Resources not served at their version on disk (see `compile::admit`), as of the last load.
    pub skipped: Vec<compile::Skipped>,
}

/// A running gateway.
pub struct Gateway {
    shared: Arc<Shared>,
    settings: Settings,
    registry: Registry,
    resolver: Resolver,
    /// HTTPS certificates, kept across reloads and rotated in place by `_cert_watch`.
    credentials: Arc<Credentials>,
    _cert_watch: CredentialWatcher,
    /// Serialises reloads; holds what the next reload compares against.
    state: Mutex<State>,
    /// Gateway port → local address, for `addr()`. Swapped whole on reload.
    addrs: ArcSwap<BTreeMap<u16, SocketAddr>>,
    status: watch::Sender<Status>,
    health: Arc<ops::Health>,
    /// The operations servers (admin, health, stats), once `start_ops` ran.
    ops: Mutex<Vec<(OpsPort, Listener)>>,
    /// Their sockets, bound by `start` and served by `start_ops`.
    ops_sockets: std::sync::Mutex<Vec<(OpsPort, TcpListener, SocketAddr)>>,
}

/// The operations ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpsPort {
    Admin,
    Health,
    Stats,
}

struct State {
    /// What the next reload compares against and puts back from.
    served: Served,
    listeners: BTreeMap<u16, Listener>,
    /// The served config's regexes, which the next reload takes instead of compiling again.
    regexes: compile::RegexCache,
}

/// One accept loop: its address, its stop switch and its task.
struct Listener {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Loads and compiles the config at `path`: everything `meshgate validate` checks.
///
/// Resources that loaded are validated even when others failed to load, so one run shows every
/// problem (a reference into a file that did not load may then be reported as well).
pub fn load_and_compile(
    path: &Path,
    default_namespace: &str,
    opts: &compile::Options,
) -> (Option<Compiled>, Report) {
    let (resources, mut report) = config::load_path(path, default_namespace);
    let load_ok = report.is_ok();
    let (compiled, compile_report) = compile::compile(&resources, opts);
    report.extend(compile_report);
    (compiled.filter(|_| load_ok), report)
}

/// Runs config work (load and compile take tens of milliseconds for thousands of routes) without
/// holding up the other tasks of the runtime worker it is called on: on a multi-thread runtime
/// the worker first hands them to another thread (`block_in_place`).
fn off_worker<R>(f: impl FnOnce() -> R) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Loads and admits the config: what is served, or why nothing can be. `previous` is the last good
/// config (on reload), `reuse` its compiled regexes.
fn load(
    s: &Settings,
    previous: Option<&Served>,
    reuse: &compile::RegexCache,
) -> Result<compile::Admitted, Report> {
    let (resources, report) = config::load_path(&s.config, &s.default_namespace);
    let refuse = |mut report: Report, why: &str| {
        report.error(
            &config::Source::new(Arc::new(s.config.clone()), 0),
            "",
            config::ErrorKind::Note(why.into()),
        );
        report
    };
    if report.is_ok() && resources.is_empty() {
        // Most likely a file caught mid-edit (deleted before being re-created): serving nothing
        // would close every listener.
        return Err(refuse(
            report,
            "no Istio networking resources found; an empty config is not applied",
        ));
    }
    let admitted = if s.strict {
        if !report.is_ok() {
            return Err(report);
        }
        let (compiled, compile_report) = compile::compile_reusing(&resources, &s.compile, reuse);
        let mut report = report;
        report.extend(compile_report);
        let Some(compiled) = compiled else {
            return Err(report);
        };
        compile::Admitted {
            resources,
            compiled,
            report,
            skipped: Vec::new(),
        }
    } else {
        match compile::admit(resources, report, previous, &s.compile, reuse) {
            Ok(a) => a,
            Err(e) => {
                return Err(Report {
                    errors: vec![*e],
                    warnings: Vec::new(),
                })
            }
        }
    };
    if !admitted.report.is_ok() && admitted.compiled.listeners.is_empty() {
        return Err(refuse(
            admitted.report,
            "nothing left to serve once the resources with errors are skipped; not applied",
        ));
    }
    Ok(admitted)
}

/// Binds the operations ports the settings ask for (admin, health, stats).
async fn bind_ops(s: &Settings) -> Result<Vec<(OpsPort, TcpListener, SocketAddr)>, StartError> {
    let mut sockets = Vec::new();
    for (which, addr) in [
        (OpsPort::Admin, s.admin),
        (OpsPort::Health, s.health),
        (OpsPort::Stats, s.stats),
    ] {
        let Some(mut addr) = addr else { continue };
        if s.ephemeral_ports {
            addr = SocketAddr::new(s.bind, 0);
        }
        let bind_error = |source| StartError::Bind {
            port: addr.port(),
            addr,
            source,
        };
        let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
        let local = listener.local_addr().map_err(bind_error)?;
        sockets.push((which, listener, local));
    }
    Ok(sockets)
}

/// Logs what a load skipped, at error level, and publishes the count per kind.
fn log_skipped(admitted: &compile::Admitted) {
    for e in &admitted.report.errors {
        tracing::error!("{e}");
    }
    for sk in &admitted.skipped {
        tracing::error!("{sk}");
    }
    for kind in [
        config::Kind::Gateway,
        config::Kind::VirtualService,
        config::Kind::DestinationRule,
        config::Kind::ServiceEntry,
    ] {
        let n = admitted
            .skipped
            .iter()
            .filter(|s| s.id.kind == kind)
            .count();
        metrics::gauge!("meshgate_config_resources_skipped", "kind" => kind.to_string())
            .set(n as f64);
    }
}

impl Gateway {
    /// Loads the config and starts serving. Fails on any config error or bind failure.
    pub async fn start(settings: Settings) -> Result<Gateway, StartError> {
        ops::stats::install();
        let admitted =
            load(&settings, None, &compile::RegexCache::default()).map_err(StartError::Config)?;
        for w in &admitted.report.warnings {
            tracing::warn!("{w}");
        }
        log_skipped(&admitted);
        let compile::Admitted {
            resources,
            mut compiled,
            report,
            skipped,
        } = admitted;
        let regexes = std::mem::take(&mut compiled.regexes);
        let registry = Registry::default();
        let resolver = Resolver::from_system();
        let credentials = Arc::new(Credentials::new(settings.credentials_dir.clone()));
        let snapshot = Snapshot::build(compiled, 1, &registry, &resolver, &credentials).await;
        // Before any listener: a rotation right after start is not missed.
        let cert_watch = crate::tls::watch(credentials.clone()).await;
        tracing::info!(generation = 1, "config loaded: {}", snapshot.summary);
        let ports: Vec<u16> = snapshot.ports().collect();
        let workload = settings
            .compile
            .proxy_labels
            .get("app")
            .cloned()
            .unwrap_or_else(|| "istio-ingressgateway".into());
        let shared = Arc::new(Shared::new(
            snapshot,
            settings
                .server_header
                .as_deref()
                .and_then(|s| HeaderValue::from_str(s).ok()),
            IstioMetrics::new(&workload, &settings.compile.proxy_namespace),
            settings
                .access_log
                .as_ref()
                .map(|(format, sink)| AccessLog::start(*format, sink)),
            Tracer::new(
                &settings.tracing,
                &format!("{workload}.{}", settings.compile.proxy_namespace),
            ),
        ));
        crate::proxy::overload_start(settings.limits.overload, &shared.overload);
        // The operations sockets first: once a gateway port accepts, a flood of connections can
        // take every descriptor, and an operations port that then fails to bind ended the process.
        let ops_sockets = bind_ops(&settings).await?;
        let mut listeners = BTreeMap::new();
        for port in ports {
            let (listener, addr) = bind(&settings, port).await?;
            listeners.insert(
                port,
                spawn_listener(listener, addr, port, &shared, settings.limits),
            );
        }
        let addrs = listeners.iter().map(|(p, l)| (*p, l.addr)).collect();
        let status = Status {
            generation: 1,
            fingerprint: resources.fingerprint(),
            applied_at: SystemTime::now(),
            successes: 0,
            failures: 0,
            unchanged: 0,
            partial: 0,
            last_errors: report.errors.iter().map(|e| e.to_string()).collect(),
            skipped,
        };
        publish_metrics(1, status.fingerprint);
        let served = Served::new(&resources, &settings.default_namespace);
        drop(resources);
        Ok(Gateway {
            shared,
            settings,
            registry,
            resolver,
            _cert_watch: cert_watch,
            credentials,
            state: Mutex::new(State {
                served,
                listeners,
                regexes,
            }),
            addrs: ArcSwap::from_pointee(addrs),
            status: watch::Sender::new(status),
            health: Arc::new(ops::Health::default()),
            ops: Mutex::new(Vec::new()),
            ops_sockets: std::sync::Mutex::new(ops_sockets),
        })
        .inspect(|gw| gw.health.set_live())
    }

    /// Serves the operations ports the settings ask for (admin, health, stats), bound by `start`
    /// before any gateway port accepts. Separate from `start` because the admin API needs the
    /// gateway itself. (`Result` kept for callers; binding errors come from `start`.)
    pub async fn start_ops(self: &Arc<Self>) -> Result<(), StartError> {
        let sockets =
            std::mem::take(&mut *self.ops_sockets.lock().unwrap_or_else(|e| e.into_inner()));
        let mut servers = Vec::new();
        for (which, listener, local) in sockets {
            let endpoint: ops::Endpoint = match which {
                OpsPort::Admin => ops::admin(Arc::downgrade(self)),
                OpsPort::Health => {
                    let health = self.health.clone();
                    Arc::new(move |req| {
                        let reply = ops::health_endpoint(&health, &req);
                        Box::pin(async move { reply })
                    })
                }
                OpsPort::Stats => {
                    let gw = Arc::downgrade(self);
                    Arc::new(move |req| {
                        let snapshot = gw.upgrade().map(|g| g.snapshot());
                        let reply = ops::stats_endpoint(&req, snapshot.as_deref());
                        Box::pin(async move { reply })
                    })
                }
            };
            tracing::info!(port = ?which, addr = %local, "operations endpoint listening");
            let (stop, stop_rx) = watch::channel(false);
            let task = tokio::spawn(ops::serve(listener, endpoint, stop_rx));
            servers.push((
                which,
                Listener {
                    addr: local,
                    stop,
                    task,
                },
            ));
        }
        self.ops.lock().await.extend(servers);
        Ok(())
    }

    /// Where an operations server listens (after `start_ops`).
    pub fn ops_addr(&self, which: OpsPort) -> Option<SocketAddr> {
        self.ops
            .try_lock()
            .ok()?
            .iter()
            .find(|(w, _)| *w == which)
            .map(|(_, l)| l.addr)
    }

    /// SIGTERM's first step: readiness fails at once (load balancers stop sending), responses
    /// carry `connection: close`, HTTP/2 connections get a GOAWAY; listeners keep accepting.
    pub fn start_draining(&self) {
        self.health.start_draining();
        self.shared.start_draining();
    }

    /// Open downstream connections on the Gateway ports.
    pub fn open_connections(&self) -> usize {
        self.shared.open_connections()
    }

    /// Readiness (and the operator's health-check switch).
    pub fn health(&self) -> &ops::Health {
        &self.health
    }

    /// The local address serving a Gateway server port.
    pub fn addr(&self, gateway_port: u16) -> Option<SocketAddr> {
        self.addrs.load().get(&gateway_port).copied()
    }

    /// Every Gateway port being served and its local address.
    pub fn addrs(&self) -> BTreeMap<u16, SocketAddr> {
        (**self.addrs.load()).clone()
    }

    /// The snapshot requests are served from now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.shared.snapshot.load_full()
    }

    /// Reload outcomes; `changed()` wakes on every reload attempt.
    pub fn status(&self) -> watch::Receiver<Status> {
        self.status.subscribe()
    }

    /// Re-reads the config and applies it if it is valid and different. On any error the running
    /// config stays, every error is logged, and the failure is counted.
    pub async fn reload(&self) -> Result<Option<Diff>, ReloadError> {
        let mut state = self.state.lock().await;
        let s = &self.settings;
        let current = self.status.borrow().generation;
        // In fresh memory: the old config's freed blocks are cold (`config_heap`).
        let admitted = match off_worker(|| {
            config_heap::run(|| load(s, Some(&state.served), &state.regexes))
        }) {
            Ok(a) => a,
            Err(report) => {
                for e in &report.errors {
                    tracing::error!("{e}");
                }
                tracing::error!(
                    generation = current,
                    "config reload failed with {} error(s); still serving the last good config",
                    report.errors.len()
                );
                self.count_failure(report.errors.iter().map(|e| e.to_string()).collect());
                return Err(ReloadError::Config {
                    report,
                    generation: current,
                });
            }
        };
        log_skipped(&admitted);
        let compile::Admitted {
            resources,
            mut compiled,
            report,
            skipped,
        } = admitted;
        let regexes = std::mem::take(&mut compiled.regexes);
        let errors: Vec<String> = report.errors.iter().map(|e| e.to_string()).collect();
        let diff = Diff::between(&state.served, &resources);
        if diff.is_empty() {
            if !errors.is_empty() {
                // Every change on disk was refused: the bad resources keep their last good version.
                tracing::error!(
                    generation = current,
                    "config reload refused: {} error(s); still serving the last good config",
                    errors.len()
                );
                self.count_failure(errors);
                self.status.send_modify(|st| st.skipped = skipped);
                return Err(ReloadError::Config {
                    report,
                    generation: current,
                });
            }
            tracing::debug!("config unchanged; nothing to reload");
            self.status.send_modify(|st| {
                st.unchanged += 1;
                st.last_errors.clear();
                st.skipped = skipped;
            });
            return Ok(None);
        }
        for w in &report.warnings {
            tracing::warn!("{w}");
        }

        // Bind new ports before anything changes, so a bind failure changes nothing.
        let generation = current + 1;
        let snapshot = Snapshot::build(
            compiled,
            generation,
            &self.registry,
            &self.resolver,
            &self.credentials,
        )
        .await;
        let mut new_sockets = Vec::new();
        for port in snapshot
            .ports()
            .filter(|p| !state.listeners.contains_key(p))
        {
            match bind(s, port).await {
                Ok(pair) => new_sockets.push((port, pair)),
                Err(e) => {
                    tracing::error!("{e}; config reload not applied");
                    self.count_failure(vec![e.to_string()]);
                    return Err(ReloadError::Bind {
                        source: e,
                        generation: current,
                    });
                }
            }
        }
        let removed: Vec<u16> = state
            .listeners
            .keys()
            .copied()
            .filter(|p| snapshot.table(*p).is_none())
            .collect();
        let summary: Summary = snapshot.summary.clone();

        let old_snapshot = self.shared.snapshot.swap(Arc::new(snapshot));

        for (port, (listener, addr)) in new_sockets {
            state.listeners.insert(
                port,
                spawn_listener(listener, addr, port, &self.shared, self.settings.limits),
            );
        }
        for port in &removed {
            if let Some(l) = state.listeners.remove(port) {
                tracing::info!(gateway_port = port, addr = %l.addr, "stopped listening (removed by reload); draining");
                let _ = l.stop.send(true);
                // The accept loop exits at once (open connections drain on their own tasks), so
                // once reload returns the port no longer accepts.
                let _ = l.task.await;
            }
        }
        self.addrs.store(Arc::new(
            state.listeners.iter().map(|(p, l)| (*p, l.addr)).collect(),
        ));
        let fingerprint = resources.fingerprint();
        let old_served = std::mem::replace(
            &mut state.served,
            Served::new(&resources, &s.default_namespace),
        );
        let old_regexes = std::mem::replace(&mut state.regexes, regexes);
        drop(state);
        // What the old config held is freed on a blocking thread: with 10,000 routes that is
        // milliseconds this reload need not wait for. Unless a request still holds the old
        // snapshot (it then frees it when it finishes), no runtime worker pays for it.
        drop(tokio::task::spawn_blocking(move || {
            drop((old_snapshot, old_served, old_regexes, resources))
        }));

        let result = if errors.is_empty() {
            "success"
        } else {
            "partial"
        };
        metrics::counter!("meshgate_config_reloads_total", "result" => result).increment(1);
        let previous = self.status.borrow().fingerprint;
        metrics::gauge!("meshgate_config_info", "fingerprint" => format!("{previous:016x}"))
            .set(0.0);
        publish_metrics(generation, fingerprint);
        tracing::info!(generation, "config reloaded: {diff}; {summary}");
        if !skipped.is_empty() {
            tracing::error!(
                generation,
                "{} resource(s) not served as written (see the errors above)",
                skipped.len()
            );
        }
        self.status.send_modify(|st| {
            st.generation = generation;
            st.fingerprint = fingerprint;
            st.applied_at = SystemTime::now();
            if errors.is_empty() {
                st.successes += 1;
            } else {
                st.partial += 1;
            }
            st.last_errors = errors;
            st.skipped = skipped;
        });
        Ok(Some(diff))
    }

    /// A reload that applied nothing because of errors.
    fn count_failure(&self, errors: Vec<String>) {
        metrics::counter!("meshgate_config_reloads_total", "result" => "failure").increment(1);
        self.status.send_modify(|st| {
            st.failures += 1;
            st.last_errors = errors;
        });
    }

    /// Stops accepting on every port and waits until every open connection has finished its
    /// in-flight requests and closed (callers bound the wait).
    pub async fn shutdown(&self) {
        self.stop_accepting().await;
        self.shared.connections_closed().await;
    }

    /// Stops accepting on every port (open connections finish their requests on their own).
    pub async fn stop_accepting(&self) {
        for (_, l) in self.ops.lock().await.drain(..) {
            let _ = l.stop.send(true);
            let _ = l.task.await;
        }
        let mut state = self.state.lock().await;
        let listeners = std::mem::take(&mut state.listeners);
        for l in listeners.values() {
            let _ = l.stop.send(true);
        }
        for (_, l) in listeners {
            let _ = l.task.await;
        }
    }
}

async fn bind(settings: &Settings, port: u16) -> Result<(TcpListener, SocketAddr), StartError> {
    let default_port = if settings.ephemeral_ports { 0 } else { port };
    let addr = settings
        .listen
        .get(&port)
        .copied()
        .unwrap_or(SocketAddr::new(settings.bind, default_port));
    let listener = listen(addr, settings.limits.listen_backlog)
        .map_err(|source| StartError::Bind { port, addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| StartError::Bind { port, addr, source })?;
    Ok((listener, local))
}

/// A listening socket with `SO_REUSEADDR` (as `TcpListener::bind` sets) and our backlog (tokio's
/// is 1024; the kernel caps it at `net.core.somaxconn`).
fn listen(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}

fn spawn_listener(
    listener: TcpListener,
    addr: SocketAddr,
    port: u16,
    shared: &Arc<Shared>,
    limits: proxy::Limits,
) -> Listener {
    tracing::info!(gateway_port = port, %addr, "listening");
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(proxy::serve(
        listener,
        port,
        shared.clone(),
        limits,
        stop_rx,
    ));
    Listener { addr, stop, task }
}

/// Gauges describing the active config (exported once the metrics endpoint lands).
fn publish_metrics(generation: u64, fingerprint: u64) {
    metrics::gauge!("meshgate_config_generation").set(generation as f64);
    metrics::gauge!("meshgate_config_last_reload_success_timestamp_seconds").set(unix_now());
    metrics::gauge!("meshgate_config_info", "fingerprint" => format!("{fingerprint:016x}"))
        .set(1.0);
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
