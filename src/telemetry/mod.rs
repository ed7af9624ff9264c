//! What is recorded about each finished request: Istio's standard metrics and the access log.
//! Pure formatting and recording; the request path's finish phase (`proxy`) calls into it.
//! May not touch: routing, upstream state.

pub mod access_log;
pub mod istio;

pub use access_log::{AccessLog, Format, Sink};
pub use istio::{Destination, IstioMetrics, Sample};
