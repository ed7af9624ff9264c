//! Load + compile + swap of 10,000 routes, in process: the config that `benches/gen_routes.py`
//! writes (1,000 hosts × 10 routes: regex, header matches, weighted subsets, retries, timeouts;
//! DestinationRules for half the hosts, a STATIC ServiceEntry per host) is read from disk by the
//! real gateway. Reports medians of:
//!   - `config::load_path` (files → typed model),
//!   - `compile::compile` (validation + route tables + clusters),
//!   - `Gateway::reload` (load, admit/compile, diff, snapshot build, `ArcSwap::store`, the old
//!     snapshot dropped): what a config change costs. One VirtualService is changed between
//!     reloads so that every reload applies.
//!
//! `cargo bench --bench load_10k` (release, 15 samples each); under `cargo test` a few only.
//! Reading files and compiling VirtualServices use every core the process may use (`src/par.rs`);
//! `MESHGATE_CONFIG_THREADS=1` measures one.
//! Needs `python3` (the generator). The allocator is mimalloc, as in the `meshgate` binary
//! (with glibc malloc, half of the time goes into malloc/free), and a reload's config work runs
//! in a fresh mimalloc heap, as the binary's does (`src/config_heap.rs`);
//! `LOAD_10K_PLAIN_HEAP=1` measures without that.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use meshgate::{Gateway, Settings};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const HOSTS: usize = 1_000;
const ROUTES: usize = HOSTS * 10;

fn generate(dir: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/gen_routes.py");
    let status = Command::new("python3")
        .arg(&script)
        .arg(dir)
        .arg("--hosts")
        .arg(HOSTS.to_string())
        .status()
        .expect("python3 benches/gen_routes.py");
    assert!(status.success(), "gen_routes.py failed");
}

/// A small extra VirtualService whose direct-response body changes with `i`.
fn toggle(dir: &Path, i: usize) {
    let yaml = format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\n\
         metadata: {{name: toggle, namespace: bench}}\n\
         spec:\n  hosts: [toggle.example.com]\n  gateways: [gw]\n  http:\n\
         \x20 - directResponse: {{status: 200, body: {{string: v{i}}}}}\n"
    );
    std::fs::write(dir.join("zz-toggle.yaml"), yaml).unwrap();
}

fn median(mut samples: Vec<Duration>) -> String {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    format!(
        "median {:>7.1} ms, min {:>7.1} ms, max {:>7.1} ms ({} samples)",
        ms(samples[samples.len() / 2]),
        ms(samples[0]),
        ms(*samples.last().unwrap()),
        samples.len()
    )
}

fn time<T>(n: usize, mut f: impl FnMut(usize) -> T) -> Vec<Duration> {
    (0..n)
        .map(|i| {
            let start = Instant::now();
            let out = f(i);
            let took = start.elapsed();
            drop(out);
            took
        })
        .collect()
}

/// The binary's `config_heap` hook, the same file: a reload's config work allocates from a fresh
/// mimalloc heap.
#[path = "../src/fresh_heap.rs"]
mod fresh_heap;

fn main() {
    if std::env::var_os("LOAD_10K_PLAIN_HEAP").is_none() {
        meshgate::config_heap::set(fresh_heap::fresh_heap);
    }
    let full = std::env::args().any(|a| a == "--bench");
    let n = if full { 15 } else { 2 };
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path());
    toggle(dir.path(), 0);

    let load = time(n, |_| {
        let (resources, report) = meshgate::config::load_path(dir.path(), "default");
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        resources
    });
    println!("load_10k: load_path           {}", median(load));
    let (resources, _) = meshgate::config::load_path(dir.path(), "default");
    let opts = meshgate::compile::Options::default();
    let compile = time(n, |_| {
        let (compiled, report) = meshgate::compile::compile(&resources, &opts);
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        let compiled = compiled.unwrap();
        assert_eq!(compiled.summary.routes, ROUTES + 1);
        compiled
    });
    println!("load_10k: compile             {}", median(compile));
    drop(resources);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut settings = Settings::new(dir.path());
        settings.bind = "127.0.0.1".parse().unwrap();
        settings.ephemeral_ports = true;
        settings.admin = None;
        settings.health = None;
        settings.stats = None;
        let gw = Arc::new(Gateway::start(settings).await.expect("start"));
        let mut samples = Vec::with_capacity(n);
        for i in 1..=n {
            toggle(dir.path(), i);
            let start = Instant::now();
            let diff = gw.reload().await.expect("reload");
            samples.push(start.elapsed());
            assert!(diff.is_some(), "reload {i} changed nothing");
            assert_eq!(gw.snapshot().summary.routes, ROUTES + 1);
        }
        println!("load_10k: reload (load+compile+swap) {}", median(samples));
        gw.shutdown().await;
    });
}
