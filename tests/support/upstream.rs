//! A real upstream HTTP server that says who answered, echoes what it received, counts requests,
//! and can stream bodies, return a chosen status or upgrade to a WebSocket-style echo.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

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
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    /// Starts an upstream on 127.0.0.1:0 (HTTP/1.1 and h2c).
    pub async fn start(name: &str) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let (n, h) = (name.to_owned(), hits.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (n, h) = (n.clone(), h.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        h.fetch_add(1, Ordering::SeqCst);
                        serve(n.clone(), req)
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Upstream {
            name: name.to_owned(),
            addr,
            hits,
            task,
        }
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Stops accepting; the port is closed.
    pub fn stop(&self) {
        self.task.abort();
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
    if path == "/count" {
        // Reads the body as a stream and answers with its length.
        let mut body = req.into_body();
        let mut total = 0usize;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => total += f.data_ref().map(|d| d.len()).unwrap_or(0),
                Err(e) => return Ok(text(StatusCode::BAD_REQUEST, &name, format!("error={e}"))),
            }
        }
        return Ok(text(StatusCode::OK, &name, format!("bytes={total}")));
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
    let mut out = format!(
        "upstream={name}\nmethod={}\npath={}\nversion={:?}\n",
        req.method(),
        req.uri().path_and_query().map(|p| p.as_str()).unwrap_or(""),
        req.version()
    );
    for (k, v) in req.headers() {
        out.push_str(&format!("h:{}={}\n", k, v.to_str().unwrap_or("?")));
    }
    Ok(text(StatusCode::OK, &name, out))
}
