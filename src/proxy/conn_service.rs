//! The service hyper calls for each request of one downstream connection (`ConnService`): counts
//! the request and its time in flight for the connection's timers, applies the connection's
//! request budget, the overload manager's HTTP/2 GOAWAY and the stream idle timeout, and hands the
//! request to `service::handle`.
//! May not touch: accepting, the connection's life (`listener`, `connection`).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, StatusCode};
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite};

use super::conn_state::{quiet_for, ConnState, InFlight};
use super::context::Conn;
use super::error::local_reply;
use super::framing::Framing;
use super::request_body::RequestBody;
use super::service::handle;
use super::Shared;

/// The service hyper calls for each request of one connection: counts it, applies the
/// connection's request budget and the overload manager's HTTP/2 GOAWAY, and the stream idle
/// timeout; `service::handle` does the rest.
pub(super) struct ConnService {
    pub state: Arc<ConnState>,
    pub shared: Arc<Shared>,
    pub framing: Arc<Framing>,
    pub conn: Conn,
    pub max_requests: Option<u64>,
    pub stream_idle_timeout: Option<Duration>,
}

impl hyper::service::Service<http::Request<hyper::body::Incoming>> for ConnService {
    type Response = http::Response<super::Body>;
    type Error = std::convert::Infallible;
    type Future = ServiceFuture;

    fn call(&self, req: http::Request<hyper::body::Incoming>) -> ServiceFuture {
        let h2 = req.version() == http::Version::HTTP_2;
        let (mut parts, body) = req.into_parts();
        if !h2 {
            // Now, before hyper's next read: it can then reuse its read buffer.
            super::headers::detach_request_head(&mut parts.uri, &mut parts.headers);
        }
        self.serve(http::Request::from_parts(parts, RequestBody::Hyper(body)))
    }
}

/// A downstream connection's stream, as hyper and the connection's tasks need it.
pub(super) trait ConnStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> ConnStream for T {}

/// A downstream connection's service, as hyper, meshgate's own HTTP/1 server and the
/// connection's tasks need it.
pub(super) trait ConnServe:
    hyper::service::Service<
        http::Request<hyper::body::Incoming>,
        Response = http::Response<super::Body>,
        Future: Send + 'static,
        Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    > + ServeOwn
    + Unpin
    + Send
    + 'static
{
}
impl<S> ConnServe for S where
    S: hyper::service::Service<
            http::Request<hyper::body::Incoming>,
            Response = http::Response<super::Body>,
            Future: Send + 'static,
            Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        > + ServeOwn
        + Unpin
        + Send
        + 'static
{
}

/// A service that also takes the requests meshgate's own HTTP/1 server reads (`h1_server.rs`).
pub(super) trait ServeOwn {
    /// Serves one request whose head is in a buffer of its own (not the connection's).
    fn serve_own(&self, req: http::Request<RequestBody>) -> ServiceFuture;
}

impl ServeOwn for ConnService {
    fn serve_own(&self, req: http::Request<RequestBody>) -> ServiceFuture {
        self.serve(req)
    }
}

impl ConnService {
    fn serve(&self, req: http::Request<RequestBody>) -> ServiceFuture {
        let state = &self.state;
        let shared = &self.shared;
        let n = state.requests.fetch_add(1, Ordering::Relaxed) + 1;
        let h2 = req.version() == http::Version::HTTP_2;
        if h2 {
            state.is_h2.store(true, Ordering::Relaxed);
        }
        state.in_flight.fetch_add(1, Ordering::AcqRel);
        let in_flight = InFlight(state.clone());
        // Envoy's `disable_http_keepalive` past the overload manager's shed level: an HTTP/2
        // connection gets a GOAWAY after this request (an HTTP/1 response already says
        // `connection: close`, `service.rs`).
        let last = self.max_requests.is_some_and(|max| n >= max)
            || (h2 && shared.overload.level() >= super::OverloadLevel::Shed);
        let ambiguous = self.framing.next_request();
        let (shared, conn) = (shared.clone(), self.conn.clone());
        let after = After {
            in_flight,
            last,
            h2,
        };
        // Boxed: hyper keeps a request future's slot for the connection's lifetime, so an idle
        // connection holds 16 bytes here instead of the whole future.
        let Some(t) = self.stream_idle_timeout else {
            // Not an `async` block around `handle`'s future: that would hold it twice (as the
            // capture and as what is awaited), and the whole state is copied into the box.
            return Box::pin(Handled {
                handled: handle(shared, conn, req, ambiguous),
                after: Some(after),
            });
        };
        let server = shared.server_header.clone();
        Box::pin(async move {
            let handled = handle(shared, conn, req, ambiguous);
            let resp = tokio::select! {
                resp = handled => resp,
                () = quiet_for(&after.in_flight.0, t, false) => {
                    Ok(stream_timeout_reply(server))
                }
            };
            let mut resp = resp?;
            after.apply(&mut resp);
            Ok(resp)
        })
    }
}

/// What is done with a request's response once `handle` has made it.
struct After {
    /// The request counts as in flight until its response head is ready.
    in_flight: InFlight,
    /// The connection's last request (its request budget, or the overload manager's GOAWAY).
    last: bool,
    h2: bool,
}

impl After {
    fn apply(self, resp: &mut http::Response<super::Body>) {
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            self.in_flight.0.tunnel.store(true, Ordering::Relaxed);
        }
        if self.last {
            if self.h2 {
                self.in_flight.0.goaway.notify_one();
            } else {
                resp.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
        }
    }
}

pin_project! {
    /// `handle`'s future, then `After` applied to its response.
    struct Handled<F> {
        #[pin]
        handled: F,
        after: Option<After>,
    }
}

impl<F> Future for Handled<F>
where
    F: Future<Output = Result<http::Response<super::Body>, std::convert::Infallible>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let mut resp = ready!(this.handled.poll(cx))?;
        if let Some(after) = this.after.take() {
            after.apply(&mut resp);
        }
        Poll::Ready(Ok(resp))
    }
}

/// One request's future, as hyper holds it.
pub(super) type ServiceFuture = std::pin::Pin<
    Box<
        dyn std::future::Future<
                Output = Result<http::Response<super::Body>, std::convert::Infallible>,
            > + Send,
    >,
>;

/// Envoy's reply to a stream idle timeout.
fn stream_timeout_reply(server: Option<HeaderValue>) -> http::Response<super::Body> {
    let mut resp = local_reply(
        StatusCode::REQUEST_TIMEOUT,
        Bytes::from_static(b"stream timeout"),
    );
    if let Some(server) = server {
        resp.headers_mut().insert(header::SERVER, server);
    }
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}
