//! Request mirroring (`mirror`, `mirrors`): a fire-and-forget copy of the request to each mirror
//! cluster, drawn by its percentage. The copy waits until the whole request body arrived (it is
//! kept for replay, up to 1 MiB; beyond that the mirror is skipped, as Envoy does), then goes
//! through the mirror cluster's balancer, circuit breakers and outlier accounting; its response
//! is read and discarded. Nothing here can delay or fail the main request.
//! May not touch: the main request's response.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body::Frame;
use http_body_util::{BodyExt, Empty, StreamBody};
use tokio::sync::watch;

use crate::route::Mirror;
use crate::snapshot::Snapshot;
use crate::upstream::{Cluster, Pick, UpstreamBody};

use super::body::Progress;
use super::classify::{classify, upstream_error, Outcome};
use super::fault::fires;
use super::head::{AttemptHeaders, Head};
use super::BoxError;

/// How long a mirror may take when the route has no timeout (**meshgate decision**: Envoy would
/// wait as long as the upstream allows; a bound keeps hung mirrors from piling up).
const MIRROR_TIMEOUT: Duration = Duration::from_secs(60);

/// Where a mirror gets the request body from.
#[derive(Debug, Clone)]
pub(super) enum MirrorBody {
    Empty,
    /// The main request's replay buffer: the copy is sent once it is complete.
    Pending(watch::Receiver<Progress>),
}

/// Starts one task per mirror whose percentage draw succeeds. Mirrors whose destination names no
/// cluster are skipped silently.
pub(super) fn spawn(
    snapshot: &Snapshot,
    mirrors: &[Mirror],
    head: &Head,
    body: &MirrorBody,
    timeout: Option<Duration>,
) {
    for m in mirrors {
        let Some(cluster) = m.cluster.and_then(|id| snapshot.clusters.get(id)) else {
            continue;
        };
        if !fires(m.per_million) {
            continue;
        }
        let (cluster, head, body, key) =
            (cluster.clone(), head.clone(), body.clone(), m.key.clone());
        tokio::spawn(async move {
            let limit = timeout.unwrap_or(MIRROR_TIMEOUT);
            if tokio::time::timeout(limit, send(cluster, head, body))
                .await
                .is_err()
            {
                tracing::debug!(cluster = %key, "mirror timed out");
            }
        });
    }
}

async fn send(cluster: Arc<Cluster>, head: Head, body: MirrorBody) {
    let body: UpstreamBody = match body {
        MirrorBody::Empty => Empty::new().map_err(|e| match e {}).boxed_unsync(),
        MirrorBody::Pending(mut rx) => match complete(&mut rx).await {
            Some(kept) => {
                let (chunks, trailers) = &*kept;
                let mut frames: Vec<Result<Frame<Bytes>, BoxError>> =
                    chunks.iter().cloned().map(|c| Ok(Frame::data(c))).collect();
                if let Some(t) = trailers {
                    frames.push(Ok(Frame::trailers(t.clone())));
                }
                BodyExt::boxed_unsync(StreamBody::new(futures_util::stream::iter(frames)))
            }
            None => return,
        },
    };
    let Pick::Endpoint(ep) = cluster.pick(None, &[]) else {
        return;
    };
    let Ok(_admission) = cluster.admit().await else {
        return;
    };
    let _active = ep.start_request();
    let extra = AttemptHeaders::new(1, None);
    match cluster
        .client()
        .request(ep.addr, &head.outgoing(&ep, &extra), body, false)
        .await
    {
        Ok(resp) => {
            let class = classify(Outcome::Response(resp.status(), resp.headers()));
            cluster.record(&ep, &class);
            let _ = resp.into_body().collect().await;
        }
        Err(e) => {
            let err = upstream_error(&e, ep.addr);
            cluster.record(&ep, &classify(Outcome::Failed(&err)));
            tracing::debug!(error = %err, "mirror failed");
        }
    }
}

/// Waits for the whole body; `None` when it will never be complete.
async fn complete(
    rx: &mut watch::Receiver<Progress>,
) -> Option<Arc<(Vec<Bytes>, Option<http::HeaderMap>)>> {
    loop {
        let state = rx.borrow_and_update().clone();
        match state {
            Progress::Complete(kept) => return Some(kept),
            Progress::Abandoned => return None,
            Progress::Streaming => {}
        }
        if rx.changed().await.is_err() {
            return match rx.borrow().clone() {
                Progress::Complete(kept) => Some(kept),
                Progress::Streaming | Progress::Abandoned => None,
            };
        }
    }
}
