//! The immutable snapshot the request path reads: route tables per listener port and live
//! clusters. Swapped whole (one `ArcSwap::store`), so a request sees one config, never a mix.

use std::sync::Arc;
use std::time::Duration;

use crate::compile::{Compiled, Summary};
use crate::route::RouteTable;
use crate::upstream::{Cluster, Registry, Resolver};

/// How long building a snapshot waits for the first DNS answers of new clusters.
const DNS_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
pub struct Snapshot {
    /// Increases by one with every applied config.
    pub generation: u64,
    /// `(listener port, routes)`; a handful of entries, searched linearly.
    pub listeners: Vec<(u16, RouteTable)>,
    /// Indexed by `route::ClusterId`.
    pub clusters: Vec<Arc<Cluster>>,
    pub summary: Summary,
}

impl Snapshot {
    /// Builds a snapshot: live clusters come from `registry` (unchanged ones are reused), and new
    /// DNS clusters get up to 5 s for their first answer so the first requests do not fail.
    pub async fn build(
        compiled: Compiled,
        generation: u64,
        registry: &Registry,
        resolver: &Resolver,
    ) -> Snapshot {
        let clusters: Vec<Arc<Cluster>> = compiled
            .clusters
            .iter()
            .map(|spec| registry.get_or_create(spec, resolver))
            .collect();
        futures_util::future::join_all(clusters.iter().map(|c| c.ready(DNS_WAIT))).await;
        Snapshot {
            generation,
            listeners: compiled
                .listeners
                .into_iter()
                .map(|l| (l.port, l.table))
                .collect(),
            clusters,
            summary: compiled.summary,
        }
    }

    pub fn table(&self, port: u16) -> Option<&RouteTable> {
        self.listeners
            .iter()
            .find(|(p, _)| *p == port)
            .map(|(_, t)| t)
    }

    pub fn ports(&self) -> impl Iterator<Item = u16> + '_ {
        self.listeners.iter().map(|(p, _)| *p)
    }
}
