//! The service hyper calls for each request of one downstream connection (`ConnService`): counts
//! the request and its time in flight for the connection's timers, applies the connection's
//! request budget, the overload manager's HTTP/2 GOAWAY and the stream idle timeout, and hands the
//! request to `service::handle`.
//! May not touch: accepting, the connection's life (`listener`, `connection`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, StatusCode};

use super::conn_state::{quiet_for, ConnState, InFlight};
use super::context::Conn;
use super::error::local_reply;
use super::framing::Framing;
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

    fn call(&self, mut req: http::Request<hyper::body::Incoming>) -> ServiceFuture {
        let state = &self.state;
        let shared = &self.shared;
        let n = state.requests.fetch_add(1, Ordering::Relaxed) + 1;
        let h2 = req.version() == http::Version::HTTP_2;
        if h2 {
            state.is_h2.store(true, Ordering::Relaxed);
        } else {
            // Now, before hyper's next read: it can then reuse its read buffer.
            let (mut parts, body) = req.into_parts();
            super::headers::detach_request_head(&mut parts.uri, &mut parts.headers);
            req = http::Request::from_parts(parts, body);
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
        let stream_idle_timeout = self.stream_idle_timeout;
        let server = stream_idle_timeout.and_then(|_| shared.server_header.clone());
        // Boxed: hyper keeps a request future's slot for the connection's lifetime, so an idle
        // connection holds 16 bytes here instead of the whole future. `handle`'s future is made
        // inside, not captured: a captured future is stored twice in the block's state (as the
        // capture and as what is awaited), and the whole state is copied into the box.
        Box::pin(async move {
            let handled = handle(shared, conn, req, ambiguous);
            let resp = match stream_idle_timeout {
                None => handled.await,
                Some(t) => tokio::select! {
                    resp = handled => resp,
                    () = quiet_for(&in_flight.0, t, false) => {
                        Ok(stream_timeout_reply(server))
                    }
                },
            };
            let mut resp = resp?;
            if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
                in_flight.0.tunnel.store(true, Ordering::Relaxed);
            }
            if last {
                if h2 {
                    in_flight.0.goaway.notify_one();
                } else {
                    resp.headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
            }
            drop(in_flight);
            Ok(resp)
        })
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
