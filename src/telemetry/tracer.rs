//! The gateway's tracer: decides each request's trace context when it arrives (`start`).
//! May not touch: routing, upstream state.

use http::Request;

use super::trace::{Sampler, TraceContext, TraceSettings};

/// Decides trace contexts.
#[derive(Debug)]
pub struct Tracer {
    sampler: Sampler,
}

/// One request's trace.
#[derive(Debug)]
pub struct RequestTrace {
    pub context: TraceContext,
}

impl Tracer {
    /// A tracer sampling as `settings` say.
    pub fn new(settings: &TraceSettings) -> Tracer {
        Tracer {
            sampler: Sampler::new(settings.sampling),
        }
    }

    /// The trace of a request that just arrived.
    pub fn start<B>(&self, req: &Request<B>) -> RequestTrace {
        RequestTrace {
            context: self.sampler.start(req.headers()),
        }
    }
}
