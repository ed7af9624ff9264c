//! Trace propagation at the edge: W3C `traceparent`/`tracestate` and B3 (single `b3` header or
//! multi `x-b3-*`) read from the client's request, continued as one gateway span, and written on
//! the upstream request. Plain data and pure functions; the request path calls `Tracer::start`
//! when a request arrives and `TraceContext::inject` when the upstream head is built.
//! May not touch: routing, upstream state, the request body.
//!
//! The rules (README, "Tracing"):
//! * The context comes from a valid `traceparent`, else valid B3 (single before multi). The
//!   gateway keeps the trace id, makes its own span id, and that span's parent is the incoming
//!   span id. The incoming sampling decision is kept (Envoy's tracers do the same).
//! * Without one, a trace starts here: random 128-bit trace id, 64-bit span id, sampled if the
//!   client sent a B3 sampling decision alone (`b3: 1`, `x-b3-sampled: 1`), or `x-client-trace-id`
//!   (Envoy's client-forced trace), or else by `--trace-sampling` percent. `x-envoy-force-trace`
//!   is an internal header the gateway strips from every (external) request, as Envoy does, so it
//!   forces nothing.
//! * Malformed headers are as absent, and are never forwarded: every incoming trace header is
//!   replaced by the gateway's own.
//! * Written upstream: `traceparent` always; `tracestate` unchanged when the context came from a
//!   valid `traceparent`; B3 in the style the client used (single or multi), or multi when the
//!   trace starts here (Istio's default Zipkin tracer speaks B3, its OpenTelemetry one W3C).

use http::header::HeaderName;
use http::{HeaderMap, HeaderValue};
use rand::Rng;
use smallvec::SmallVec;

use super::text::{hex_into, push_hex, Values};

mod b3;
#[cfg(test)]
mod tests;
mod w3c;

pub use b3::{parse_b3_multi, parse_b3_single};
pub use w3c::{parse_traceparent, parse_tracestate};

pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
pub const B3: HeaderName = HeaderName::from_static("b3");
pub const X_B3_TRACEID: HeaderName = HeaderName::from_static("x-b3-traceid");
pub const X_B3_SPANID: HeaderName = HeaderName::from_static("x-b3-spanid");
pub const X_B3_PARENTSPANID: HeaderName = HeaderName::from_static("x-b3-parentspanid");
pub const X_B3_SAMPLED: HeaderName = HeaderName::from_static("x-b3-sampled");
pub const X_B3_FLAGS: HeaderName = HeaderName::from_static("x-b3-flags");
pub const X_CLIENT_TRACE_ID: HeaderName = HeaderName::from_static("x-client-trace-id");

/// Every header a trace context travels in; all are replaced on the upstream request.
const TRACE_HEADERS: [HeaderName; 8] = [
    TRACEPARENT,
    TRACESTATE,
    B3,
    X_B3_TRACEID,
    X_B3_SPANID,
    X_B3_PARENTSPANID,
    X_B3_SAMPLED,
    X_B3_FLAGS,
];

/// The most `tracestate` list members the W3C spec allows.
const TRACESTATE_MAX_MEMBERS: usize = 32;

/// The gateway's span of one request and what the upstream request carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// Never zero.
    pub trace_id: u128,
    /// The trace id came as a 64-bit B3 id; B3 goes out in that width too.
    pub short_trace_id: bool,
    /// The gateway's span (the parent of the upstream request). Never zero.
    pub span_id: u64,
    /// The incoming span id; `None` when the trace starts here.
    pub parent_id: Option<u64>,
    pub sampled: bool,
    /// B3 debug (`x-b3-flags: 1`, `b3: …-d`): sampled, and passed on as debug.
    pub debug: bool,
    /// The incoming `tracestate` (list members joined by `,`), kept only with a valid `traceparent`.
    pub tracestate: Option<String>,
    pub origin: Origin,
    /// The B3 style written upstream, if any.
    pub b3: Option<B3Style>,
}

/// Where the trace context came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    W3c,
    B3,
    /// Started at the gateway.
    New,
}

/// How B3 travels: one `b3` header or the `x-b3-*` set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum B3Style {
    Single,
    Multi,
}

/// A B3 sampling state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sampling {
    Deny,
    Accept,
    Debug,
}

/// A parsed `traceparent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: u128,
    pub parent_id: u64,
    pub sampled: bool,
}

/// A parsed B3 context (single or multi). `ids` is `None` for a sampling decision alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct B3Context {
    /// Trace id, whether it was 64-bit, span id.
    pub ids: Option<(u128, bool, u64)>,
    pub sampling: Option<Sampling>,
}

/// What the client sent, parsed. `None` fields were absent or malformed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Incoming {
    pub traceparent: Option<TraceParent>,
    pub tracestate: Option<String>,
    pub b3: Option<B3Context>,
    /// The style of the B3 headers the client sent (valid or not).
    pub b3_style: Option<B3Style>,
    pub client_trace_id: bool,
}

/// Fresh ids and the sampler's own decision, for a context that needs them (random in the
/// request path, fixed in tests).
#[derive(Debug, Clone, Copy)]
pub struct Fresh {
    pub trace_id: u128,
    pub span_id: u64,
    /// What `--trace-sampling` decided for this request.
    pub sampled: bool,
}

/// `--trace-sampling` and `--otlp-endpoint`.
#[derive(Debug, Clone)]
pub struct TraceSettings {
    /// Percent of the traces started at the gateway that are sampled (0-100). Default is 1.0,
    /// Istio's default `sampling`.
    pub sampling: f64,
    /// OTLP/HTTP collector (`http://host:port/v1/traces`); sampled requests are exported there as
    /// spans. Default is none.
    pub otlp_endpoint: Option<http::Uri>,
}

impl Default for TraceSettings {
    fn default() -> Self {
        TraceSettings {
            sampling: 1.0,
            otlp_endpoint: None,
        }
    }
}

// === impl Incoming ===

impl Incoming {
    /// Reads the trace headers of a client request. Never fails: what cannot be read is absent.
    pub fn parse(headers: &HeaderMap) -> Incoming {
        // Most requests carry none: one pass over the names present instead of nine lookups.
        if !headers.keys().any(|k| is_incoming_name(k.as_str())) {
            return Incoming::default();
        }
        let traceparent = single(headers, &TRACEPARENT).and_then(parse_traceparent);
        // The W3C spec: without a valid traceparent, tracestate is not read.
        let tracestate = traceparent.and_then(|_| parse_tracestate(headers));
        let (b3_style, b3) = if headers.contains_key(&B3) {
            (
                Some(B3Style::Single),
                single(headers, &B3).and_then(parse_b3_single),
            )
        } else if [
            &X_B3_TRACEID,
            &X_B3_SPANID,
            &X_B3_PARENTSPANID,
            &X_B3_SAMPLED,
            &X_B3_FLAGS,
        ]
        .iter()
        .any(|h| headers.contains_key(*h))
        {
            (Some(B3Style::Multi), parse_b3_multi(headers))
        } else {
            (None, None)
        };
        let client_trace_id = headers
            .get(&X_CLIENT_TRACE_ID)
            .is_some_and(|v| !v.is_empty());
        Incoming {
            traceparent,
            tracestate,
            b3,
            b3_style,
            client_trace_id,
        }
    }
}

// === impl TraceContext ===

impl TraceContext {
    /// Continues the incoming trace, or starts one with `fresh` ids.
    pub fn decide(incoming: &Incoming, fresh: Fresh) -> TraceContext {
        let b3_out = Some(incoming.b3_style.unwrap_or(B3Style::Multi));
        let mut cx = TraceContext {
            trace_id: fresh.trace_id,
            short_trace_id: false,
            span_id: fresh.span_id,
            parent_id: None,
            sampled: fresh.sampled,
            debug: false,
            tracestate: None,
            origin: Origin::New,
            b3: b3_out,
        };
        if let Some(tp) = incoming.traceparent {
            cx.trace_id = tp.trace_id;
            cx.parent_id = Some(tp.parent_id);
            cx.sampled = tp.sampled;
            cx.tracestate = incoming.tracestate.clone();
            cx.origin = Origin::W3c;
            // W3C in, W3C out; B3 too only if the client also sent it.
            cx.b3 = incoming.b3_style;
            return cx;
        }
        let b3 = incoming.b3.unwrap_or(B3Context {
            ids: None,
            sampling: None,
        });
        if let Some((trace_id, short, span_id)) = b3.ids {
            cx.trace_id = trace_id;
            cx.short_trace_id = short;
            cx.parent_id = Some(span_id);
            cx.origin = Origin::B3;
        }
        match b3.sampling {
            Some(Sampling::Accept) => cx.sampled = true,
            Some(Sampling::Deny) => cx.sampled = false,
            Some(Sampling::Debug) => {
                cx.sampled = true;
                cx.debug = true;
            }
            // Deferred: Envoy's client-forced trace, then the sampler.
            None => cx.sampled = incoming.client_trace_id || fresh.sampled,
        }
        cx
    }

    /// The trace id as 32 lowercase hex digits (the W3C form, also for 64-bit B3 ids).
    pub fn trace_id_hex(&self) -> String {
        format!("{:032x}", self.trace_id)
    }

    /// The `traceparent` the upstream request carries.
    pub fn traceparent(&self) -> String {
        String::from_utf8_lossy(&self.traceparent_bytes()).into_owned()
    }

    /// `00-{trace id}-{span id}-{flags}`, 55 ASCII bytes.
    fn traceparent_bytes(&self) -> [u8; 55] {
        let mut b = [0u8; 55];
        b[..3].copy_from_slice(b"00-");
        hex_into(&mut b[3..35], self.trace_id);
        b[35] = b'-';
        hex_into(&mut b[36..52], u128::from(self.span_id));
        b[52..].copy_from_slice(if self.sampled { b"-01" } else { b"-00" });
        b
    }

    /// The `b3` single header for the upstream request.
    pub fn b3_single(&self) -> String {
        let mut s = self.b3_trace_id();
        s.push('-');
        push_hex(&mut s, u128::from(self.span_id), 16);
        s.push('-');
        s.push_str(self.b3_sampling());
        if let Some(p) = self.parent_id {
            s.push('-');
            push_hex(&mut s, u128::from(p), 16);
        }
        s
    }

    fn b3_trace_id(&self) -> String {
        let digits = self.b3_trace_id_digits();
        let mut s = String::with_capacity(digits);
        push_hex(&mut s, self.trace_id, digits);
        s
    }

    /// B3 sends the trace id in the width it came in: 16 hex digits for a 64-bit id, else 32.
    fn b3_trace_id_digits(&self) -> usize {
        if self.short_trace_id {
            16
        } else {
            32
        }
    }

    fn b3_sampling(&self) -> &'static str {
        match (self.debug, self.sampled) {
            (true, _) => "d",
            (false, true) => "1",
            (false, false) => "0",
        }
    }

    /// Replaces every trace header in `headers` with this context. The request path sends the
    /// context beside the map instead (`strip`, `headers`); the tests read it from a map.
    #[cfg(test)]
    pub fn inject(&self, headers: &mut HeaderMap) {
        strip(headers);
        for (name, value) in self.headers() {
            headers.insert(name, value);
        }
    }

    /// This context's headers, for an upstream request `strip` has cleared of the client's: sent
    /// beside its header map (`Outgoing::added`) instead of inserted into it.
    pub fn headers(&self) -> TraceHeaders {
        let mut out = TraceHeaders::new();
        // One buffer for the values: the attempt's copy of the head clones them for free.
        let mut values = Values::with_capacity(128);
        let mut put = |out: &mut TraceHeaders, name: HeaderName, text: &[u8]| {
            if let Some(v) = values.value(text) {
                out.push((name, v));
            }
        };
        put(&mut out, TRACEPARENT, &self.traceparent_bytes());
        if let Some(ts) = &self.tracestate {
            put(&mut out, TRACESTATE, ts.as_bytes());
        }
        match self.b3 {
            None => {}
            Some(B3Style::Single) => put(&mut out, B3, self.b3_single().as_bytes()),
            Some(B3Style::Multi) => {
                let mut id = [0u8; 32];
                let digits = self.b3_trace_id_digits();
                hex_into(&mut id[..digits], self.trace_id);
                put(&mut out, X_B3_TRACEID, &id[..digits]);
                hex_into(&mut id[..16], u128::from(self.span_id));
                put(&mut out, X_B3_SPANID, &id[..16]);
                if let Some(p) = self.parent_id {
                    hex_into(&mut id[..16], u128::from(p));
                    put(&mut out, X_B3_PARENTSPANID, &id[..16]);
                }
                // B3: debug implies accept, so `x-b3-sampled` is not sent with it.
                if self.debug {
                    out.push((X_B3_FLAGS, HeaderValue::from_static("1")));
                } else {
                    out.push((X_B3_SAMPLED, HeaderValue::from_static(self.b3_sampling())));
                }
            }
        }
        out
    }
}

/// The headers of one trace context (`TraceContext::headers`): at most six, usually four, kept
/// inline.
pub type TraceHeaders = SmallVec<[(HeaderName, HeaderValue); 5]>;

/// Removes every trace header (`TRACE_HEADERS`) from `headers`.
pub fn strip(headers: &mut HeaderMap) {
    // Usually none is present: one pass over the names instead of eight lookups.
    if headers.keys().any(|k| is_trace_name(k.as_str())) {
        for name in &TRACE_HEADERS {
            headers.remove(name);
        }
    }
}

/// Is `name` one of the headers a trace context travels in (`TRACE_HEADERS`)?
fn is_trace_name(name: &str) -> bool {
    matches!(
        name,
        "traceparent"
            | "tracestate"
            | "b3"
            | "x-b3-traceid"
            | "x-b3-spanid"
            | "x-b3-parentspanid"
            | "x-b3-sampled"
            | "x-b3-flags"
    )
}

/// Is `name` a header `Incoming::parse` reads?
fn is_incoming_name(name: &str) -> bool {
    is_trace_name(name) || name == "x-client-trace-id"
}

/// The one value of `name` as text; `None` when absent, repeated, or not text.
fn single<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Option<&'h str> {
    let mut all = headers.get_all(name).iter();
    let first = all.next()?;
    if all.next().is_some() {
        return None;
    }
    first.to_str().ok()
}

/// Lowercase hex of exactly `len` digits, not all zero.
fn hex_id(s: &str, len: usize) -> Option<u128> {
    if s.len() != len
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    u128::from_str_radix(s, 16).ok().filter(|v| *v != 0)
}

/// Decides each request's trace context: parses what arrived, draws fresh ids and the sampling
/// roll.
#[derive(Debug, Clone, Copy)]
pub struct Sampler {
    /// Percent, 0-100.
    percent: f64,
}

impl Sampler {
    pub fn new(percent: f64) -> Sampler {
        Sampler {
            percent: if percent.is_nan() {
                0.0
            } else {
                percent.clamp(0.0, 100.0)
            },
        }
    }

    /// The trace context of a request with these headers.
    pub fn start(&self, headers: &HeaderMap) -> TraceContext {
        let incoming = Incoming::parse(headers);
        let mut rng = rand::thread_rng();
        let fresh = Fresh {
            trace_id: rng.gen_range(1..=u128::MAX),
            span_id: rng.gen_range(1..=u64::MAX),
            sampled: self.percent >= 100.0
                || (self.percent > 0.0 && rng.gen::<f64>() * 100.0 < self.percent),
        };
        TraceContext::decide(&incoming, fresh)
    }
}
