//! DestinationRule `trafficPolicy` → a cluster's policies: Istio's precedence (§7.2: subset
//! port-level > subset > port-level > top-level, whole fields replaced), then each field compiled
//! with Istio's translation and defaults into `upstream` types.
//! May not touch: endpoints, sockets; it only reads the model and returns plain values.

use super::field::fpath;
use std::time::Duration;

use http::HeaderName;

use crate::config;
use crate::config::duration::parse as parse_duration;
use crate::upstream::{
    ConnectionSettings, HashKey, HashPolicy, Keepalive, LbPolicy, OutlierPolicy, PoolLimits,
    TableKind, CONNECT_TIMEOUT, POOL_IDLE,
};

/// Envoy's default ring size and Maglev table size.
const RING_MIN_SIZE: u64 = 1024;
const MAGLEV_SIZE: u64 = 65537;

/// The effective policy of one cluster.
#[derive(Debug, Default)]
pub(super) struct Policy {
    /// The effective `tls` block and its field path in the DestinationRule.
    pub tls: Option<(String, config::ClientTlsSettings)>,
    pub h2_upgrade: bool,
    pub connection: ConnectionSettings,
    pub lb: LbPolicy,
    pub outlier: Option<OutlierPolicy>,
    pub limits: PoolLimits,
    /// `(field, note)` to report as warnings against the DestinationRule.
    pub notes: Vec<(&'static str, String)>,
}

/// The four fields precedence works on, borrowed from one level of the rule.
#[derive(Clone, Default)]
struct Parts<'p> {
    tls: Option<(String, &'p config::ClientTlsSettings)>,
    pool: Option<&'p config::ConnectionPoolSettings>,
    lb: Option<&'p config::LoadBalancerSettings>,
    outlier: Option<&'p config::OutlierDetection>,
}

/// Applies §7.2 and compiles the result.
pub(super) fn effective_policy(
    rule: Option<&config::DestinationRuleSpec>,
    subset: Option<&config::Subset>,
    port: u16,
) -> Policy {
    let mut parts = Parts::default();
    if let Some(tp) = rule.and_then(|r| r.traffic_policy.as_ref()) {
        parts = level(tp, port, "spec.trafficPolicy").0;
    }
    if let Some(tp) = subset.and_then(|s| s.traffic_policy.as_ref()) {
        let at = format!(
            "spec.subsets[{}].trafficPolicy",
            subset.and_then(|s| s.name.as_deref()).unwrap_or("")
        );
        let (sub, port_level) = level(tp, port, &at);
        if port_level {
            parts = sub;
        } else {
            parts.tls = sub.tls.or(parts.tls);
            parts.pool = sub.pool.or(parts.pool);
            parts.lb = sub.lb.or(parts.lb);
            parts.outlier = sub.outlier.or(parts.outlier);
        }
    }
    let mut policy = Policy {
        tls: parts.tls.map(|(at, t)| (at, t.clone())),
        outlier: parts.outlier.map(outlier),
        ..Policy::default()
    };
    if let Some(lb) = parts.lb {
        policy.lb = load_balancer(lb, &mut policy.notes);
    }
    if let Some(pool) = parts.pool {
        connection_pool(pool, &mut policy);
    }
    policy
}

/// One level's parts: its `portLevelSettings` entry for `port` (which replaces it whole) or the
/// level itself. The flag says whether a port-level entry was used.
fn level<'p>(tp: &'p config::TrafficPolicy, port: u16, at: &str) -> (Parts<'p>, bool) {
    let entry = tp
        .port_level_settings
        .iter()
        .enumerate()
        .find(|(_, p)| p.port.as_ref().and_then(|p| p.number) == Some(i64::from(port)));
    match entry {
        Some((i, pl)) => (
            Parts {
                tls: pl
                    .tls
                    .as_ref()
                    .map(|t| (fpath!(at, ".portLevelSettings[", i, "].tls"), t)),
                pool: pl.connection_pool.as_ref(),
                lb: pl.load_balancer.as_ref(),
                outlier: pl.outlier_detection.as_ref(),
            },
            true,
        ),
        None => (
            Parts {
                tls: tp.tls.as_ref().map(|t| (fpath!(at, ".tls"), t)),
                pool: tp.connection_pool.as_ref(),
                lb: tp.load_balancer.as_ref(),
                outlier: tp.outlier_detection.as_ref(),
            },
            false,
        ),
    }
}

fn load_balancer(
    lb: &config::LoadBalancerSettings,
    notes: &mut Vec<(&'static str, String)>,
) -> LbPolicy {
    if let Some(ch) = &lb.consistent_hash {
        let key = if let Some(h) = &ch.http_header_name {
            HeaderName::from_bytes(h.to_ascii_lowercase().as_bytes())
                .ok()
                .map(HashKey::Header)
        } else if let Some(c) = &ch.http_cookie {
            Some(HashKey::Cookie {
                name: c.name.clone().unwrap_or_default(),
                path: c.path.clone(),
                ttl: c.ttl.as_deref().and_then(|t| parse_duration(t).ok()),
            })
        } else if ch.use_source_ip == Some(true) {
            Some(HashKey::SourceIp)
        } else {
            ch.http_query_parameter_name
                .clone()
                .map(HashKey::QueryParameter)
        };
        let Some(key) = key else {
            notes.push((
                "loadBalancer.consistentHash",
                "no usable hash key (httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName): requests are spread at random".into(),
            ));
            return LbPolicy::Random;
        };
        let table = if let Some(m) = &ch.maglev {
            TableKind::Maglev {
                size: m
                    .table_size
                    .filter(|s| *s > 0)
                    .map_or(MAGLEV_SIZE, |s| s as u64),
            }
        } else {
            let min = ch
                .ring_hash
                .as_ref()
                .and_then(|r| r.minimum_ring_size)
                .or(ch.minimum_ring_size)
                .filter(|s| *s > 0);
            TableKind::Ring {
                min_size: min.map_or(RING_MIN_SIZE, |s| s as u64),
            }
        };
        return LbPolicy::ConsistentHash(HashPolicy { key, table });
    }
    match lb.simple.as_deref() {
        Some("ROUND_ROBIN") => LbPolicy::RoundRobin,
        Some("RANDOM") => LbPolicy::Random,
        // Unset, UNSPECIFIED, LEAST_REQUEST, LEAST_CONN (PASSTHROUGH is rejected by validation).
        _ => LbPolicy::LeastRequest,
    }
}

/// Istio's `applyOutlierDetection`.
fn outlier(od: &config::OutlierDetection) -> OutlierPolicy {
    let positive = |v: Option<i64>| {
        v.filter(|v| *v > 0)
            .map(|v| v.min(i64::from(u32::MAX)) as u32)
    };
    let duration = |v: &Option<String>, default: Duration| {
        v.as_deref()
            .and_then(|t| parse_duration(t).ok())
            .filter(|d| !d.is_zero())
            .unwrap_or(default)
    };
    OutlierPolicy {
        // Unset: Envoy's default 5, enforced; an explicit 0 turns it off.
        consecutive_5xx: match od.consecutive_5xx_errors {
            None => Some(5),
            Some(v) => positive(Some(v)),
        },
        consecutive_gateway: positive(od.consecutive_gateway_errors),
        consecutive_local: (od.split_external_local_origin_errors == Some(true))
            .then(|| positive(od.consecutive_local_origin_failures).unwrap_or(5)),
        interval: duration(&od.interval, Duration::from_secs(10)),
        base_ejection: duration(&od.base_ejection_time, Duration::from_secs(30)),
        max_ejection_percent: positive(od.max_ejection_percent).map_or(10, |v| v.min(100)),
        min_health_percent: positive(od.min_health_percent).map_or(0, |v| v.min(100)),
    }
}

fn connection_pool(pool: &config::ConnectionPoolSettings, policy: &mut Policy) {
    // Istio treats values <= 0 as unset.
    let limit = |v: Option<i64>| {
        v.filter(|v| *v > 0)
            .map_or(u32::MAX, |v| v.min(i64::from(u32::MAX)) as u32)
    };
    let tcp = pool.tcp.as_ref();
    let http = pool.http.as_ref();
    policy.limits = PoolLimits {
        max_connections: limit(tcp.and_then(|t| t.max_connections)),
        max_pending: limit(http.and_then(|h| h.http1_max_pending_requests)),
        max_requests: limit(http.and_then(|h| h.http2_max_requests)),
        max_retries: limit(http.and_then(|h| h.max_retries)),
    };
    let idle = http
        .and_then(|h| h.idle_timeout.as_deref())
        .or(tcp.and_then(|t| t.idle_timeout.as_deref()))
        .and_then(|t| parse_duration(t).ok());
    let per_connection = http
        .and_then(|h| h.max_requests_per_connection)
        .filter(|v| *v > 0)
        .map_or(0, |v| v.min(i64::from(u32::MAX)) as u32);
    policy.connection = ConnectionSettings {
        connect_timeout: tcp
            .and_then(|t| t.connect_timeout.as_deref())
            .and_then(|t| parse_duration(t).ok())
            .unwrap_or(CONNECT_TIMEOUT),
        keepalive: tcp
            .and_then(|t| t.tcp_keepalive.as_ref())
            .map(|k| Keepalive {
                time: k.time.as_deref().and_then(|t| parse_duration(t).ok()),
                interval: k.interval.as_deref().and_then(|t| parse_duration(t).ok()),
                probes: k
                    .probes
                    .filter(|p| *p > 0)
                    .map(|p| p.min(i64::from(u32::MAX)) as u32),
            }),
        // `0s` disables the idle timeout: keep connections as long as the pool allows.
        idle_timeout: match idle {
            Some(d) if d.is_zero() => Duration::from_secs(3600),
            Some(d) => d,
            None => POOL_IDLE,
        },
        max_requests_per_connection: per_connection,
    };
    policy.h2_upgrade = http.and_then(|h| h.h2_upgrade_policy.as_deref()) == Some("UPGRADE");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(yaml: &str) -> config::DestinationRuleSpec {
        yaml_serde::from_str(yaml).unwrap()
    }

    #[test]
    fn subset_fields_replace_whole_fields_and_port_level_replaces_everything() {
        // The example of §7.2.
        let dr = rule(concat!(
            "host: r\n",
            "trafficPolicy:\n",
            "  connectionPool: {tcp: {maxConnections: 100}}\n",
            "  outlierDetection: {consecutive5xxErrors: 3}\n",
            "  loadBalancer: {simple: ROUND_ROBIN}\n",
            "  portLevelSettings:\n",
            "  - port: {number: 9080}\n",
            "    loadBalancer: {simple: RANDOM}\n",
            "subsets:\n",
            "- name: v2\n",
            "  labels: {version: v2}\n",
            "  trafficPolicy:\n",
            "    connectionPool: {http: {http2MaxRequests: 10}}\n",
        ));
        let v2 = &dr.subsets[0];
        let p = effective_policy(Some(&dr), Some(v2), 80);
        assert_eq!(p.limits.max_connections, u32::MAX, "tcp block lost");
        assert_eq!(p.limits.max_requests, 10);
        assert_eq!(p.outlier.as_ref().and_then(|o| o.consecutive_5xx), Some(3));
        assert_eq!(
            p.lb,
            LbPolicy::RoundRobin,
            "inherited: the subset did not set it"
        );
        // Port 9080: the port-level entry replaces the top level whole (no pool, no outlier).
        let p = effective_policy(Some(&dr), None, 9080);
        assert_eq!(p.lb, LbPolicy::Random);
        assert!(p.outlier.is_none());
        assert_eq!(p.limits, PoolLimits::default());
        // The subset's own fields still apply on top of it.
        let p = effective_policy(Some(&dr), Some(v2), 9080);
        assert_eq!(p.limits.max_requests, 10);
        assert_eq!(p.lb, LbPolicy::Random);
    }

    #[test]
    fn istio_defaults() {
        let p = effective_policy(None, None, 80);
        assert_eq!(p.lb, LbPolicy::LeastRequest);
        assert!(p.outlier.is_none());
        let dr = rule("host: r\ntrafficPolicy: {outlierDetection: {}}\n");
        let o = effective_policy(Some(&dr), None, 80).outlier.unwrap();
        assert_eq!(
            o,
            OutlierPolicy {
                consecutive_5xx: Some(5),
                consecutive_gateway: None,
                consecutive_local: None,
                interval: Duration::from_secs(10),
                base_ejection: Duration::from_secs(30),
                max_ejection_percent: 10,
                min_health_percent: 0,
            }
        );
        let dr = rule("host: r\ntrafficPolicy: {outlierDetection: {consecutive5xxErrors: 0, consecutiveGatewayErrors: 2, splitExternalLocalOriginErrors: true}}\n");
        let o = effective_policy(Some(&dr), None, 80).outlier.unwrap();
        assert_eq!(
            (
                o.consecutive_5xx,
                o.consecutive_gateway,
                o.consecutive_local
            ),
            (None, Some(2), Some(5))
        );
    }

    #[test]
    fn outlier_detection_fields() {
        let dr = rule("host: r\ntrafficPolicy: {outlierDetection: {splitExternalLocalOriginErrors: true, consecutiveLocalOriginFailures: 3, minHealthPercent: 50, maxEjectionPercent: 200}}\n");
        let o = effective_policy(Some(&dr), None, 80).outlier.unwrap();
        assert_eq!(o.consecutive_local, Some(3));
        assert_eq!(o.min_health_percent, 50);
        assert_eq!(o.max_ejection_percent, 100);
    }

    #[test]
    fn connection_pool_settings() {
        let dr = rule(concat!(
            "host: r\ntrafficPolicy:\n  connectionPool:\n",
            "    tcp: {maxConnections: 7, connectTimeout: 250ms, idleTimeout: 5s, tcpKeepalive: {time: 30s, interval: 10s, probes: 3}}\n",
            "    http: {http1MaxPendingRequests: 0, http2MaxRequests: 9, maxRetries: 2, maxRequestsPerConnection: 4, h2UpgradePolicy: UPGRADE}\n",
        ));
        let p = effective_policy(Some(&dr), None, 80);
        assert_eq!(
            p.limits,
            PoolLimits {
                max_connections: 7,
                max_pending: u32::MAX,
                max_requests: 9,
                max_retries: 2,
            },
            "0 means unset"
        );
        assert_eq!(
            p.connection,
            ConnectionSettings {
                connect_timeout: Duration::from_millis(250),
                keepalive: Some(Keepalive {
                    time: Some(Duration::from_secs(30)),
                    interval: Some(Duration::from_secs(10)),
                    probes: Some(3),
                }),
                idle_timeout: Duration::from_secs(5),
                max_requests_per_connection: 4,
            }
        );
        assert!(p.h2_upgrade);
        let dr = rule("host: r\ntrafficPolicy: {connectionPool: {tcp: {idleTimeout: 5s}, http: {idleTimeout: 2s}}}\n");
        let p = effective_policy(Some(&dr), None, 80);
        assert_eq!(
            p.connection.idle_timeout,
            Duration::from_secs(2),
            "http.idleTimeout wins"
        );
    }

    #[test]
    fn consistent_hash_tables() {
        let dr = rule("host: r\ntrafficPolicy: {loadBalancer: {consistentHash: {httpHeaderName: X-User, maglev: {tableSize: 1009}}}}\n");
        assert_eq!(
            effective_policy(Some(&dr), None, 80).lb,
            LbPolicy::ConsistentHash(HashPolicy {
                key: HashKey::Header(HeaderName::from_static("x-user")),
                table: TableKind::Maglev { size: 1009 },
            })
        );
        let dr =
            rule("host: r\ntrafficPolicy: {loadBalancer: {consistentHash: {useSourceIp: true}}}\n");
        assert_eq!(
            effective_policy(Some(&dr), None, 80).lb,
            LbPolicy::ConsistentHash(HashPolicy {
                key: HashKey::SourceIp,
                table: TableKind::Ring { min_size: 1024 },
            })
        );
    }
}
