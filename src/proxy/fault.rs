//! Fault injection (VirtualService `fault`): a delay and an abort, each drawn independently by
//! its percentage (parts per million; no percentage never fires), delay first. Applied before
//! the request is forwarded, as Envoy's fault filter runs before the router.
//! May not touch: upstreams, retries (an aborted request never reaches them).

use rand::Rng;

use crate::route::FaultPolicy;

use super::error::ProxyError;

/// Applies the route's faults. `Ok(true)` when a delay was injected (flag `DI`).
///
/// # Errors
/// `FaultAbort` when the abort fires: the client gets the configured status.
pub async fn inject(f: &FaultPolicy) -> Result<bool, ProxyError> {
    let mut delayed = false;
    if let Some(d) = &f.delay {
        if fires(d.per_million) {
            tokio::time::sleep(d.duration).await;
            delayed = true;
        }
    }
    if let Some(a) = &f.abort {
        if fires(a.per_million) {
            return Err(ProxyError::FaultAbort { kind: a.kind });
        }
    }
    Ok(delayed)
}

/// Draws one request: true with probability `per_million / 1e6`.
pub fn fires(per_million: u32) -> bool {
    per_million >= 1_000_000
        || (per_million > 0 && rand::thread_rng().gen_range(0..1_000_000) < per_million)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::{AbortKind, FaultAbort, FaultDelay};
    use std::time::Duration;

    #[test]
    fn percentages() {
        assert!(!(0..10_000).any(|_| fires(0)));
        assert!((0..10_000).all(|_| fires(1_000_000)));
        let n = (0..100_000).filter(|_| fires(250_000)).count();
        // Binomial(100000, 0.25): sd ≈ 137; ±8 sd.
        assert!((23_900..=26_100).contains(&n), "{n}");
    }

    #[tokio::test(start_paused = true)]
    async fn delay_then_abort() {
        let f = FaultPolicy {
            delay: Some(FaultDelay {
                duration: Duration::from_secs(5),
                per_million: 1_000_000,
            }),
            abort: Some(FaultAbort {
                kind: AbortKind::Http(http::StatusCode::IM_A_TEAPOT),
                per_million: 1_000_000,
            }),
        };
        let start = tokio::time::Instant::now();
        let e = inject(&f).await.unwrap_err();
        assert_eq!(start.elapsed(), Duration::from_secs(5));
        assert_eq!(e.status(), 418);
        assert_eq!(e.body(), "fault filter abort");
        assert_eq!(e.response_flags().to_string(), "FI");
    }
}
