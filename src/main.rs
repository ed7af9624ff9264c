//! The `meshgate` command: run the gateway, validate config, or explain how a request would be
//! routed. No logic of its own.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use meshgate::{Gateway, Settings, StartError};

/// mimalloc instead of the system allocator: fewer instructions per allocation on the request
/// path and memory handed back after a spike (`benches/RESULTS.md` has the A/B). The
/// `system-allocator` feature builds without it, for heap profilers that see only `malloc`.
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

// `config_heap`'s hook (`fresh_heap::fresh_heap`), in a file of its own so that
// `benches/load_10k.rs` registers the very same one.
#[cfg(not(feature = "system-allocator"))]
mod fresh_heap;

/// How often an idle runtime thread hands freed memory back to the OS: soon after idle
/// connections park (2 s of quiet, `--park-idle-after`) their buffers are back with the OS.
const COLLECT_EVERY: std::time::Duration = std::time::Duration::from_secs(2);
/// The same while the overload manager is past its shed threshold: memory returned promptly is
/// what lets the level ease once the connections that raised it are gone.
const COLLECT_EVERY_UNDER_PRESSURE: std::time::Duration = std::time::Duration::from_millis(100);

/// Called when a runtime thread parks (has nothing to run): at most once per `COLLECT_EVERY`,
/// the thread collects its mimalloc heap, so the pages a traffic spike used go back to the OS.
/// mimalloc purges a thread's free pages only when that thread allocates or collects, and an
/// idle worker does neither: before this, RSS stayed at its peak after every connection closed.
fn collect_when_idle() {
    use std::cell::Cell;
    use std::time::Instant;
    thread_local!(static LAST: Cell<Option<Instant>> = const { Cell::new(None) });
    let now = Instant::now();
    let every = if meshgate::proxy::memory_pressure() {
        COLLECT_EVERY_UNDER_PRESSURE
    } else {
        COLLECT_EVERY
    };
    let due = LAST.with(|last| match last.get() {
        // A tenth of slack: the wake-up tick below comes every `COLLECT_EVERY`, and a park a
        // little less than that after the last collect would otherwise wait for the next tick.
        Some(t) if now.duration_since(t) + every / 10 < every => false,
        _ => {
            last.set(Some(now));
            true
        }
    });
    #[cfg(not(feature = "system-allocator"))]
    if due {
        // SAFETY: `mi_collect` has no preconditions: it frees and purges what the calling
        // thread's own heap no longer uses (and abandoned segments); it is mimalloc's API for
        // exactly this, and mimalloc is the global allocator (`ALLOC` above). Exercised by every
        // test that runs the binary (each parks its runtime thread).
        unsafe { libmimalloc_sys::mi_collect(true) };
    }
    #[cfg(feature = "system-allocator")]
    let _ = due;
}

#[derive(Parser, Debug)]
#[command(
    name = "meshgate",
    version,
    about = "An ingress gateway that serves Istio Gateway/VirtualService/DestinationRule/ServiceEntry config"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Config file or directory (every *.yaml / *.yml below it, recursively).
    #[arg(long, short = 'c', env = "MESHGATE_CONFIG")]
    config: Option<PathBuf>,
    /// Address every listener binds to.
    #[arg(long, default_value = "0.0.0.0", env = "MESHGATE_BIND")]
    bind: IpAddr,
    /// Serve a Gateway port on another local address, e.g. `--listen 80=127.0.0.1:8080`. Repeatable.
    #[arg(long, value_parser = parse_listen)]
    listen: Vec<(u16, SocketAddr)>,
    /// Do not watch the config path for changes (SIGHUP still reloads).
    #[arg(long)]
    no_watch: bool,
    /// Quiet period after a file change before reloading, in milliseconds.
    #[arg(long, default_value_t = 50)]
    reload_debounce_ms: u64,
    /// Value of the `server` response header (empty: pass the upstream's through).
    #[arg(long, default_value = "istio-envoy")]
    server_header: String,
    /// All or nothing: refuse the whole config on any error (at start: exit 1; on reload: keep
    /// the last good one) instead of skipping the resources with errors.
    #[arg(long)]
    strict: bool,
    /// Admin API address (`off` disables it). Loopback by default: it can reload and fail health checks.
    #[arg(long, default_value = "127.0.0.1:15000", value_parser = parse_optional_addr)]
    admin_address: OptionalAddr,
    /// Readiness endpoint `/healthz/ready` for load balancers and Kubernetes (`off` disables it).
    #[arg(long, default_value = "0.0.0.0:15021", value_parser = parse_optional_addr)]
    health_address: OptionalAddr,
    /// Prometheus endpoint `/stats/prometheus` (`off` disables it).
    #[arg(long, default_value = "0.0.0.0:15090", value_parser = parse_optional_addr)]
    stats_address: OptionalAddr,
    /// On SIGTERM: how long to keep serving with readiness failing, so load balancers stop
    /// sending (Istio's terminationDrainDuration), in seconds.
    #[arg(long, default_value_t = 5.0)]
    drain_duration: f64,
    /// Access log on stdout: `text` (Istio's default Envoy format), `json`, or `off`.
    #[arg(long, default_value = "text", value_parser = ["text", "json", "off"])]
    access_log_format: String,
    /// Then: how long in-flight requests may take to finish before the process exits, in seconds.
    #[arg(long, default_value_t = 30.0)]
    drain_timeout: f64,
    /// Percent of the traces started at the gateway that are sampled, 0-100 (Istio's `sampling`).
    /// An incoming traceparent/B3 keeps its own decision; `x-client-trace-id` forces sampling.
    #[arg(long, default_value_t = 1.0, value_parser = parse_percent)]
    trace_sampling: f64,
    /// Export a span per sampled request to this OTLP/HTTP collector (protobuf), e.g.
    /// `http://otel-collector:4318/v1/traces`.
    #[arg(long, env = "MESHGATE_OTLP_ENDPOINT", value_parser = parse_otlp_endpoint)]
    otlp_endpoint: Option<http::Uri>,
    #[command(flatten)]
    common: Common,
    /// Listen backlog of every Gateway port (capped by net.core.somaxconn).
    #[arg(long, default_value_t = 4096)]
    listen_backlog: u32,
    /// Seconds from the first byte of an HTTP/1 request head to its end before a 408 (0: off).
    #[arg(long, default_value_t = 10.0, value_parser = parse_seconds)]
    request_headers_timeout: f64,
    /// Seconds a request may see no bytes move before its response starts: 408 (0: off; Envoy's
    /// own default is 300, istiod turns it off at gateways).
    #[arg(long, default_value_t = 0.0, value_parser = parse_seconds)]
    stream_idle_timeout: f64,
    /// Seconds a downstream connection may stay idle (no request, no bytes) before it is closed (0: off).
    #[arg(long, default_value_t = 3600.0, value_parser = parse_seconds)]
    idle_timeout: f64,
    /// Seconds after which a downstream connection is drained (GOAWAY / connection: close) (0: off).
    #[arg(long, default_value_t = 0.0, value_parser = parse_seconds)]
    max_connection_duration: f64,
    /// Requests per downstream connection; the last one closes it (0: unlimited).
    #[arg(long, default_value_t = 0)]
    max_requests_per_connection: u64,
    /// Open downstream connections (all Gateway ports); more are accepted and closed (0: unlimited).
    #[arg(long, default_value_t = 0)]
    max_connections: usize,
    /// Overload manager: past this resident memory (e.g. `900Mi`), keep-alive is off and new
    /// requests get `503 envoy overloaded` (flag OM). Default: off.
    #[arg(long, value_parser = meshgate::proxy::parse_bytes)]
    overload_shed_memory: Option<u64>,
    /// Overload manager: past this resident memory, new connections are refused. Default: off.
    #[arg(long, value_parser = meshgate::proxy::parse_bytes)]
    overload_refuse_memory: Option<u64>,
    /// Folder of TLS credentials: `<dir>/<credentialName>/tls.crt`, `tls.key`, `ca.crt` (a
    /// Kubernetes Secret volume's layout; the client CA may also be in `<credentialName>-cacert/`).
    #[arg(long, env = "MESHGATE_CREDENTIALS_DIR")]
    credentials_dir: Option<PathBuf>,
    /// Seconds a client has to finish its TLS handshake on an HTTPS port (0: off).
    #[arg(long, default_value_t = 15.0, value_parser = parse_seconds)]
    tls_handshake_timeout: f64,
    /// Seconds an HTTP/1 connection may be quiet (no request in flight, no bytes) before it is
    /// parked: its read and write buffers are freed until its next request (0: never).
    #[arg(long, default_value_t = 2.0, value_parser = parse_seconds)]
    park_idle_after: f64,
    /// Worker threads (Envoy's `--concurrency`). Default: the CPUs this process may run on. With
    /// one, a single-threaded runtime serves every connection in the order it became ready
    /// (no work-stealing queues: no connection waits behind others' overflow).
    #[arg(long)]
    concurrency: Option<usize>,
}

/// Seconds as a float, 0 or more.
fn parse_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..1e9).contains(&v) => Ok(v),
        _ => Err(format!("{s:?}: expected seconds, 0 or more (0: off)")),
    }
}

/// `0` is off.
fn seconds(v: f64) -> Option<std::time::Duration> {
    (v > 0.0).then(|| std::time::Duration::from_secs_f64(v))
}

#[derive(clap::Args, Debug, Clone)]
struct Common {
    /// Namespace of resources without metadata.namespace.
    #[arg(long, default_value = "default", env = "MESHGATE_DEFAULT_NAMESPACE")]
    default_namespace: String,
    /// Namespace the gateway runs in, as Istio sees the gateway pod (exportTo, DestinationRule lookup).
    #[arg(long, default_value = "istio-system", env = "MESHGATE_PROXY_NAMESPACE")]
    proxy_namespace: String,
    /// The gateway's mesh identity for DestinationRule `tls.mode: ISTIO_MUTUAL`: a folder with
    /// Istio's file-mounted workload certificate (`cert-chain.pem`, `key.pem`, `root-cert.pem`).
    /// Without it, ISTIO_MUTUAL upstreams get plain text (with a warning).
    #[arg(long, env = "MESHGATE_MESH_CERTS_DIR")]
    mesh_certs_dir: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check config: print every error and warning; exit 1 on any error.
    Validate {
        /// Config file or directory.
        path: PathBuf,
        /// Treat warnings (unknown fields, unsupported features) as errors.
        #[arg(long)]
        strict: bool,
        /// Folder of TLS credentials, as for serving: `credentialName` files are checked only
        /// when it is given (certificate, key, CA and CRL files named by path always are).
        #[arg(long, env = "MESHGATE_CREDENTIALS_DIR")]
        credentials_dir: Option<PathBuf>,
        #[command(flatten)]
        common: Common,
    },
    /// Explain how a request would be routed by a config: listener, virtual host, every route
    /// tried and why it did not match, the chosen rule and its action.
    ///
    /// Example: meshgate explain --config config/ 'GET http://shop.example.com/cart/1' -H 'x-canary: yes'
    Explain {
        /// Config file or directory.
        #[arg(long, short = 'c')]
        config: PathBuf,
        /// `[METHOD] URL`, as one argument or two: `'GET http://host[:port]/path?query'`. The
        /// URL's port is the Gateway port (default 80). A bare `/path` needs `--host`.
        #[arg(required = true, num_args = 1..=2)]
        request: Vec<String>,
        /// A request header, `name: value`. Repeatable.
        #[arg(short = 'H', long = "header")]
        headers: Vec<String>,
        /// `Host` for a bare path.
        #[arg(long)]
        host: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Probe a running gateway's readiness endpoint: exit 0 if `GET http://ADDRESS/healthz/ready`
    /// answers 200, 1 otherwise. For a container HEALTHCHECK (a scratch image has no curl).
    Health {
        /// The `--health-address` of the gateway to probe.
        #[arg(long, default_value = "127.0.0.1:15021")]
        address: SocketAddr,
        /// Path to GET.
        #[arg(long, default_value = "/healthz/ready")]
        path: String,
        /// Connect and read timeout, in seconds.
        #[arg(long, default_value_t = 2.0)]
        timeout: f64,
    },
}

fn parse_listen(s: &str) -> Result<(u16, SocketAddr), String> {
    let (port, addr) = s
        .split_once('=')
        .ok_or("expected PORT=ADDR:PORT, e.g. 80=127.0.0.1:8080")?;
    let port = port
        .parse()
        .map_err(|e| format!("bad gateway port {port:?}: {e}"))?;
    let addr = addr
        .parse()
        .map_err(|e| format!("bad address {addr:?}: {e}"))?;
    Ok((port, addr))
}

fn parse_percent(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(p) if (0.0..=100.0).contains(&p) => Ok(p),
        _ => Err(format!("expected a percentage from 0 to 100, got {s:?}")),
    }
}

/// An `http://host:port/path` URL (no TLS to the collector yet).
fn parse_otlp_endpoint(s: &str) -> Result<http::Uri, String> {
    let uri: http::Uri = s.parse().map_err(|e| format!("bad URL {s:?}: {e}"))?;
    match (uri.scheme_str(), uri.authority()) {
        (Some("http"), Some(_)) => Ok(uri),
        _ => Err(format!(
            "expected http://host:port/v1/traces (OTLP/HTTP, no TLS), got {s:?}"
        )),
    }
}

/// `ADDR:PORT`, or `off`.
#[derive(Debug, Clone, Copy)]
struct OptionalAddr(Option<SocketAddr>);

fn parse_optional_addr(s: &str) -> Result<OptionalAddr, String> {
    if s == "off" {
        return Ok(OptionalAddr(None));
    }
    s.parse()
        .map(|a| OptionalAddr(Some(a)))
        .map_err(|e| format!("bad address {s:?} (ADDR:PORT or off): {e}"))
}

fn compile_options(common: &Common) -> meshgate::compile::Options {
    meshgate::compile::Options {
        proxy_namespace: common.proxy_namespace.clone(),
        mesh_certs_dir: common.mesh_certs_dir.clone(),
        ..Default::default()
    }
}

/// Turns transparent huge pages off for this process, unless `MIMALLOC_ALLOW_THP` says otherwise.
///
/// On hosts with THP `always` (or with mimalloc v3, which asks for huge pages on its arenas) the
/// heap is backed by 2 MiB pages, and one stays resident while any block on it is live: a few
/// idle connections spread over the pages a burst of requests used keep that burst's memory.
/// Off, as Redis and most databases advise; the heap of a proxy is small, its TLB reach not what
/// it lacks.
fn disable_huge_pages() {
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_some() {
        return;
    }
    // SAFETY: `prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0)` reads no memory of ours; it sets a flag
    // the kernel checks when it backs this process's memory. Nothing else to uphold.
    let _ = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
}

fn main() -> ExitCode {
    disable_huge_pages();
    #[cfg(not(feature = "system-allocator"))]
    meshgate::config_heap::set(fresh_heap::fresh_heap);
    let cli = Cli::parse();
    init_logging();
    match cli.command {
        Some(Command::Validate {
            path,
            strict,
            credentials_dir,
            common,
        }) => validate(&path, strict, credentials_dir.as_deref(), &common),
        Some(Command::Explain {
            config,
            request,
            headers,
            host,
            json,
            common,
        }) => explain(&config, &request, &headers, host.as_deref(), json, &common),
        Some(Command::Health {
            address,
            path,
            timeout,
        }) => health(address, &path, timeout),
        None => {
            let Some(config) = cli.config.clone() else {
                eprintln!(
                    "meshgate: --config <dir|file> is required (or use `meshgate validate <path>`)"
                );
                return ExitCode::from(2);
            };
            run(cli, config)
        }
    }
}

/// Logs to stderr at the level `RUST_LOG` gives (`info`, `debug`, `meshgate=debug,hyper=info`).
///
/// `Targets` rather than `EnvFilter`: EnvFilter's span/field syntax pulls in regex-automata's
/// full-DFA builder for every regex in the process, which made compiling route regexes 5x slower.
fn init_logging() {
    use tracing_subscriber::prelude::*;
    let spec = std::env::var("RUST_LOG").unwrap_or_default();
    let filter = match spec.parse::<tracing_subscriber::filter::Targets>() {
        Ok(t) if !spec.trim().is_empty() => t,
        Ok(_) => tracing_subscriber::filter::Targets::new().with_default(tracing::Level::INFO),
        Err(e) => {
            eprintln!("meshgate: ignoring RUST_LOG={spec:?}: {e}");
            tracing_subscriber::filter::Targets::new().with_default(tracing::Level::INFO)
        }
    };
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .with(filter)
        .init();
}

fn validate(
    path: &std::path::Path,
    strict: bool,
    credentials_dir: Option<&std::path::Path>,
    common: &Common,
) -> ExitCode {
    let (compiled, report) =
        meshgate::load_and_compile(path, &common.default_namespace, &compile_options(common));
    // The files the config names, read as serving reads them (serving only logs these).
    let file_errors = compiled
        .as_ref()
        .map(|c| meshgate::tls::check::files(c, credentials_dir))
        .unwrap_or_default();
    for e in &report.errors {
        println!("error: {e}");
    }
    for e in &file_errors {
        println!("error: {e}");
    }
    for w in &report.warnings {
        println!("warning: {w}");
    }
    let errors = report.errors.len() + file_errors.len();
    let failed = errors > 0 || (strict && !report.warnings.is_empty());
    match compiled {
        Some(c) if !failed => {
            println!("ok: {} ({} warnings)", c.summary, report.warnings.len());
            ExitCode::SUCCESS
        }
        _ => {
            println!(
                "invalid: {} errors, {} warnings{}",
                errors,
                report.warnings.len(),
                if strict && errors == 0 {
                    " (--strict)"
                } else {
                    ""
                }
            );
            ExitCode::from(1)
        }
    }
}

/// `meshgate explain`: compiles the config as `validate` does (falling back to what the gateway
/// would serve, resources with errors skipped, when there are errors) and explains one request.
/// Exit 0 once explained (whatever the outcome), 1 if nothing compiled, 2 for a bad request.
fn explain(
    config: &std::path::Path,
    request: &[String],
    headers: &[String],
    host: Option<&str>,
    json: bool,
    common: &Common,
) -> ExitCode {
    use meshgate::explain::{explain, render_text, ChainView, PortView, Target, Upstreams};
    let joined = request.join(" ");
    let (method, url) = match joined.split_once(char::is_whitespace) {
        Some((m, u)) => (m, u.trim()),
        None => ("GET", joined.as_str()),
    };
    let target = match Target::parse(method, url, host, headers) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("meshgate explain: {e}");
            return ExitCode::from(2);
        }
    };
    let opts = compile_options(common);
    let (compiled, report) = meshgate::load_and_compile(config, &common.default_namespace, &opts);
    for e in &report.errors {
        eprintln!("error: {e}");
    }
    let compiled = match compiled {
        Some(c) => c,
        None => {
            let (resources, load_report) =
                meshgate::config::load_path(config, &common.default_namespace);
            match meshgate::compile::admit(resources, load_report, None, &opts, &Default::default())
            {
                Ok(a) if !a.compiled.listeners.is_empty() => {
                    for sk in &a.skipped {
                        eprintln!("note: {sk}");
                    }
                    eprintln!("note: explaining what the gateway would serve: the resources with errors skipped");
                    a.compiled
                }
                _ => {
                    eprintln!(
                        "meshgate explain: nothing compiled: {} error(s)",
                        report.errors.len()
                    );
                    return ExitCode::from(1);
                }
            }
        }
    };
    let chains: Vec<Vec<ChainView>> = compiled
        .listeners
        .iter()
        .map(|l| l.chains.iter().map(ChainView::compiled).collect())
        .collect();
    let listeners: Vec<PortView> = compiled
        .listeners
        .iter()
        .zip(&chains)
        .map(|(l, chains)| PortView {
            port: l.port,
            table: &l.table,
            chains,
        })
        .collect();
    let port = target.gateway_port().unwrap_or(80);
    let ex = explain(
        &target,
        port,
        &listeners,
        Upstreams::Offline(&compiled.clusters),
    );
    if json {
        match serde_json::to_string_pretty(&ex) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("meshgate explain: {e}");
                return ExitCode::from(1);
            }
        }
    } else {
        print!("{}", render_text(&ex));
    }
    ExitCode::SUCCESS
}

/// `meshgate health`: one blocking HTTP/1.1 GET, no runtime; prints the status line (or the error).
fn health(address: SocketAddr, path: &str, timeout: f64) -> ExitCode {
    use std::io::{Read, Write};
    let timeout = std::time::Duration::from_secs_f64(timeout.max(0.001));
    let probe = || -> std::io::Result<String> {
        let mut s = std::net::TcpStream::connect_timeout(&address, timeout)?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {address}\r\nUser-Agent: meshgate-health\r\nConnection: close\r\n\r\n"
        )?;
        let mut head = Vec::new();
        let mut buf = [0u8; 256];
        while !head.contains(&b'\n') && head.len() < 4096 {
            let n = s.read(&mut buf)?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        let line = String::from_utf8_lossy(&head);
        Ok(line.lines().next().unwrap_or("").trim().to_owned())
    };
    match probe() {
        Ok(status) if status.split_whitespace().nth(1) == Some("200") => {
            println!("{address}{path}: {status}");
            ExitCode::SUCCESS
        }
        Ok(status) => {
            println!("{address}{path}: not ready: {status:?}");
            ExitCode::from(1)
        }
        Err(e) => {
            println!("{address}{path}: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli, config: PathBuf) -> ExitCode {
    let workers = cli.concurrency.filter(|n| *n > 0).unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    // One worker: tokio's single-threaded scheduler, one FIFO run queue. The multi-threaded one
    // with one worker keeps 256 ready tasks in its local queue and moves the overflow to a
    // global queue it visits rarely: at 512 connections half of them waited there, and p99 was
    // ten times p50 (benches/RESULTS.md, 2026-12-02). Same instructions and syscalls per request.
    let mut builder = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(workers);
        b
    };
    let runtime = match builder
        .enable_all()
        .on_thread_park(collect_when_idle)
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("meshgate: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    // The gateway runs in a task, not in `block_on` on this thread: its config loads then happen
    // on a runtime thread, which hands the load's freed memory back when it next parks
    // (`collect_when_idle`). On the main thread it stayed resident: 10,000 routes, 68 -> 48 MiB.
    let serve = async move {
        // Wakes the runtime now and then, so an idle process parks again after a spike and
        // `collect_when_idle` runs once it is due.
        tokio::spawn(async {
            let mut tick = tokio::time::interval(COLLECT_EVERY);
            loop {
                tick.tick().await;
            }
        });
        let signals = install_signals();
        let mut settings = Settings::new(config.clone());
        settings.bind = cli.bind;
        settings.listen = cli.listen.into_iter().collect::<HashMap<_, _>>();
        settings.server_header = (!cli.server_header.is_empty()).then_some(cli.server_header);
        settings.default_namespace = cli.common.default_namespace.clone();
        settings.strict = cli.strict;
        settings.admin = cli.admin_address.0;
        settings.health = cli.health_address.0;
        settings.stats = cli.stats_address.0;
        settings.access_log = match cli.access_log_format.as_str() {
            "json" => Some((
                meshgate::telemetry::Format::Json,
                meshgate::telemetry::Sink::Stdout,
            )),
            "off" => None,
            _ => Some((
                meshgate::telemetry::Format::Text,
                meshgate::telemetry::Sink::Stdout,
            )),
        };
        settings.compile = compile_options(&cli.common);
        settings.limits = meshgate::proxy::Limits {
            listen_backlog: cli.listen_backlog,
            request_headers_timeout: seconds(cli.request_headers_timeout),
            stream_idle_timeout: seconds(cli.stream_idle_timeout),
            idle_timeout: seconds(cli.idle_timeout),
            max_connection_duration: seconds(cli.max_connection_duration),
            max_requests_per_connection: (cli.max_requests_per_connection > 0)
                .then_some(cli.max_requests_per_connection),
            max_connections: (cli.max_connections > 0).then_some(cli.max_connections),
            overload: meshgate::proxy::OverloadLimits {
                shed_memory: cli.overload_shed_memory,
                refuse_memory: cli.overload_refuse_memory,
            },
            tls_handshake_timeout: seconds(cli.tls_handshake_timeout),
            park_idle_after: seconds(cli.park_idle_after),
        };
        settings.credentials_dir = cli.credentials_dir.clone();
        settings.tracing = meshgate::telemetry::TraceSettings {
            sampling: cli.trace_sampling,
            otlp_endpoint: cli.otlp_endpoint.clone(),
        };
        let gateway = match Gateway::start(settings).await {
            Ok(g) => std::sync::Arc::new(g),
            Err(StartError::Config(report)) => {
                for e in &report.errors {
                    eprintln!("error: {e}");
                }
                eprintln!(
                    "meshgate: not started: {} config error(s)",
                    report.errors.len()
                );
                return ExitCode::from(1);
            }
            Err(e) => {
                eprintln!("meshgate: {e}");
                return ExitCode::from(1);
            }
        };
        if let Err(e) = gateway.start_ops().await {
            eprintln!("meshgate: {e}");
            return ExitCode::from(1);
        }
        let _watcher = if cli.no_watch {
            None
        } else {
            let debounce = std::time::Duration::from_millis(cli.reload_debounce_ms);
            match meshgate::reload::watch(gateway.clone(), &config, debounce) {
                Ok(w) => Some(w),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch the config; reload with SIGHUP");
                    None
                }
            }
        };
        wait_for_signals(&gateway, signals).await;
        let drain = std::time::Duration::from_secs_f64(cli.drain_duration.max(0.0));
        let timeout = std::time::Duration::from_secs_f64(cli.drain_timeout.max(0.0));
        gateway.start_draining();
        tracing::info!(
            drain_secs = drain.as_secs_f64(),
            "draining: readiness fails, still serving"
        );
        tokio::select! {
            _ = tokio::time::sleep(drain) => {}
            _ = second_signal() => {
                tracing::info!("second signal: exiting now");
                return ExitCode::SUCCESS;
            }
        }
        tracing::info!("shutting down: no new connections; in-flight requests finish");
        tokio::select! {
            _ = gateway.shutdown() => {}
            _ = tokio::time::sleep(timeout) => tracing::warn!("drain timeout: exiting with requests in flight"),
            _ = second_signal() => tracing::info!("second signal: exiting now"),
        }
        ExitCode::SUCCESS
    };
    runtime.block_on(async move {
        tokio::spawn(serve).await.unwrap_or_else(|e| {
            eprintln!("meshgate: {e}");
            ExitCode::from(70)
        })
    })
}

type Signal = tokio::signal::unix::Signal;

/// SIGHUP and SIGTERM handlers, installed first thing.
fn install_signals() -> Option<(Signal, Signal)> {
    use tokio::signal::unix::{signal, SignalKind};
    Some((
        signal(SignalKind::hangup()).ok()?,
        signal(SignalKind::terminate()).ok()?,
    ))
}

/// The next SIGTERM or SIGINT.
async fn second_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// SIGHUP reloads the config; SIGINT/SIGTERM stop the gateway.
///
/// `signals` were installed before the gateway started, so a SIGHUP arriving while it starts is
/// held for the loop below rather than killing the process (SIGHUP's default action).
async fn wait_for_signals(gateway: &Gateway, signals: Option<(Signal, Signal)>) {
    let Some((mut hup, mut term)) = signals else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    loop {
        tokio::select! {
            _ = hup.recv() => {
                let _ = gateway.reload().await;
            }
            _ = term.recv() => return,
            _ = tokio::signal::ctrl_c() => return,
        }
    }
}
