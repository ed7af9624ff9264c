//! A small HTTP/1.1 server for the operations ports: one handler, text or JSON replies, no
//! bodies read. Stops accepting when told; open connections end on their own.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// What a handler sees of a request.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: http::Method,
    pub path: String,
    /// The raw query string (without `?`), empty when absent.
    pub query: String,
}

impl Request {
    /// Every value of query parameter `name`, percent-decoded.
    pub fn params(&self, name: &str) -> Vec<String> {
        self.query
            .split('&')
            .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
            .filter(|(k, _)| *k == name)
            .map(|(_, v)| decode(v))
            .collect()
    }
}

/// `%XX` and `+` decoding for query values; invalid escapes are kept as written.
fn decode(v: &str) -> String {
    let v = v.replace('+', " ");
    percent_encoding::percent_decode_str(&v)
        .decode_utf8_lossy()
        .into_owned()
}

/// A handler's answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Bytes,
}

impl Reply {
    pub fn text(status: u16, body: impl Into<String>) -> Reply {
        Reply {
            status,
            content_type: "text/plain; charset=utf-8",
            body: Bytes::from(body.into()),
        }
    }

    pub fn json(status: u16, value: &serde_json::Value) -> Reply {
        let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
        body.push(b'\n');
        Reply {
            status,
            content_type: "application/json",
            body: Bytes::from(body),
        }
    }

    pub fn prometheus(body: String) -> Reply {
        Reply {
            status: 200,
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body: Bytes::from(body),
        }
    }
}

/// A handler for one port.
pub type Endpoint =
    Arc<dyn Fn(Request) -> Pin<Box<dyn Future<Output = Reply> + Send>> + Send + Sync>;

/// Accepts on `listener` until `stop` turns true, answering every request with `endpoint`.
pub async fn serve(listener: TcpListener, endpoint: Endpoint, mut stop: watch::Receiver<bool>) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => return,
        };
        let Ok((stream, _)) = accepted else {
            continue;
        };
        let endpoint = endpoint.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let endpoint = endpoint.clone();
                async move {
                    let r = Request {
                        method: req.method().clone(),
                        path: req.uri().path().to_owned(),
                        query: req.uri().query().unwrap_or("").to_owned(),
                    };
                    let reply = endpoint(r).await;
                    let mut resp = http::Response::new(Full::new(reply.body));
                    *resp.status_mut() = http::StatusCode::from_u16(reply.status)
                        .unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
                    resp.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static(reply.content_type),
                    );
                    Ok::<_, std::convert::Infallible>(resp)
                }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_decoded() {
        let r = Request {
            method: http::Method::GET,
            path: "/explain".into(),
            query: "url=http%3A%2F%2Fa%2Fb&header=x-a%3A+1&header=x-b:2&bad=%zz&end=%4".into(),
        };
        assert_eq!(r.params("url"), vec!["http://a/b"]);
        assert_eq!(r.params("header"), vec!["x-a: 1", "x-b:2"]);
        assert_eq!(r.params("bad"), vec!["%zz"]);
        assert_eq!(r.params("end"), vec!["%4"]);
        assert!(r.params("none").is_empty());
    }
}
