//! The process-wide metrics recorder (`metrics` facade → Prometheus text). Installed once per
//! process on first use; every `metrics::counter!`/`gauge!`/`histogram!` in meshgate lands here.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Envoy's default histogram buckets, which Istio's standard histograms
/// (`istio_request_duration_milliseconds`, `istio_request_bytes`, `istio_response_bytes`) use.
pub const ENVOY_BUCKETS: &[f64] = &[
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// How often buffered histogram samples are drained into their buckets.
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// Installs the recorder if no other recorder was installed first. Call before any metric is
/// recorded (at gateway start); later calls are free.
pub fn install() {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Prefix("istio_".into()), ENVOY_BUCKETS)
            .ok()?;
        match builder.install_recorder() {
            Ok(handle) => {
                // Histogram samples wait in per-metric buffers (8 bytes each) until drained:
                // drain them even when nothing scrapes, so memory stays flat. Every 500 ms: at
                // 40k requests/s the three Istio histograms buffered ~5 MB between drains 5 s
                // apart, a sixth of the gateway's peak RSS (`benches/RESULTS.md`).
                let h = handle.clone();
                let _ = std::thread::Builder::new()
                    .name("metrics-upkeep".into())
                    .spawn(move || loop {
                        std::thread::sleep(UPKEEP_EVERY);
                        h.run_upkeep();
                    });
                Some(handle)
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics recorder not installed; /stats/prometheus will be empty");
                None
            }
        }
    });
}

/// Every metric in Prometheus text format.
pub fn render() -> String {
    install();
    match HANDLE.get() {
        Some(Some(h)) => h.render(),
        _ => String::new(),
    }
}

/// Sets Envoy's per-cluster health gauges from the live clusters (called before each scrape:
/// they describe state, not events).
pub fn cluster_gauges(snapshot: &crate::snapshot::Snapshot) {
    for c in &snapshot.clusters {
        let name = c.spec.key.clone();
        let eps = c.endpoint_health();
        let ejected = eps.iter().filter(|e| e.ejected).count();
        let ejections: u64 = eps.iter().map(|e| e.ejections).sum();
        metrics::gauge!("envoy_cluster_membership_total", "cluster_name" => name.clone())
            .set(eps.len() as f64);
        metrics::gauge!("envoy_cluster_membership_healthy", "cluster_name" => name.clone())
            .set((eps.len() - ejected) as f64);
        metrics::gauge!("envoy_cluster_outlier_detection_ejections_active", "cluster_name" => name.clone())
            .set(ejected as f64);
        metrics::gauge!("envoy_cluster_outlier_detection_ejections_enforced_total", "cluster_name" => name.clone())
            .set(ejections as f64);
        let pool = c.pool_stats();
        metrics::gauge!("envoy_cluster_upstream_rq_active", "cluster_name" => name.clone())
            .set(f64::from(pool.requests));
        metrics::gauge!("envoy_cluster_upstream_rq_pending_active", "cluster_name" => name)
            .set(f64::from(pool.pending));
    }
}
