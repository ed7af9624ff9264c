//! Upstream clusters: endpoints (static or DNS), endpoint choice, and the shared HTTP clients.
//! May not touch: routing, `config::*`, the snapshot's ArcSwap.

mod client;
mod cluster;
mod dns;

pub use client::{Clients, UpstreamBody, CONNECT_TIMEOUT};
pub use cluster::{
    Cluster, ClusterSpec, Discovery, Endpoint, EndpointSpec, Pick, Protocol, Registry,
};
pub use dns::Resolver;
