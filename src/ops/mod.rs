//! Operations endpoints, each on its own port, never on a Gateway port: health for load balancers
//! and Kubernetes (`:15021/healthz/ready`), Prometheus stats (`:15090/stats/prometheus`), and the
//! admin API (`127.0.0.1:15000`). Owns readiness (live, draining, failed by an operator) and the
//! process-wide metrics recorder. May not touch: the request path.

mod admin;
mod server;
pub mod stats;

use std::sync::atomic::{AtomicBool, Ordering};

pub use admin::admin;
pub use server::{serve, Endpoint, Reply};

/// Readiness as a load balancer sees it: ready once the first config is live, not ready while
/// draining or after `POST /healthcheck/fail` (until `/healthcheck/ok`).
#[derive(Debug, Default)]
pub struct Health {
    live: AtomicBool,
    draining: AtomicBool,
    failed: AtomicBool,
}

impl Health {
    pub fn set_live(&self) {
        self.live.store(true, Ordering::Release);
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    pub fn set_failed(&self, failed: bool) {
        self.failed.store(failed, Ordering::Release);
    }

    /// Envoy's server state names: `LIVE`, `PRE_INITIALIZING`, `DRAINING`; `FAILED` after
    /// `/healthcheck/fail`.
    pub fn state(&self) -> &'static str {
        if !self.live.load(Ordering::Acquire) {
            "PRE_INITIALIZING"
        } else if self.is_draining() {
            "DRAINING"
        } else if self.failed.load(Ordering::Acquire) {
            "FAILED"
        } else {
            "LIVE"
        }
    }

    pub fn is_ready(&self) -> bool {
        self.state() == "LIVE"
    }
}

/// `GET /healthz/ready` (the status port): 200 when ready, 503 otherwise.
pub fn health_endpoint(health: &Health, req: &server::Request) -> Reply {
    match (req.method.as_str(), req.path.as_str()) {
        ("GET" | "HEAD", "/healthz/ready") => {
            let status = if health.is_ready() { 200 } else { 503 };
            Reply::text(status, "")
        }
        _ => Reply::text(404, ""),
    }
}

/// `GET /stats/prometheus` (the stats port); cluster gauges are refreshed from `snapshot` first.
pub fn stats_endpoint(
    req: &server::Request,
    snapshot: Option<&crate::snapshot::Snapshot>,
) -> Reply {
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/stats/prometheus") => {
            if let Some(s) = snapshot {
                stats::cluster_gauges(s);
            }
            Reply::prometheus(stats::render())
        }
        _ => Reply::text(404, ""),
    }
}
