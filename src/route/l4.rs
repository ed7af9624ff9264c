//! The routes of a TLS-passthrough or TCP port: which weighted clusters a connection goes to,
//! chosen by the ClientHello's SNI (passthrough) or for every connection (TCP). Synchronous, no
//! I/O. May not touch: sockets, endpoints, `config::*` (`compile::l4_routes` builds these).

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;

use super::ClusterId;

/// Envoy's TCP proxy `idle_timeout` default.
pub const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

/// One Istio `tls[]` or `tcp[]` route: its weighted destinations and idle timeout.
#[derive(Debug, Clone)]
pub struct L4Route {
    /// `<vs-namespace>/<vs-name>` and the rule (`spec.tcp[0]`), for logs and `/config_dump`.
    pub name: Arc<str>,
    pub clusters: Vec<L4Cluster>,
    /// Sum of the weights, at least 1.
    pub total_weight: u64,
    /// A tunnel with no bytes moving either way for this long is closed (Envoy's TCP proxy
    /// `idle_timeout`: 1 h, or the DestinationRule's `tcp.idleTimeout`). `None`: never (`0s`).
    pub idle_timeout: Option<Duration>,
}

/// A weighted destination of an [`L4Route`].
#[derive(Debug, Clone)]
pub struct L4Cluster {
    /// `None`: the destination resolves to no cluster (the connection is closed, `NC`).
    pub cluster: Option<ClusterId>,
    /// `outbound|port|subset|host`.
    pub key: Arc<str>,
    pub weight: u32,
}

/// A passthrough port's routes: one filter chain per SNI name, as Envoy's `server_names`.
#[derive(Debug, Default, Clone)]
pub struct SniTable {
    /// `(lower-case SNI name or *.suffix, route)`, in the order they were added.
    pub names: Vec<(String, Arc<L4Route>)>,
    /// A `*` entry: any SNI, and clients without one.
    pub any: Option<Arc<L4Route>>,
}

/// What a non-HTTP port does with a connection.
#[derive(Debug, Clone)]
pub enum L4Table {
    /// `tls.mode: PASSTHROUGH`: the route is chosen by SNI; the TLS stream is not terminated.
    Passthrough(SniTable),
    /// `protocol: TCP`: one route for every connection (`None`: no route, connections close).
    Tcp(Option<Arc<L4Route>>),
}

/// How well a server name matches a ClientHello's SNI, in Envoy's order: an exact name, then the
/// longest `*.` suffix, then `*` (which also takes a client without SNI). Compares the terminated
/// chains and the passthrough routes of one port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SniRank {
    Any,
    /// The length of the matching suffix (longer is more specific).
    Suffix(usize),
    Exact,
}

/// The best rank of `names` (lower case: `*`, `*.suffix` or exact) for `sni`, if any matches.
pub fn sni_rank<'a>(
    names: impl IntoIterator<Item = &'a str>,
    sni: Option<&str>,
) -> Option<SniRank> {
    let sni = sni.map(str::to_ascii_lowercase);
    names
        .into_iter()
        .filter_map(|n| name_rank(n, sni.as_deref()))
        .max()
}

/// How one name (lower case: `*`, `*.suffix` (any depth, as Envoy's `server_names`) or exact)
/// matches a lower-case `sni`.
fn name_rank(name: &str, sni: Option<&str>) -> Option<SniRank> {
    match (name, sni) {
        ("*", _) => Some(SniRank::Any),
        (_, None) => None,
        (n, Some(s)) if n == s => Some(SniRank::Exact),
        (n, Some(s)) => n
            .strip_prefix('*')
            .filter(|suffix| suffix.starts_with('.') && s.ends_with(suffix))
            .map(|suffix| SniRank::Suffix(suffix.len())),
    }
}

// === impl SniTable ===

impl SniTable {
    /// Adds `name` (`*`, `*.suffix` or exact). `false`: an earlier match already has it.
    pub fn insert(&mut self, name: &str, route: Arc<L4Route>) -> bool {
        let name = name.to_ascii_lowercase();
        if name == "*" {
            if self.any.is_some() {
                return false;
            }
            self.any = Some(route);
            return true;
        }
        if self.names.iter().any(|(n, _)| *n == name) {
            return false;
        }
        self.names.push((name, route));
        true
    }

    /// How well this table's best name matches `sni` (`None`: no route for it).
    pub fn rank(&self, sni: Option<&str>) -> Option<SniRank> {
        self.best(sni).map(|(rank, _)| rank)
    }

    /// The route for `sni`: an exact name, then the longest `*.` suffix (any depth, as Envoy's
    /// `server_names`), then `*`. `None`: no filter chain matches.
    pub fn find(&self, sni: Option<&str>) -> Option<&Arc<L4Route>> {
        self.best(sni).map(|(_, route)| route)
    }

    /// The best-matching name's rank and route (names are unique, so ranks do not tie).
    fn best(&self, sni: Option<&str>) -> Option<(SniRank, &Arc<L4Route>)> {
        let sni = sni.map(str::to_ascii_lowercase);
        let any = self.any.as_ref().map(|r| (SniRank::Any, r));
        self.names
            .iter()
            .filter_map(|(n, r)| Some((name_rank(n, sni.as_deref())?, r)))
            .chain(any)
            .max_by_key(|(rank, _)| *rank)
    }
}

// === impl L4Route ===

impl L4Route {
    /// Picks a destination by weight (the only one when there is one).
    pub fn pick(&self) -> Option<&L4Cluster> {
        if self.clusters.len() <= 1 {
            return self.clusters.first();
        }
        let mut slot = rand::thread_rng().gen_range(0..self.total_weight.max(1));
        for c in &self.clusters {
            let w = u64::from(c.weight);
            if slot < w {
                return Some(c);
            }
            slot -= w;
        }
        // Every weight 0: the first one.
        self.clusters.first()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(name: &str) -> Arc<L4Route> {
        Arc::new(L4Route {
            name: name.into(),
            clusters: Vec::new(),
            total_weight: 1,
            idle_timeout: None,
        })
    }

    #[test]
    fn exact_then_longest_wildcard_then_any() {
        let mut t = SniTable::default();
        assert!(t.insert("*.example.com", route("wild")));
        assert!(t.insert("*.a.example.com", route("deeper")));
        assert!(t.insert("a.example.com", route("exact")));
        assert!(!t.insert("A.example.com", route("dup")));
        fn name(t: &SniTable, sni: Option<&str>) -> Option<String> {
            t.find(sni).map(|r| r.name.to_string())
        }
        assert_eq!(name(&t, Some("a.example.com")).as_deref(), Some("exact"));
        assert_eq!(name(&t, Some("x.a.example.com")).as_deref(), Some("deeper"));
        assert_eq!(name(&t, Some("b.example.com")).as_deref(), Some("wild"));
        assert_eq!(name(&t, Some("example.com")), None);
        assert_eq!(name(&t, None), None);
        t.insert("*", route("any"));
        assert_eq!(name(&t, Some("other.org")).as_deref(), Some("any"));
        assert_eq!(name(&t, None).as_deref(), Some("any"));
    }
}
