//! What is recorded about each request: Istio's standard metrics, the access log, and its trace
//! (context propagation, OTLP span export). Pure formatting and recording; the request path calls
//! into it when a request arrives (`Tracer::start`) and in its finish phase.
//! May not touch: routing, upstream state.

pub mod access_log;
pub mod istio;
pub mod otlp;
pub mod text;
pub mod trace;
pub mod tracer;

pub use access_log::{AccessLog, Format, Line as AccessLine, Sink};
pub use istio::{Destination, IstioMetrics, Sample};
pub use trace::{TraceContext, TraceSettings};
pub use tracer::{RequestTrace, Tracer};
