//! A real upstream HTTP server that says who answered, echoes what it received, counts requests,
//! and can stream bodies, return a chosen status or upgrade to a WebSocket-style echo.
//!
//! It misbehaves on command, per request (by path) or for every request (`set_mode`):
//! `/status/<code>`, `/fail/<n>/<code>/<key>` (the first n requests with that key get `code`,
//! then 200), `/reset` (drops the connection before responding), `/hang` (never answers),
//! `/slow/<ms>` (answers after a while), `/grpc/<code>` (200 with `grpc-status`),
//! `/ratelimited` (429 with `x-envoy-ratelimited`), `/stall` (headers and a chunk, then nothing). `Upstream::start_h2_refusing` is an HTTP/2
//! server that refuses streams (`REFUSED_STREAM`), and `closed_addr()` an address that refuses
//! connections.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

type Body = UnsyncBoxBody<Bytes, std::io::Error>;

pub struct Upstream {
    pub name: String,
    pub addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

/// What every request gets, whatever its path (`Upstream::set_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Behave as the path says.
    Normal,
    /// Answer every request with this status.
    Status(u16),
    /// Drop the connection before responding.
    Reset,
    /// Never answer.
    Hang,
}

/// Shared by the server's connections.
#[derive(Default)]
struct State {
    hits: AtomicUsize,
    /// 0 normal, 1..=999 a status, 1000 reset, 1001 hang.
    mode: AtomicU32,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// Connections accepted, and those still open.
    connections: AtomicUsize,
    open_connections: AtomicUsize,
    /// Connection tasks, so `kill` can drop every open connection.
    conn_tasks: Mutex<Vec<tokio::task::AbortHandle>>,
    /// What each request looked like (its echo text; `/count` adds `bytes=<n>`).
    seen: Mutex<Vec<String>>,
    /// `/fail/<n>/<code>/<key>`: requests seen per key.
    fails: Mutex<HashMap<String, u32>>,
}

/// Counts a request in flight until dropped (also when the client gives up on it).
struct InFlight(Arc<State>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A request the server will not answer: hyper drops the connection.
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped on purpose")
    }
}

impl std::error::Error for Dropped {}

/// An address nothing listens on: connections are refused. Its port stays bound (not listening)
/// for the rest of the test process: a port merely closed could be handed to another test's
/// listener running in parallel, and a request meant to be refused would then wait on it.
pub fn closed_addr() -> SocketAddr {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .expect("bind");
    let addr = socket.local_addr().unwrap();
    // Kept open on purpose (one descriptor per call, for the process's lifetime).
    std::mem::forget(socket);
    addr
}

impl Upstream {
    /// Starts an upstream on 127.0.0.1:0 (HTTP/1.1 and h2c).
    pub async fn start(name: &str) -> Upstream {
        Self::listen(name, |stream, n, st| async move {
            st.connections.fetch_add(1, Ordering::SeqCst);
            st.open_connections.fetch_add(1, Ordering::SeqCst);
            let conn_state = st.clone();
            let svc = service_fn(move |req| {
                st.hits.fetch_add(1, Ordering::SeqCst);
                let now = st.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                st.max_in_flight.fetch_max(now, Ordering::SeqCst);
                let guard = InFlight(st.clone());
                let (n, st) = (n.clone(), st.clone());
                async move {
                    let r = misbehave(&st, req, n).await;
                    drop(guard);
                    r
                }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                .await;
            conn_state.open_connections.fetch_sub(1, Ordering::SeqCst);
        })
        .await
    }

    /// Starts an HTTP/2-only server that answers `/refuse` with `REFUSED_STREAM` and anything
    /// else with 200 `upstream=<name>`.
    pub async fn start_h2_refusing(name: &str) -> Upstream {
        Self::listen(name, |stream, n, st| async move {
            let Ok(mut conn) = h2::server::handshake(stream).await else {
                return;
            };
            while let Some(Ok((req, mut respond))) = conn.accept().await {
                st.hits.fetch_add(1, Ordering::SeqCst);
                if req.uri().path() == "/refuse" {
                    respond.send_reset(h2::Reason::REFUSED_STREAM);
                    continue;
                }
                let resp = http::Response::builder()
                    .header("x-upstream", n.as_str())
                    .body(())
                    .unwrap();
                if let Ok(mut send) = respond.send_response(resp, false) {
                    let _ = send.send_data(Bytes::from(format!("upstream={n}\n")), true);
                }
            }
        })
        .await
    }

    /// Binds 127.0.0.1:0 and runs `serve` for every accepted connection on its own task (kept so
    /// `kill` can drop open connections).
    async fn listen<F, Fut>(name: &str, serve: F) -> Upstream
    where
        F: Fn(tokio::net::TcpStream, String, Arc<State>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        let (n, st) = (name.to_owned(), state.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let conn = tokio::spawn(serve(stream, n.clone(), st.clone()));
                st.conn_tasks.lock().unwrap().push(conn.abort_handle());
            }
        });
        Upstream {
            name: name.to_owned(),
            addr,
            state,
            task,
        }
    }

    pub fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Connections accepted and not closed yet.
    pub fn open_connections(&self) -> usize {
        self.state.open_connections.load(Ordering::SeqCst)
    }

    /// The echo text of every request received so far, in order.
    pub fn seen(&self) -> Vec<String> {
        self.state.seen.lock().unwrap().clone()
    }

    /// Requests being served right now.
    pub fn in_flight(&self) -> usize {
        self.state.in_flight.load(Ordering::SeqCst)
    }

    /// The most requests served at once so far.
    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }

    /// Makes every request misbehave (or behave again with `Mode::Normal`).
    pub fn set_mode(&self, mode: Mode) {
        let m = match mode {
            Mode::Normal => 0,
            Mode::Status(s) => u32::from(s.clamp(100, 999)),
            Mode::Reset => 1000,
            Mode::Hang => 1001,
        };
        self.state.mode.store(m, Ordering::SeqCst);
    }

    /// Stops accepting; the port is closed.
    pub fn stop(&self) {
        self.task.abort();
    }

    /// Dies: stops accepting and drops every open connection, mid-request or idle.
    pub fn kill(&self) {
        self.task.abort();
        for t in self.state.conn_tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn text(status: StatusCode, name: &str, body: String) -> Response<Body> {
    let mut resp = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|e| match e {})
            .boxed_unsync(),
    );
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert("x-upstream", name.parse().unwrap());
    resp.headers_mut()
        .insert("server", "test-upstream".parse().unwrap());
    resp.headers_mut()
        .insert("connection", "keep-alive".parse().unwrap());
    resp.headers_mut()
        .insert("x-hop", "should-not-leak".parse().unwrap());
    resp
}

/// Applies `Mode` and the misbehaving paths, then serves normally.
async fn misbehave(
    st: &State,
    req: Request<Incoming>,
    name: String,
) -> Result<Response<Body>, Dropped> {
    let path = req.uri().path().to_owned();
    let seen_at = {
        let mut seen = st.seen.lock().unwrap();
        seen.push(echo(&name, &req));
        seen.len() - 1
    };
    let mode = st.mode.load(Ordering::SeqCst);
    match mode {
        1000 => return Err(Dropped),
        1001 => return std::future::pending().await,
        1..=999 => {
            let status = StatusCode::from_u16(mode as u16).unwrap_or(StatusCode::OK);
            return Ok(text(status, &name, format!("upstream={name}\n")));
        }
        _ => {}
    }
    if path == "/reset" {
        return Err(Dropped);
    }
    if path == "/count" {
        // As `serve` does, and the count is recorded with the request.
        let mut body = req.into_body();
        let mut total = 0usize;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => total += f.data_ref().map(|d| d.len()).unwrap_or(0),
                Err(e) => return Ok(text(StatusCode::BAD_REQUEST, &name, format!("error={e}"))),
            }
        }
        st.seen.lock().unwrap()[seen_at].push_str(&format!("bytes={total}\n"));
        return Ok(text(StatusCode::OK, &name, format!("bytes={total}")));
    }
    if path == "/hang" {
        return std::future::pending().await;
    }
    if let Some(ms) = path.strip_prefix("/slow/") {
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
    }
    if let Some(code) = path.strip_prefix("/grpc/") {
        let mut resp = text(StatusCode::OK, &name, String::new());
        resp.headers_mut()
            .insert("content-type", "application/grpc".parse().unwrap());
        resp.headers_mut()
            .insert("grpc-status", code.parse().unwrap());
        return Ok(resp);
    }
    if path == "/ratelimited" {
        let mut resp = text(
            StatusCode::TOO_MANY_REQUESTS,
            &name,
            format!("upstream={name}\n"),
        );
        resp.headers_mut()
            .insert("x-envoy-ratelimited", "true".parse().unwrap());
        return Ok(resp);
    }
    if path == "/stall" {
        // Headers and a first chunk, then the body never ends.
        use futures_util::StreamExt;
        let first = futures_util::stream::iter([Ok::<_, std::io::Error>(Frame::data(
            Bytes::from_static(b"partial"),
        ))]);
        let stream = first.chain(futures_util::stream::pending());
        let mut resp = Response::new(BodyExt::boxed_unsync(StreamBody::new(stream)));
        resp.headers_mut()
            .insert("x-upstream", name.parse().unwrap());
        return Ok(resp);
    }
    if let Some(rest) = path.strip_prefix("/fail/") {
        let mut it = rest.splitn(3, '/');
        let n: u32 = it.next().and_then(|n| n.parse().ok()).unwrap_or(0);
        let code: u16 = it.next().and_then(|c| c.parse().ok()).unwrap_or(500);
        let key = it.next().unwrap_or("").to_owned();
        let seen = {
            let mut fails = st.fails.lock().unwrap();
            let c = fails.entry(key).or_insert(0);
            *c += 1;
            *c
        };
        // Reads the whole body first, so a failure comes after the gateway sent all of it.
        let mut out = echo(&name, &req);
        let mut body = req.into_body();
        let mut total = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            total += frame.data_ref().map(|d| d.len()).unwrap_or(0);
        }
        if seen <= n {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return Ok(text(
                status,
                &name,
                format!("upstream={name}\nfailure={seen}\n"),
            ));
        }
        out.push_str(&format!("bytes={total}\n"));
        return Ok(text(StatusCode::OK, &name, out));
    }
    match serve(name, req).await {
        Ok(resp) => Ok(resp),
        Err(never) => match never {},
    }
}

async fn serve(name: String, mut req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_owned();
    if path == "/ws" {
        // Upgrade and echo every byte back, upper-cased (proves it went through this server).
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(up) = on.await {
                let mut io = TokioIo::new(up);
                let mut buf = [0u8; 1024];
                while let Ok(n) = io.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let upper: Vec<u8> = buf[..n].iter().map(|b| b.to_ascii_uppercase()).collect();
                    if io.write_all(&upper).await.is_err() {
                        break;
                    }
                }
            }
        });
        let mut resp = Response::new(
            Full::new(Bytes::new())
                .map_err(|e| match e {})
                .boxed_unsync(),
        );
        *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        resp.headers_mut()
            .insert("upgrade", "websocket".parse().unwrap());
        resp.headers_mut()
            .insert("connection", "upgrade".parse().unwrap());
        return Ok(resp);
    }
    if let Some(n) = path.strip_prefix("/stream/") {
        // Streams n bytes in 64 KiB chunks.
        let total: usize = n.parse().unwrap_or(0);
        let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
        let stream = futures_util::stream::iter((0..total.div_ceil(chunk.len())).map(move |i| {
            let len = (total - i * chunk.len()).min(chunk.len());
            Ok::<_, std::io::Error>(Frame::data(chunk.slice(..len)))
        }));
        let mut resp = Response::new(BodyExt::boxed_unsync(StreamBody::new(stream)));
        resp.headers_mut()
            .insert("x-upstream", name.parse().unwrap());
        return Ok(resp);
    }
    if let Some(code) = path.strip_prefix("/status/") {
        let status = code
            .parse()
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
            .unwrap_or(StatusCode::OK);
        return Ok(text(status, &name, format!("upstream={name}\n")));
    }
    Ok(text(StatusCode::OK, &name, echo(&name, &req)))
}

/// `upstream=`, `method=`, `path=`, `version=` and one `h:<name>=<value>` line per header.
fn echo(name: &str, req: &Request<Incoming>) -> String {
    let mut out = format!(
        "upstream={name}\nmethod={}\npath={}\nversion={:?}\nauthority={}\n",
        req.method(),
        req.uri().path_and_query().map(|p| p.as_str()).unwrap_or(""),
        req.version(),
        // HTTP/2 `:authority` (HTTP/1.1 requests carry it in `host`, echoed below).
        req.uri().authority().map(|a| a.as_str()).unwrap_or("")
    );
    for (k, v) in req.headers() {
        out.push_str(&format!("h:{}={}\n", k, v.to_str().unwrap_or("?")));
    }
    out
}
