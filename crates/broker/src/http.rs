//! A small HTTP/1.1 server for operational endpoints (`GET /metrics`).
//!
//! Runs on: the shard that binds it (shard 0 for `--metrics-listen`), on a
//! glommio `TcpListener`: no tokio, no hyper (NOTES-glommio #9).
//!
//! One request per connection (`Connection: close`). Everything is bounded:
//! the request (line, headers and body) is at most `http_request_bytes_max`
//! bytes (413 beyond), it must arrive within `http_request_ms_max`, the
//! handler and the write get `http_response_ms_max`, and at most
//! `http_connections_max` connections are served at once (the accept loop
//! waits for a free slot). Malformed requests get 400, unknown paths 404,
//! a known path with another method 405 (with `Allow`).
//!
//! Routes: a table of (method, path) → async handler, built by the caller:
//!
//! ```
//! use ringstream_broker::http::{Response, Routes};
//! let routes = Routes::new()
//!     .route("GET", "/metrics", |shard, request| Box::pin(ringstream_broker::export::scrape(shard, request, None)))
//!     .route("GET", "/hello", |_shard, _request| Box::pin(async { Response::text(200, "hello\n") }));
//! assert!(routes.find("GET", "/hello").is_ok());
//! assert!(routes.find("POST", "/hello").is_err()); // 405
//! ```
//!
//! A handler gets the shard it runs on and the parsed `Request` (method,
//! path, raw query string, headers, body) and returns a `Response`.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use tracing::warn;

use ringstream_core::limits;
use ringstream_core::limits::http_linger_bytes_max;
use ringstream_core::limits::http_linger_ms_max;
use ringstream_shard::Shard;

/// A parsed request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The path without the query string, e.g. `/metrics`.
    pub path: String,
    /// The raw query string after `?` (empty when none), not decoded.
    pub query: String,
    /// Header names lower-cased, values trimmed, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The value of `key` in the query string (first occurrence, not
    /// percent-decoded).
    pub fn query_param(&self, key: &str) -> Option<&str> {
        self.query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == key).then_some(v)
        })
    }
}

/// A response; the server adds Content-Length and `Connection: close`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Response {
        Response { status, content_type: content_type.to_owned(), headers: Vec::new(), body: body.into() }
    }

    /// A plain-text response (errors end with a newline).
    pub fn text(status: u16, body: impl Into<String>) -> Response {
        let mut body = body.into();
        if !body.ends_with('\n') {
            body.push('\n');
        }
        Response::new(status, "text/plain; charset=utf-8", body)
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    fn encode(&self) -> Vec<u8> {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len()
        );
        for (name, value) in &self.headers {
            head.push_str(name);
            head.push_str(": ");
            head.push_str(value);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// An async handler: runs on the serving shard.
pub type Handler = Rc<dyn Fn(Rc<Shard>, Request) -> Pin<Box<dyn Future<Output = Response>>>>;

struct Route {
    method: &'static str,
    path: &'static str,
    handler: Handler,
}

/// The route table: exact (method, path) matches.
#[derive(Default)]
pub struct Routes {
    routes: Vec<Route>,
}

impl Routes {
    pub fn new() -> Routes {
        Routes::default()
    }

    /// Adds a route; a (method, path) pair may appear once.
    pub fn route<F>(mut self, method: &'static str, path: &'static str, handler: F) -> Routes
    where
        F: Fn(Rc<Shard>, Request) -> Pin<Box<dyn Future<Output = Response>>> + 'static,
    {
        assert!(path.starts_with('/'), "route paths start with /");
        assert!(!self.routes.iter().any(|r| r.method == method && r.path == path), "duplicate route {method} {path}");
        self.routes.push(Route { method, path, handler: Rc::new(handler) });
        self
    }

    /// The handler for (method, path), or the error response: 404 when no
    /// route has the path, 405 (with `Allow`) when only other methods do.
    pub fn find(&self, method: &str, path: &str) -> Result<Handler, Response> {
        if let Some(route) = self.routes.iter().find(|r| r.method == method && r.path == path) {
            return Ok(route.handler.clone());
        }
        let allowed: Vec<&str> = self.routes.iter().filter(|r| r.path == path).map(|r| r.method).collect();
        if allowed.is_empty() {
            return Err(Response::text(404, format!("no such path: {path}")));
        }
        let allow = allowed.join(", ");
        Err(Response::text(405, format!("{method} is not allowed on {path}; allowed: {allow}"))
            .with_header("Allow", &allow))
    }
}

/// Why a request could not be read.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadError {
    /// Answer with this response, then close.
    Reply(Response),
    /// The peer went away or the socket failed: close without a response.
    Closed,
}

/// Parses the head (request line and headers, without the blank line).
pub fn parse_head(head: &[u8]) -> Result<Request, Response> {
    let bad = |why: &str| Response::text(400, format!("bad request: {why}"));
    let head = std::str::from_utf8(head).map_err(|_| bad("the request head is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let line = lines.next().unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("the request line is not METHOD TARGET HTTP/1.x"));
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(bad("the method is not an upper-case token"));
    }
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(bad("only HTTP/1.0 and HTTP/1.1 are served"));
    }
    if !target.starts_with('/') || target.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(bad("the target is not an absolute path"));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line.split_once(':').ok_or_else(|| bad("a header line has no colon"))?;
        if name.is_empty() || name.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(bad("a header name is empty or has spaces"));
        }
        headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
    }
    Ok(Request { method: method.to_owned(), path: path.to_owned(), query: query.to_owned(), headers, body: Vec::new() })
}

fn too_large() -> Response {
    Response::text(413, format!("request exceeds {} bytes", limits::http_request_bytes_max))
}

/// Reads one request, at most `http_request_bytes_max` bytes in all.
pub async fn read_request(stream: &mut (impl AsyncReadExt + Unpin)) -> Result<Request, ReadError> {
    let max = limits::http_request_bytes_max;
    let mut buffer = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        if buffer.len() >= max {
            return Err(ReadError::Reply(too_large()));
        }
        let want = chunk.len().min(max - buffer.len());
        let n = stream.read(&mut chunk[..want]).await.map_err(|_| ReadError::Closed)?;
        if n == 0 {
            return Err(if buffer.is_empty() {
                ReadError::Closed
            } else {
                ReadError::Reply(Response::text(400, "bad request: the connection closed inside the request head"))
            });
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let mut request = parse_head(&buffer[..head_end]).map_err(ReadError::Reply)?;
    if request.header("transfer-encoding").is_some() {
        return Err(ReadError::Reply(Response::text(
            501,
            "chunked request bodies are not supported; send Content-Length",
        )));
    }
    let length = match request.header("content-length") {
        None => 0,
        Some(text) => text
            .parse::<usize>()
            .map_err(|_| ReadError::Reply(Response::text(400, "bad request: Content-Length is not a number")))?,
    };
    let body_start = head_end + 4;
    if body_start.checked_add(length).map_or(true, |end| end > max) {
        return Err(ReadError::Reply(too_large()));
    }
    let mut body = buffer[body_start..].to_vec();
    if body.len() > length {
        return Err(ReadError::Reply(Response::text(
            400,
            "bad request: more bytes than Content-Length (no pipelining)",
        )));
    }
    while body.len() < length {
        let want = chunk.len().min(length - body.len());
        let n = stream.read(&mut chunk[..want]).await.map_err(|_| ReadError::Closed)?;
        if n == 0 {
            return Err(ReadError::Reply(Response::text(400, "bad request: the connection closed inside the body")));
        }
        body.extend_from_slice(&chunk[..n]);
    }
    request.body = body;
    Ok(request)
}

/// Binds `address` on this shard (glommio sets SO_REUSEPORT). Returns the
/// listener and its address (port 0 resolved).
pub fn bind(address: SocketAddr) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(address).map_err(std::io::Error::from)?;
    let local = listener.local_addr().map_err(std::io::Error::from)?;
    Ok((listener, local))
}

/// Serves `routes` on `listener` from this shard until the executor ends.
pub fn serve(shard: Rc<Shard>, listener: TcpListener, routes: Routes) {
    let routes = Rc::new(routes);
    let slots = Rc::new(glommio::sync::Semaphore::new(limits::http_connections_max as u64));
    glommio::spawn_local(async move {
        loop {
            let Ok(permit) = slots.acquire_static_permit(1).await else { return };
            match listener.accept().await {
                Ok(stream) => {
                    let (shard, routes) = (shard.clone(), routes.clone());
                    glommio::spawn_local(async move {
                        serve_one(shard, &routes, stream).await;
                        drop(permit);
                    })
                    .detach();
                }
                Err(e) => {
                    drop(permit);
                    warn!("http accept failed: {e}");
                    glommio::timer::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    })
    .detach();
}

/// Runs `future`, or gives up after `ms` milliseconds.
async fn within<T>(ms: u64, future: impl Future<Output = T>) -> Option<T> {
    futures_lite::future::or(async { Some(future.await) }, async {
        glommio::timer::sleep(Duration::from_millis(ms)).await;
        None
    })
    .await
}

async fn serve_one(shard: Rc<Shard>, routes: &Routes, mut stream: TcpStream) {
    let read = within(limits::http_request_ms_max, read_request(&mut stream)).await;
    let response = match read {
        None => Response::text(408, format!("the request did not arrive within {} ms", limits::http_request_ms_max)),
        Some(Err(ReadError::Closed)) => return,
        Some(Err(ReadError::Reply(response))) => response,
        Some(Ok(request)) => match routes.find(&request.method, &request.path) {
            Err(response) => response,
            Ok(handler) => match within(limits::http_response_ms_max, handler(shard, request)).await {
                Some(response) => response,
                None => Response::text(503, "the handler timed out"),
            },
        },
    };
    let bytes = response.encode();
    let _ = within(limits::http_response_ms_max, async {
        let _ = stream.write_all(&bytes).await;
        let _ = stream.flush().await;
    })
    .await;
    // Lingering close: a refused request (413, 400) may leave bytes we never
    // read, and closing with unread bytes sends a reset that can destroy
    // the response before the client reads it. Half-close, then discard
    // what the client still sends, bounded in bytes and time.
    let _ = stream.shutdown(std::net::Shutdown::Write).await;
    let _ = within(http_linger_ms_max, async {
        let mut sink = [0u8; 1024];
        let mut drained = 0usize;
        while drained < http_linger_bytes_max {
            match stream.read(&mut sink).await {
                Ok(n) if n > 0 => drained += n,
                _ => break,
            }
        }
    })
    .await;
    let _ = stream.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8]) -> Result<Request, ReadError> {
        let mut reader = futures_lite::io::Cursor::new(bytes.to_vec());
        futures_lite::future::block_on(read_request(&mut reader))
    }

    fn status(result: Result<Request, ReadError>) -> u16 {
        match result {
            Err(ReadError::Reply(response)) => response.status,
            other => panic!("expected an error reply, got {other:?}"),
        }
    }

    #[test]
    fn requests_parse_with_query_headers_and_body() {
        let request = read(b"POST /x/y?a=1&b=two HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello").unwrap();
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/x/y");
        assert_eq!(request.query, "a=1&b=two");
        assert_eq!(request.query_param("b"), Some("two"));
        assert_eq!(request.query_param("c"), None);
        assert_eq!(request.header("HOST"), Some("h"));
        assert_eq!(request.body, b"hello");
        let request = read(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
        assert_eq!((request.path.as_str(), request.query.as_str(), request.body.len()), ("/metrics", "", 0));
    }

    #[test]
    fn malformed_and_oversized_requests_are_refused() {
        assert_eq!(status(read(b"GET /metrics\r\n\r\n")), 400);
        assert_eq!(status(read(b"get /metrics HTTP/1.1\r\n\r\n")), 400);
        assert_eq!(status(read(b"GET metrics HTTP/1.1\r\n\r\n")), 400);
        assert_eq!(status(read(b"GET /metrics HTTP/2\r\n\r\n")), 400);
        assert_eq!(status(read(b"GET /metrics HTTP/1.1\r\nno colon\r\n\r\n")), 400);
        assert_eq!(status(read(b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n")), 400);
        assert_eq!(status(read(b"GET / HTTP/1.1\r\nContent-Length: 10\r\n\r\nshort")), 400);
        assert_eq!(status(read(b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")), 501);
        let huge = format!("GET / HTTP/1.1\r\nContent-Length: {}\r\n\r\n", limits::http_request_bytes_max);
        assert_eq!(status(read(huge.as_bytes())), 413);
        let long_head = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(limits::http_request_bytes_max));
        assert_eq!(status(read(long_head.as_bytes())), 413);
        assert!(matches!(read(b""), Err(ReadError::Closed)));
    }

    #[test]
    fn routes_answer_404_and_405() {
        let routes = Routes::new()
            .route("GET", "/metrics", |_, _| Box::pin(async { Response::text(200, "ok") }))
            .route("POST", "/metrics", |_, _| Box::pin(async { Response::text(200, "ok") }));
        assert!(routes.find("GET", "/metrics").is_ok());
        assert_eq!(routes.find("GET", "/nope").err().unwrap().status, 404);
        let refused = routes.find("DELETE", "/metrics").err().unwrap();
        assert_eq!(refused.status, 405);
        assert!(refused.headers.contains(&("Allow".to_owned(), "GET, POST".to_owned())));
        let text = String::from_utf8(refused.encode()).unwrap();
        assert!(text.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"), "{text}");
        assert!(text.contains("Connection: close\r\n") && text.contains("Allow: GET, POST\r\n"), "{text}");
    }
}
