//! meshgate: an ingress gateway that serves Istio networking config from files.
//!
//! The flow, one way:
//!
//! ```text
//! YAML files ──config::load_path──▶ Resources (serde model, with file/doc/field context)
//!            ──compile::admit─────▶ Compiled (route tables per port + cluster specs; resources with
//!                                    errors skipped or kept at their last good version, read
//!                                    again from the text `config::Served` keeps)
//!            ──Snapshot::build────▶ Snapshot (live clusters from upstream::Registry; HTTPS ports'
//!                                    filter chains with certificates from tls::Credentials)
//!            ──gateway (ArcSwap)──▶ proxy::serve → proxy::service::handle
//!                                    → route::RouteTable::find → proxy::forward → upstream
//! ```
//!
//! On a file change, `reload::watch` calls `Gateway::reload`, which runs the same flow and swaps
//! the new snapshot in whole, or keeps the old one when anything fails.
//!
//! `proxy::forward` is where resilience happens: fault injection, then an explicit attempt loop
//! (`upstream::Cluster::pick` → circuit breakers → send under the per-try/route deadline →
//! `proxy::classify` → outlier accounting → `RetryState` decides), mirrors on the side.
//!
//! Where a request is routed: `proxy/service.rs` (`route_request`), then `route/mod.rs` (`find`).
//! `explain/` replays that routing for one request by hand (admin `/explain`, `meshgate explain`).
#![forbid(unsafe_code)]

pub mod compile;
pub mod config;
pub mod config_heap;
pub mod explain;
pub mod gateway;
pub mod net;
pub mod ops;
pub mod par;
pub mod proxy;
pub mod reload;
pub mod route;
pub mod snapshot;
pub mod telemetry;
pub mod tls;
pub mod upstream;

pub use gateway::{load_and_compile, Gateway, OpsPort, ReloadError, Settings, StartError, Status};
