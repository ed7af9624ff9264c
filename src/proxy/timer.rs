//! The route timeout of one request (VirtualService `timeout`). As in Envoy it starts when the
//! whole request has been received (at once for a request without a body, at the end of the body
//! otherwise) and covers every attempt, back-off and the response body.
//! May not touch: attempts, retries (they race against `expired`).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

/// A request's route timer.
#[derive(Debug, Clone)]
pub struct RouteTimer {
    timeout: Option<Duration>,
    /// When the request ended: fixed, or reported by the request body.
    ended: Ended,
}

#[derive(Debug, Clone)]
enum Ended {
    At(Instant),
    Body(watch::Receiver<Option<Instant>>),
}

// === impl RouteTimer ===

impl RouteTimer {
    /// For a request that is complete now (no body, or none to wait for).
    pub fn now(timeout: Option<Duration>) -> RouteTimer {
        RouteTimer {
            timeout,
            ended: Ended::At(Instant::now()),
        }
    }

    /// For a request whose body is still arriving; `ended` reports when it ends.
    pub fn after_body(timeout: Option<Duration>, ended: watch::Receiver<Option<Instant>>) -> Self {
        RouteTimer {
            timeout,
            ended: Ended::Body(ended),
        }
    }

    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// The expiry instant, if the timer has started.
    pub fn deadline(&self) -> Option<Instant> {
        let t = self.timeout?;
        match &self.ended {
            Ended::At(at) => Some(*at + t),
            Ended::Body(rx) => rx.borrow().map(|at| at + t),
        }
    }

    /// Resolves when the route timeout has expired; never without a timeout, nor while the
    /// request body has not ended.
    pub async fn expired(self) {
        let Some(t) = self.timeout else {
            return std::future::pending().await;
        };
        let ended = match self.ended {
            Ended::At(at) => at,
            Ended::Body(mut rx) => {
                let at = rx.wait_for(Option::is_some).await.map(|at| *at);
                match at {
                    Ok(at) => at.unwrap_or_else(Instant::now),
                    // The body is gone without ending: so is the request.
                    Err(_) => return std::future::pending().await,
                }
            }
        };
        tokio::time::sleep_until(ended + t).await;
    }

    /// `expired` as a boxed future (for the response body), `None` without a timeout.
    pub fn boxed(&self) -> Option<Pin<Box<dyn Future<Output = ()> + Send>>> {
        self.timeout?;
        Some(Box::pin(self.clone().expired()))
    }
}

/// A boxed future of `()`, or one that never resolves (`None`): a timer that may not be set,
/// 8 bytes in its owner's state either way.
pub struct OrNever<F: ?Sized>(pub Option<Pin<Box<F>>>);

impl<F: Future<Output = ()> + ?Sized> Future for OrNever<F> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.0 {
            Some(f) => f.as_mut().poll(cx),
            None => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn starts_when_the_body_ends() {
        let (tx, rx) = watch::channel(None);
        let timer = RouteTimer::after_body(Some(Duration::from_secs(1)), rx);
        assert_eq!(timer.deadline(), None);
        let start = Instant::now();
        let expired = tokio::spawn(timer.clone().expired());
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!expired.is_finished(), "no timer while the body streams");
        tx.send_replace(Some(Instant::now()));
        expired.await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(6));
        assert_eq!(timer.deadline(), Some(start + Duration::from_secs(6)));
    }

    #[tokio::test(start_paused = true)]
    async fn or_never_resolves_with_its_future_or_never() {
        let start = Instant::now();
        OrNever(Some(Box::pin(tokio::time::sleep(Duration::from_secs(2))))).await;
        assert_eq!(start.elapsed(), Duration::from_secs(2));
        let never = OrNever::<tokio::time::Sleep>(None);
        let r = tokio::time::timeout(Duration::from_secs(3600), never).await;
        assert!(r.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn without_timeout_it_never_expires() {
        let timer = RouteTimer::now(None);
        assert!(timer.deadline().is_none() && timer.boxed().is_none());
        let r = tokio::time::timeout(Duration::from_secs(3600), timer.expired()).await;
        assert!(r.is_err());
    }
}
