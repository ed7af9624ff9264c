//! A real HTTP client (hyper, HTTP/1.1 keep-alive or h2c prior knowledge).

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

pub struct Client {
    inner: hyper_util::client::legacy::Client<HttpConnector, Full<Bytes>>,
    addr: SocketAddr,
}

/// A response with its whole body read.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    /// The `upstream=` line of an echo body: which upstream answered.
    pub fn upstream(&self) -> &str {
        self.field("upstream").unwrap_or("")
    }

    /// A `key=value` line of the echo body (`path`, `method`, or `h:<header>`).
    pub fn field(&self, key: &str) -> Option<&str> {
        self.body
            .lines()
            .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl Client {
    pub fn http1(addr: SocketAddr) -> Client {
        Client {
            inner: hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http(),
            addr,
        }
    }

    pub fn h2c(addr: SocketAddr) -> Client {
        Client {
            inner: hyper_util::client::legacy::Client::builder(TokioExecutor::new())
                .http2_only(true)
                .build_http(),
            addr,
        }
    }

    /// GET `path` with `Host: host`.
    pub async fn get(&self, host: &str, path: &str) -> Reply {
        self.send(
            self.request(host, path)
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
    }

    /// A request builder aimed at the gateway, with the Host header set.
    pub fn request(&self, host: &str, path: &str) -> http::request::Builder {
        Request::builder()
            .uri(format!("http://{}{}", self.addr, path))
            .header("host", host)
    }

    pub async fn send(&self, req: Request<Full<Bytes>>) -> Reply {
        self.try_send(req)
            .await
            .expect("request to the gateway failed")
    }

    /// Like `send`, but a transport error is returned instead of panicking (load tests count them).
    pub async fn try_send(&self, req: Request<Full<Bytes>>) -> Result<Reply, String> {
        let resp = self
            .inner
            .request(req)
            .await
            .map_err(|e| format!("{e:?}"))?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }

    pub async fn try_get(&self, host: &str, path: &str) -> Result<Reply, String> {
        self.try_send(
            self.request(host, path)
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
    }
}
