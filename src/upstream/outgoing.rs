//! A request on its way upstream, as the client is given it: the head every attempt shares
//! (borrowed, never copied for HTTP/1.1, which writes it straight to the wire) and the headers
//! of this attempt. HTTP/2 and upgrades make an `http::Request` of it.
//! May not touch: what the head holds (the proxy builds it), bodies.

use http::header::HeaderName;
use http::uri::{Authority, PathAndQuery};
use http::{HeaderMap, HeaderValue, Method, Request, Uri, Version};

use super::settings::UpstreamBody;

/// The head of one attempt.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    pub method: &'a Method,
    /// The request target in origin-form.
    pub path_and_query: &'a PathAndQuery,
    pub headers: &'a HeaderMap,
    /// This attempt's own headers: each replaces any of `headers` by the same name.
    pub extra: &'a [(HeaderName, HeaderValue)],
    /// Headers `headers` is known not to hold (the request's trace context): sent after them,
    /// with no lookup.
    pub added: &'a [(HeaderName, HeaderValue)],
    /// The endpoint's `ip:port` (an HTTP/2 URI's authority when the request has no usable host).
    pub authority: &'a Authority,
}

impl Outgoing<'_> {
    /// As an `http::Request`: origin-form URI for HTTP/1.1, absolute for HTTP/2.
    ///
    /// # Errors
    /// Not expected: the path was validated when the head was built.
    pub fn to_request(
        &self,
        version: Version,
        body: UpstreamBody,
    ) -> Result<Request<UpstreamBody>, http::Error> {
        let uri = if version == Version::HTTP_2 {
            Uri::builder()
                .scheme("http")
                .authority(self.authority.clone())
                .path_and_query(self.path_and_query.clone())
                .build()?
        } else {
            Uri::from(self.path_and_query.clone())
        };
        let mut req = Request::new(body);
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = uri;
        *req.version_mut() = version;
        *req.headers_mut() = self.headers.clone();
        for (name, value) in self.extra.iter().chain(self.added) {
            req.headers_mut().insert(name, value.clone());
        }
        Ok(req)
    }

    /// Is this header of `headers` replaced by one of `extra`?
    pub fn replaced(&self, name: &HeaderName) -> bool {
        self.extra.iter().any(|(n, _)| n == name)
    }
}
