//! The immutable snapshot the request path reads: route tables per listener port, the filter
//! chains of HTTPS ports, the SNI/TCP routes of passthrough and TCP ports, and live clusters. Swapped whole (one `ArcSwap::store`), so a request
//! sees one config, never a mix. Certificates live in `tls::Credentials` slots the chains hold,
//! so they rotate without a new snapshot.

use std::sync::Arc;
use std::time::Duration;

use crate::compile::{Compiled, Summary};
use crate::route::{L4Table, RouteTable};
use crate::tls::{Credentials, TlsPort};
use crate::upstream::{Cluster, Registry, Resolver};

/// How long building a snapshot waits for the first DNS answers of new clusters.
const DNS_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
pub struct Snapshot {
    /// Increases by one with every applied config.
    pub generation: u64,
    /// `(listener port, routes)`; a handful of entries, searched linearly. Every port is here;
    /// an HTTPS port's table is empty (its chains in `tls` have the routes).
    pub listeners: Vec<(u16, RouteTable)>,
    /// HTTPS ports and their filter chains.
    pub tls: Vec<(u16, Arc<TlsPort>)>,
    /// TLS-passthrough and TCP ports and their routes (`proxy::tcp` serves them).
    pub l4: Vec<(u16, Arc<L4Table>)>,
    /// Indexed by `route::ClusterId`.
    pub clusters: Vec<Arc<Cluster>>,
    pub summary: Summary,
}

impl Snapshot {
    /// Builds a snapshot: live clusters come from `registry` (unchanged ones are reused), and new
    /// DNS clusters get up to 5 s for their first answer so the first requests do not fail.
    /// HTTPS chains get their certificates from `credentials`; a chain whose files do not load
    /// is logged (Gateway, field, file, reason) and fails its handshakes; the others serve.
    pub async fn build(
        compiled: Compiled,
        generation: u64,
        registry: &Registry,
        resolver: &Resolver,
        credentials: &Credentials,
    ) -> Snapshot {
        registry.prune();
        let clusters: Vec<Arc<Cluster>> = compiled
            .clusters
            .iter()
            .map(|spec| {
                registry.get_or_create(spec, resolver, &|tls| {
                    let built = crate::tls::origin::origination(tls, credentials.dir());
                    if let Err(e) = &built {
                        tracing::error!("{e}");
                    }
                    built
                })
            })
            .collect();
        futures_util::future::join_all(clusters.iter().map(|c| c.ready(DNS_WAIT))).await;
        let mut listeners = Vec::new();
        let mut tls = Vec::new();
        let mut l4 = Vec::new();
        for l in compiled.listeners {
            if let Some(table) = l.l4 {
                l4.push((l.port, Arc::new(table)));
            }
            if !l.chains.is_empty() {
                let (port, errors) = TlsPort::build(l.chains, credentials).await;
                for e in errors {
                    tracing::error!("{e}");
                }
                tls.push((l.port, Arc::new(port)));
            }
            listeners.push((l.port, l.table));
        }
        credentials.prune().await;
        Snapshot {
            generation,
            listeners,
            tls,
            l4,
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

    /// The filter chains of an HTTPS port.
    pub fn tls_port(&self, port: u16) -> Option<&Arc<TlsPort>> {
        self.tls.iter().find(|(p, _)| *p == port).map(|(_, t)| t)
    }

    /// The routes of a TLS-passthrough or TCP port.
    pub fn l4_port(&self, port: u16) -> Option<&Arc<L4Table>> {
        self.l4.iter().find(|(p, _)| *p == port).map(|(_, t)| t)
    }

    pub fn ports(&self) -> impl Iterator<Item = u16> + '_ {
        self.listeners.iter().map(|(p, _)| *p)
    }
}
