//! Endpoint choice (DestinationRule `loadBalancer`): weighted round robin, least request (power of
//! two choices), random, and consistent hash (ring hash or Maglev) on a header, a cookie, the
//! source IP or a query parameter. May not touch: outlier or pool state (the cluster passes a
//! `usable` filter that already says which endpoints may be picked).

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::{header, HeaderMap, HeaderName, HeaderValue};
use rand::Rng;

use super::endpoint::Endpoint;
use super::hash::{hash_bytes, HashTable};

/// Compiled `loadBalancer`. Default is `LeastRequest`, as in Istio.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum LbPolicy {
    RoundRobin,
    #[default]
    LeastRequest,
    Random,
    ConsistentHash(HashPolicy),
}

/// `consistentHash`: what is hashed, and into which table.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HashPolicy {
    pub key: HashKey,
    pub table: TableKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HashKey {
    /// `httpHeaderName`.
    Header(HeaderName),
    /// `httpCookie`: with a `ttl`, a missing cookie is generated and returned with `set-cookie`
    /// (`ttl: 0s` makes it a session cookie); without one, a request without it is not hashed.
    Cookie {
        name: String,
        path: Option<String>,
        ttl: Option<Duration>,
    },
    /// `useSourceIp`: the downstream peer address.
    SourceIp,
    /// `httpQueryParameterName`.
    QueryParameter(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TableKind {
    /// `ringHash.minimumRingSize` (or the legacy `minimumRingSize`). Default is 1024.
    Ring { min_size: u64 },
    /// `maglev.tableSize`. Default is 65537.
    Maglev { size: u64 },
}

/// A request's hash key, computed once before the first attempt.
#[derive(Debug, Default)]
pub struct RequestHash {
    pub hash: Option<u64>,
    /// `set-cookie` to add to the response when the cookie was generated.
    pub set_cookie: Option<HeaderValue>,
}

/// The endpoint list a cluster balances over, with what is precomputed from it.
#[derive(Debug, Default)]
pub(super) struct Hosts {
    pub list: Vec<Arc<Endpoint>>,
    total_weight: u64,
    uniform: bool,
    table: Option<HashTable>,
}

// === impl HashKey ===

impl HashKey {
    /// Computes the hash of a request. `None` when the request has no key (the cluster then picks
    /// at random: Envoy's fallback, **unverified** in detail).
    pub fn hash(&self, headers: &HeaderMap, query: Option<&str>, peer: IpAddr) -> RequestHash {
        match self {
            HashKey::Header(name) => RequestHash {
                hash: headers.get(name).map(|v| hash_bytes(v.as_bytes())),
                set_cookie: None,
            },
            HashKey::SourceIp => RequestHash {
                hash: Some(hash_bytes(peer.to_string().as_bytes())),
                set_cookie: None,
            },
            HashKey::QueryParameter(name) => RequestHash {
                hash: query
                    .into_iter()
                    .flat_map(|q| q.split('&'))
                    .find_map(|kv| match kv.split_once('=') {
                        Some((k, v)) if k == name => Some(v),
                        None if kv == name => Some(""),
                        _ => None,
                    })
                    .map(|v| hash_bytes(v.as_bytes())),
                set_cookie: None,
            },
            HashKey::Cookie { name, path, ttl } => {
                if let Some(v) = cookie(headers, name) {
                    return RequestHash {
                        hash: Some(hash_bytes(v.as_bytes())),
                        set_cookie: None,
                    };
                }
                let Some(ttl) = ttl else {
                    return RequestHash::default();
                };
                let value = format!("{:016x}", rand::thread_rng().gen::<u64>());
                let mut set = format!("{name}=\"{value}\"");
                if !ttl.is_zero() {
                    set.push_str(&format!("; Max-Age={}", ttl.as_secs()));
                }
                if let Some(p) = path.as_deref().filter(|p| !p.is_empty()) {
                    set.push_str(&format!("; Path={p}"));
                }
                set.push_str("; HttpOnly");
                RequestHash {
                    hash: Some(hash_bytes(value.as_bytes())),
                    set_cookie: HeaderValue::from_str(&set).ok(),
                }
            }
        }
    }
}

/// The value of cookie `name`, surrounding quotes removed.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (k == name).then(|| v.trim_matches('"'))
        })
}

// === impl Hosts ===

impl Hosts {
    pub fn new(list: Vec<Arc<Endpoint>>, policy: &LbPolicy) -> Hosts {
        let total_weight = list.iter().map(|e| u64::from(e.weight)).sum();
        let uniform = list.iter().all(|e| e.weight == 1);
        let table = match policy {
            LbPolicy::ConsistentHash(h) => {
                let keys: Vec<(String, u32)> = list
                    .iter()
                    .map(|e| (e.addr.to_string(), e.weight))
                    .collect();
                Some(match h.table {
                    TableKind::Ring { min_size } => HashTable::ring(&keys, min_size),
                    TableKind::Maglev { size } => HashTable::maglev(&keys, size),
                })
            }
            _ => None,
        };
        Hosts {
            list,
            total_weight,
            uniform,
            table,
        }
    }

    /// Chooses an endpoint index among those for which `usable` holds.
    pub fn choose(
        &self,
        policy: &LbPolicy,
        next: &AtomicUsize,
        hash: Option<u64>,
        usable: &dyn Fn(&Endpoint) -> bool,
    ) -> Option<usize> {
        if self.list.is_empty() {
            return None;
        }
        match policy {
            LbPolicy::RoundRobin => {
                let n = next.fetch_add(1, Ordering::Relaxed) as u64;
                self.first_usable(self.slot(n), usable)
            }
            LbPolicy::Random => self.first_usable(self.random_slot(), usable),
            LbPolicy::LeastRequest => {
                let a = self.first_usable(self.random_slot(), usable)?;
                let b = self.first_usable(self.random_slot(), usable)?;
                let (ea, eb) = (&self.list[a], &self.list[b]);
                // Fewer requests per unit of weight wins (plain P2C when weights are equal).
                let load = |e: &Endpoint, w: &Endpoint| u64::from(e.active()) * u64::from(w.weight);
                Some(if load(eb, ea) < load(ea, eb) { b } else { a })
            }
            LbPolicy::ConsistentHash(_) => match (hash, &self.table) {
                (Some(h), Some(t)) => t.lookup(h, |i| usable(&self.list[i])),
                _ => self.first_usable(self.random_slot(), usable),
            },
        }
    }

    /// Index owning weighted slot `n` (weights laid out in list order).
    fn slot(&self, n: u64) -> usize {
        let len = self.list.len();
        if self.uniform {
            return (n % len as u64) as usize;
        }
        let mut slot = n % self.total_weight.max(1);
        for (i, e) in self.list.iter().enumerate() {
            if slot < u64::from(e.weight) {
                return i;
            }
            slot -= u64::from(e.weight);
        }
        0
    }

    fn random_slot(&self) -> usize {
        self.slot(rand::thread_rng().gen_range(0..self.total_weight.max(1)))
    }

    /// `start` if usable, else the next usable endpoint in list order.
    fn first_usable(&self, start: usize, usable: &dyn Fn(&Endpoint) -> bool) -> Option<usize> {
        let len = self.list.len();
        (0..len)
            .map(|k| (start + k) % len)
            .find(|&i| usable(&self.list[i]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::endpoint::EndpointState;
    use std::net::SocketAddr;

    fn hosts(weights: &[u32], policy: &LbPolicy) -> Hosts {
        let list = weights
            .iter()
            .enumerate()
            .map(|(i, w)| {
                Endpoint::new(
                    SocketAddr::from(([127, 0, 0, 1], 1000 + i as u16)),
                    *w,
                    Arc::default(),
                )
            })
            .collect();
        Hosts::new(list, policy)
    }

    fn counts(h: &Hosts, policy: &LbPolicy, n: usize) -> Vec<usize> {
        let next = AtomicUsize::new(0);
        let mut c = vec![0; h.list.len()];
        for _ in 0..n {
            c[h.choose(policy, &next, None, &|_| true).unwrap()] += 1;
        }
        c
    }

    #[test]
    fn round_robin_is_exact_and_weighted() {
        let p = LbPolicy::RoundRobin;
        assert_eq!(counts(&hosts(&[1, 1, 1], &p), &p, 300), vec![100, 100, 100]);
        assert_eq!(counts(&hosts(&[3, 1], &p), &p, 400), vec![300, 100]);
    }

    #[test]
    fn random_follows_weights() {
        let p = LbPolicy::Random;
        let c = counts(&hosts(&[3, 1], &p), &p, 8000);
        // Binomial(8000, 0.75): sd ≈ 39; ±6 sd.
        assert!((5_760..=6_240).contains(&c[0]), "{c:?}");
    }

    #[test]
    fn least_request_prefers_the_less_loaded() {
        let p = LbPolicy::LeastRequest;
        let h = hosts(&[1, 1, 1], &p);
        let _busy: Vec<_> = (0..5).map(|_| h.list[0].start_request()).collect();
        let c = counts(&h, &p, 3000);
        // Host 0 wins only when both choices are host 0: 1/9 of the time.
        assert!(c[0] < 600, "{c:?}");
        assert!(c[1] > 1000 && c[2] > 1000, "{c:?}");
    }

    #[test]
    fn unusable_endpoints_are_skipped() {
        for p in [
            LbPolicy::RoundRobin,
            LbPolicy::Random,
            LbPolicy::LeastRequest,
        ] {
            let h = hosts(&[1, 1, 1], &p);
            let skip = h.list[1].addr;
            let next = AtomicUsize::new(0);
            for _ in 0..100 {
                let i = h.choose(&p, &next, None, &|e| e.addr != skip).unwrap();
                assert_ne!(i, 1, "{p:?}");
            }
            assert_eq!(h.choose(&p, &next, None, &|_| false), None);
        }
    }

    #[test]
    fn consistent_hash_is_stable_per_key() {
        let p = LbPolicy::ConsistentHash(HashPolicy {
            key: HashKey::Header(HeaderName::from_static("x-user")),
            table: TableKind::Ring { min_size: 1024 },
        });
        let h = hosts(&[1, 1, 1, 1], &p);
        let next = AtomicUsize::new(0);
        let mut seen = std::collections::HashSet::new();
        for user in 0..50 {
            let mut headers = HeaderMap::new();
            headers.insert("x-user", HeaderValue::from(user));
            let key = match &p {
                LbPolicy::ConsistentHash(hp) => hp.key.hash(&headers, None, [0, 0, 0, 0].into()),
                _ => unreachable!(),
            };
            let first = h.choose(&p, &next, key.hash, &|_| true).unwrap();
            for _ in 0..5 {
                assert_eq!(h.choose(&p, &next, key.hash, &|_| true), Some(first));
            }
            seen.insert(first);
        }
        assert!(seen.len() >= 3, "50 keys land on {} hosts", seen.len());
    }

    #[test]
    fn hash_keys_from_the_request() {
        let peer: IpAddr = [10, 0, 0, 1].into();
        let mut h = HeaderMap::new();
        h.insert("cookie", HeaderValue::from_static("a=1; session=\"abc\""));
        let cookie = |ttl| HashKey::Cookie {
            name: "session".into(),
            path: Some("/".into()),
            ttl,
        };
        assert_eq!(
            cookie(None).hash(&h, None, peer).hash,
            Some(hash_bytes(b"abc"))
        );
        let generated = cookie(Some(Duration::from_secs(60))).hash(&HeaderMap::new(), None, peer);
        let set = generated.set_cookie.unwrap();
        let set = set.to_str().unwrap();
        assert!(
            set.starts_with("session=\"") && set.ends_with("; Max-Age=60; Path=/; HttpOnly"),
            "{set}"
        );
        let value = &set[9..25];
        assert_eq!(generated.hash, Some(hash_bytes(value.as_bytes())));
        assert_eq!(cookie(None).hash(&HeaderMap::new(), None, peer).hash, None);
        let q = HashKey::QueryParameter("id".into());
        assert_eq!(
            q.hash(&h, Some("x=1&id=42"), peer).hash,
            Some(hash_bytes(b"42"))
        );
        assert_eq!(q.hash(&h, Some("x=1"), peer).hash, None);
        let ip = HashKey::SourceIp.hash(&h, None, peer).hash;
        assert_eq!(ip, Some(hash_bytes(b"10.0.0.1")));
        let _ = EndpointState::default();
    }
}
