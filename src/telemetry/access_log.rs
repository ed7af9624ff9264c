//! Access log lines in Envoy's format as Istio configures it (`meshConfig.accessLogEncoding`
//! TEXT or JSON), written by one background thread so the request path never blocks on stdout.

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::text::{push_socket_addr, push_time, push_u64};

/// `--access-log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Istio's `EnvoyTextLogFormat`.
    Text,
    /// Istio's default JSON access log (same fields, Istio's key names).
    Json,
}

/// One finished request, as the log shows it. `None`/empty fields print as `-` (text) or
/// `null` (JSON), as Envoy's formatter does.
#[derive(Debug, Clone, Default)]
pub struct Line<'a> {
    pub start: Option<SystemTime>,
    pub method: &'a str,
    /// `x-envoy-original-path` if set, else the path with the query, as the client sent it.
    pub path: &'a str,
    /// `HTTP/1.1`, `HTTP/2`.
    pub protocol: &'a str,
    pub response_code: u16,
    pub response_flags: &'a str,
    pub response_code_details: &'a str,
    pub connection_termination_details: Option<&'a str>,
    pub upstream_transport_failure_reason: Option<&'a str>,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub duration_ms: u64,
    pub upstream_service_time: Option<u64>,
    pub x_forwarded_for: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub request_id: Option<&'a str>,
    pub authority: Option<&'a str>,
    pub upstream_host: Option<SocketAddr>,
    pub upstream_cluster: Option<&'a str>,
    pub upstream_local_address: Option<SocketAddr>,
    pub downstream_local_address: Option<SocketAddr>,
    pub downstream_remote_address: Option<SocketAddr>,
    pub requested_server_name: Option<&'a str>,
    pub route_name: Option<&'a str>,
    /// The request's trace id (32 hex digits). JSON only: Istio's text format has no such field.
    pub trace_id: Option<&'a str>,
}

impl Line<'_> {
    /// Appends the line (with its newline) in `format` to `out`.
    pub fn write(&self, format: Format, out: &mut String) {
        match format {
            Format::Text => self.text(out),
            Format::Json => self.json(out),
        }
    }

    fn text(&self, out: &mut String) {
        fn text(out: &mut String, s: Option<&str>) {
            match s.filter(|s| !s.is_empty()) {
                Some(s) => out.push_str(s),
                None => out.push('-'),
            }
        }
        fn quoted(out: &mut String, s: Option<&str>) {
            out.push('"');
            text(out, s);
            out.push('"');
        }
        fn addr(out: &mut String, a: Option<SocketAddr>) {
            match a {
                Some(a) => push_socket_addr(out, a),
                None => out.push('-'),
            }
        }
        // [%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%"
        // %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS%
        // "%UPSTREAM_TRANSPORT_FAILURE_REASON%" %BYTES_RECEIVED% %BYTES_SENT% %DURATION%
        // %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%"
        // "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%" %UPSTREAM_CLUSTER%
        // %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS%
        // %REQUESTED_SERVER_NAME% %ROUTE_NAME%
        out.push('[');
        match self.start {
            Some(t) => push_time(out, t),
            None => out.push('-'),
        }
        out.push_str("] \"");
        text(out, Some(self.method));
        out.push(' ');
        text(out, Some(self.path));
        out.push(' ');
        text(out, Some(self.protocol));
        out.push_str("\" ");
        push_u64(out, u64::from(self.response_code));
        out.push(' ');
        text(out, Some(self.response_flags));
        out.push(' ');
        text(out, Some(self.response_code_details));
        out.push(' ');
        text(out, self.connection_termination_details);
        out.push(' ');
        quoted(out, self.upstream_transport_failure_reason);
        out.push(' ');
        push_u64(out, self.bytes_received);
        out.push(' ');
        push_u64(out, self.bytes_sent);
        out.push(' ');
        push_u64(out, self.duration_ms);
        out.push(' ');
        match self.upstream_service_time {
            Some(n) => push_u64(out, n),
            None => out.push('-'),
        }
        out.push(' ');
        quoted(out, self.x_forwarded_for);
        out.push(' ');
        quoted(out, self.user_agent);
        out.push(' ');
        quoted(out, self.request_id);
        out.push(' ');
        quoted(out, self.authority);
        out.push_str(" \"");
        addr(out, self.upstream_host);
        out.push_str("\" ");
        text(out, self.upstream_cluster);
        out.push(' ');
        addr(out, self.upstream_local_address);
        out.push(' ');
        addr(out, self.downstream_local_address);
        out.push(' ');
        addr(out, self.downstream_remote_address);
        out.push(' ');
        text(out, self.requested_server_name);
        out.push(' ');
        text(out, self.route_name);
        out.push('\n');
    }

    fn json(&self, out: &mut String) {
        use serde_json::{json, Value};
        let s = |v: Option<&str>| {
            v.filter(|s| !s.is_empty())
                .map(Value::from)
                .unwrap_or(Value::Null)
        };
        let a =
            |v: Option<SocketAddr>| v.map(|a| Value::from(a.to_string())).unwrap_or(Value::Null);
        let line = json!({
            "start_time": self.start.map(format_time),
            "method": s(Some(self.method)),
            "path": s(Some(self.path)),
            "protocol": s(Some(self.protocol)),
            "response_code": self.response_code,
            "response_flags": s(Some(self.response_flags)),
            "response_code_details": s(Some(self.response_code_details)),
            "connection_termination_details": s(self.connection_termination_details),
            "upstream_transport_failure_reason": s(self.upstream_transport_failure_reason),
            "bytes_received": self.bytes_received,
            "bytes_sent": self.bytes_sent,
            "duration": self.duration_ms,
            "upstream_service_time": self.upstream_service_time.map(|n| n.to_string()),
            "x_forwarded_for": s(self.x_forwarded_for),
            "user_agent": s(self.user_agent),
            "request_id": s(self.request_id),
            "authority": s(self.authority),
            "upstream_host": a(self.upstream_host),
            "upstream_cluster": s(self.upstream_cluster),
            "upstream_local_address": a(self.upstream_local_address),
            "downstream_local_address": a(self.downstream_local_address),
            "downstream_remote_address": a(self.downstream_remote_address),
            "requested_server_name": s(self.requested_server_name),
            "route_name": s(self.route_name),
            "trace_id": s(self.trace_id),
        });
        let _ = serde_json::to_writer(StringWriter(out), &line);
        out.push('\n');
    }
}

struct StringWriter<'a>(&'a mut String);

impl std::io::Write for StringWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.push_str(&String::from_utf8_lossy(buf));
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `%START_TIME%`: `2026-12-01T21:43:55.123Z` (UTC, milliseconds), as Envoy prints it.
pub fn format_time(t: SystemTime) -> String {
    let mut s = String::with_capacity(24);
    push_time(&mut s, t);
    s
}

/// Where access log lines go.
#[derive(Debug, Clone)]
pub enum Sink {
    Stdout,
    /// An in-process buffer (tests, embedding).
    Memory(Arc<Mutex<Vec<u8>>>),
}

impl Sink {
    fn writer(&self) -> Box<dyn std::io::Write + Send> {
        match self {
            Sink::Stdout => Box::new(std::io::stdout()),
            Sink::Memory(buf) => Box::new(MemoryWriter(buf.clone())),
        }
    }
}

struct MemoryWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for MemoryWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut v) = self.0.lock() {
            v.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// How often the writer thread wakes up to write what has queued.
const FLUSH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(20);

/// Lines waiting for the writer thread; past this, lines are dropped and counted.
const QUEUE: usize = 16 * 1024;

/// The access log sink: a bounded queue to one thread that writes to stdout in batches, at most
/// every 20 ms. Never blocks the request path: a full queue drops the line.
#[derive(Debug)]
pub struct AccessLog {
    pub format: Format,
    tx: SyncSender<String>,
    dropped: AtomicU64,
}

impl AccessLog {
    /// Starts the writer thread on `sink`.
    pub fn start(format: Format, sink: &Sink) -> AccessLog {
        let out = sink.writer();
        let (tx, rx) = sync_channel::<String>(QUEUE);
        let _ = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
                while let Ok(line) = rx.recv() {
                    let _ = out.write_all(line.as_bytes());
                    while let Ok(line) = rx.try_recv() {
                        let _ = out.write_all(line.as_bytes());
                    }
                    let _ = out.flush();
                    // Batch: while this thread sleeps no sender has a receiver to wake, so a busy
                    // gateway pays one wake-up and one write per interval, not per line.
                    std::thread::sleep(FLUSH_INTERVAL);
                }
            });
        AccessLog {
            format,
            tx,
            dropped: AtomicU64::new(0),
        }
    }

    pub fn log(&self, line: &Line<'_>) {
        let mut s = String::with_capacity(384);
        line.write(self.format, &mut s);
        match self.tx.try_send(s) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("meshgate_access_log_dropped_total").increment(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn sample() -> Line<'static> {
        Line {
            start: Some(SystemTime::UNIX_EPOCH + Duration::from_millis(1_764_625_435_123)),
            method: "GET",
            path: "/api/orders?id=7",
            protocol: "HTTP/1.1",
            response_code: 503,
            response_flags: "UF",
            response_code_details: "upstream_reset_before_response_started{connection_refused}",
            upstream_transport_failure_reason: None,
            bytes_received: 0,
            bytes_sent: 91,
            duration_ms: 3,
            upstream_service_time: None,
            x_forwarded_for: Some("10.0.0.1"),
            user_agent: Some("curl/8.5.0"),
            request_id: Some("abc"),
            authority: Some("shop.example.com"),
            upstream_host: Some("127.0.0.1:9".parse().unwrap()),
            upstream_cluster: Some("outbound|80||backend.internal"),
            downstream_local_address: Some("127.0.0.1:8080".parse().unwrap()),
            downstream_remote_address: Some("127.0.0.1:50000".parse().unwrap()),
            route_name: Some("edge/shop/api"),
            trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736"),
            ..Line::default()
        }
    }

    #[test]
    fn text_line_is_istios_envoy_format() {
        let mut s = String::new();
        sample().write(Format::Text, &mut s);
        assert_eq!(
            s,
            "[2025-12-01T21:43:55.123Z] \"GET /api/orders?id=7 HTTP/1.1\" 503 UF upstream_reset_before_response_started{connection_refused} - \"-\" 0 91 3 - \"10.0.0.1\" \"curl/8.5.0\" \"abc\" \"shop.example.com\" \"127.0.0.1:9\" outbound|80||backend.internal - 127.0.0.1:8080 127.0.0.1:50000 - edge/shop/api\n"
        );
    }

    #[test]
    fn json_line_has_istios_keys() {
        let mut s = String::new();
        sample().write(Format::Json, &mut s);
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["start_time"], "2025-12-01T21:43:55.123Z");
        assert_eq!(v["response_code"], 503);
        assert_eq!(v["response_flags"], "UF");
        assert_eq!(v["upstream_cluster"], "outbound|80||backend.internal");
        assert_eq!(v["upstream_service_time"], serde_json::Value::Null);
        assert_eq!(v["route_name"], "edge/shop/api");
        assert_eq!(v["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(s.ends_with("}\n"));
    }
}
