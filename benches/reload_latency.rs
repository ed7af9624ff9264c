//! Time from a config file write (rename-over) to the new route table being live, through the
//! real watcher, loader, compiler and snapshot swap. Reports median and p99.
//!
//! `cargo bench --bench reload_latency` (release); under `cargo test` it runs a few iterations only.

use std::sync::Arc;
use std::time::{Duration, Instant};

use meshgate::{Gateway, Settings};

fn config(routes: usize, body: usize) -> String {
    let mut yaml = String::from("apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec:\n  servers:\n  - port: {number: 8080, name: http, protocol: HTTP}\n    hosts: [\"*\"]\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: vs}\nspec:\n  hosts: [\"*\"]\n  gateways: [gw]\n  http:\n");
    for i in 0..routes {
        yaml.push_str(&format!("  - match: [{{uri: {{prefix: /r{i}/}}}}]\n    directResponse: {{status: 200, body: {{string: v{body}}}}}\n"));
    }
    yaml
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn run(debounce: Duration, routes: usize, iterations: usize) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.yaml");
    std::fs::write(&file, config(routes, 0)).unwrap();
    let mut settings = Settings::new(dir.path());
    settings.bind = "127.0.0.1".parse().unwrap();
    settings.ephemeral_ports = true;
    let gw = Arc::new(Gateway::start(settings).await.expect("start"));
    let _watcher = meshgate::reload::watch(gw.clone(), dir.path(), debounce).unwrap();
    let mut status = gw.status();
    let mut samples = Vec::with_capacity(iterations);
    for i in 1..=iterations {
        let tmp = dir.path().join(".tmp");
        std::fs::write(&tmp, config(routes, i)).unwrap();
        let start = Instant::now();
        std::fs::rename(&tmp, &file).unwrap();
        let want = i as u64 + 1;
        tokio::time::timeout(
            Duration::from_secs(30),
            status.wait_for(|s| s.generation >= want),
        )
        .await
        .expect("reload did not happen")
        .unwrap();
        samples.push(start.elapsed());
    }
    samples.sort();
    println!(
        "reload_latency: debounce {:>3} ms, {:>5} routes: median {:>7.2} ms, p99 {:>7.2} ms, max {:>7.2} ms ({} reloads)",
        debounce.as_millis(),
        routes,
        percentile(&samples, 0.5).as_secs_f64() * 1e3,
        percentile(&samples, 0.99).as_secs_f64() * 1e3,
        samples.last().unwrap().as_secs_f64() * 1e3,
        samples.len()
    );
    gw.shutdown().await;
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let iterations = if full { 100 } else { 3 };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        run(meshgate::reload::DEFAULT_DEBOUNCE, 10, iterations).await;
        run(Duration::from_millis(1), 10, iterations).await;
        run(Duration::from_millis(1), 1000, iterations).await;
    });
}
