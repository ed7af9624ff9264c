//! Upstream clusters: endpoints (static or DNS) and their state, endpoint choice, outlier
//! ejection, circuit breakers, the per-cluster HTTP clients and TLS origination to upstreams.
//! May not touch: routing, `config::*`, the snapshot's ArcSwap.

mod balancer;
mod client;
mod cluster;
mod dns;
mod endpoint;
mod error;
mod h1;
mod hash;
mod outgoing;
mod outlier;
mod pool;
mod settings;
mod transport;

pub use balancer::{HashKey, HashPolicy, LbPolicy, RequestHash, TableKind};
pub use client::{ClusterClient, RespBody};
pub use cluster::{Cluster, ClusterSpec, Discovery, EndpointHealth, EndpointSpec, Pick, Registry};
pub use dns::Resolver;
pub use endpoint::{ActiveRequest, Endpoint, EndpointState};
pub use error::UpstreamError;
pub use h1::PooledBody;
pub use outgoing::Outgoing;
pub use outlier::{Class, OutlierPolicy, MAX_EJECTION_TIME};
pub use pool::{Admission, Overflow, PoolLimits, PoolStats, RetryPermit};
pub use settings::{
    ConnectionSettings, Keepalive, Protocol, UpstreamBody, CONNECT_TIMEOUT, POOL_IDLE,
};
pub use transport::{local_addr, CaFile, ClientCert, OriginTls, Origination, Stream};
