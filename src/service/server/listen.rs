//! The accept loop: HTTP/1.1 only (Logplex speaks HTTP/1.1; no h2c, so no
//! stream multiplexing for a stranger to exploit), with a connection cap
//! below the descriptor limit, a header-read timeout (slowloris), an idle
//! timeout for keep-alive connections, and accept errors logged (rate
//! limited) instead of spinning. Bodies get their own limit and deadline in
//! the handlers, after the credentials were checked (a body a handler does
//! not read makes hyper close the connection after the answer, chunked or
//! not). At the cap, the oldest connection still waiting for a request head
//! is closed to make room, so idle connects cannot lock real clients out
//! until the header timeout. A request with both `Content-Length` and
//! `Transfer-Encoding` gets 400 and the connection is closed (RFC 9112 §6.3).

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use axum::response::IntoResponse;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore, watch};

use crate::telemetry::Counters;
use crate::telemetry::Throttle;

// Defined with the other machinery knobs, which `config` reads.
pub use crate::config::tuning::Limits;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns the
/// connection cap that leaves room for the store, the API client and logs.
pub fn connection_cap(wanted: usize) -> usize {
    let soft = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!("could not raise the open-file limit: {e}");
            rlimit::Resource::NOFILE
                .get()
                .map(|(s, _)| s)
                .unwrap_or(1024)
        }
    };
    let room = usize::try_from(soft.saturating_sub(64)).unwrap_or(usize::MAX);
    wanted.min(room).max(16)
}

/// What the accept loop and a connection's request handling share about
/// one connection.
#[derive(Default)]
struct ConnState {
    /// True while no request is being answered: before the first request
    /// head is complete, and between requests. Such a connection holds a
    /// slot without asking anything; it is the one to close at the cap.
    waiting: AtomicBool,
    /// Told to close (at the cap, to make room).
    evict: Notify,
    /// For each request head read off the wire, in order: whether it had
    /// both `Content-Length` and `Transfer-Encoding` (see [`Framing`]).
    both_lengths: Mutex<VecDeque<bool>>,
}

/// The open connections by age (accept order).
#[derive(Default)]
struct Registry {
    conns: Mutex<BTreeMap<u64, Arc<ConnState>>>,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<ConnState>>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Tells the oldest connection waiting for a request head to close;
    /// false if every connection is busy with a request.
    fn evict_oldest_waiting(&self) -> bool {
        let mut conns = self.lock();
        let victim = conns.iter().find_map(|(id, c)| {
            // Claimed here, so that no request starts on it meanwhile and
            // two evictions never pick the same one.
            c.waiting
                .compare_exchange(true, false, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
                .then_some(*id)
        });
        match victim.and_then(|id| conns.remove(&id)) {
            Some(c) => {
                c.evict.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Follows the request framing on the raw bytes, just enough to tell for
/// each request head whether it carried both `Content-Length` and
/// `Transfer-Encoding`: hyper drops the `Content-Length` of such a request
/// before the service sees it, and RFC 9112 §6.3 calls it a smuggling
/// attempt to be answered as an error. Bodies are skipped by their length
/// or their chunk sizes, so body bytes are never read as headers. Whatever
/// it cannot follow (hyper then refuses the request itself) ends the
/// scanning for the connection: it only ever adds a refusal.
struct Framing {
    state: Scan,
    /// The current line's first bytes (enough for a header name and a
    /// length, or a chunk size).
    line: Vec<u8>,
    /// Lines of the current head so far.
    lines: usize,
    te: bool,
    cl: Option<u64>,
    heads: Arc<ConnState>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Scan {
    Head,
    /// Body bytes still to skip (`Content-Length`).
    Fixed(u64),
    ChunkSize,
    ChunkData(u64),
    /// The CRLF after a chunk's data.
    ChunkEnd,
    Trailers,
    Lost,
}

/// Longest line prefix kept: `transfer-encoding:` or `content-length:` and
/// a 20-digit length, or a chunk size, fit.
const LINE_KEEP: usize = 64;

impl Framing {
    fn new(heads: Arc<ConnState>) -> Self {
        Self {
            state: Scan::Head,
            line: Vec::with_capacity(LINE_KEEP),
            lines: 0,
            te: false,
            cl: None,
            heads,
        }
    }

    fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            match self.state {
                Scan::Lost => return,
                Scan::Fixed(n) | Scan::ChunkData(n) => {
                    let take = data.len().min(usize::try_from(n).unwrap_or(usize::MAX));
                    data = &data[take..];
                    let left = n - take as u64;
                    self.state = match (self.state, left) {
                        (Scan::Fixed(_), 0) => Scan::Head,
                        (Scan::Fixed(_), _) => Scan::Fixed(left),
                        (_, 0) => Scan::ChunkEnd,
                        _ => Scan::ChunkData(left),
                    };
                }
                _ => {
                    let Some(end) = memchr::memchr(b'\n', data) else {
                        self.keep(data);
                        return;
                    };
                    self.keep(&data[..end]);
                    data = &data[end + 1..];
                    self.line_done();
                    self.line.clear();
                }
            }
        }
    }

    fn keep(&mut self, part: &[u8]) {
        let room = LINE_KEEP.saturating_sub(self.line.len());
        self.line.extend_from_slice(&part[..part.len().min(room)]);
    }

    fn line_done(&mut self) {
        let line = self.line.strip_suffix(b"\r").unwrap_or(&self.line);
        match self.state {
            Scan::Head if line.is_empty() && self.lines == 0 => {} // leading CRLF
            Scan::Head if line.is_empty() => self.head_done(),
            Scan::Head => {
                self.lines += 1;
                if header_value(line, b"transfer-encoding").is_some() {
                    self.te = true;
                } else if let Some(v) = header_value(line, b"content-length") {
                    let n = std::str::from_utf8(v).ok().and_then(|v| v.parse().ok());
                    match n {
                        Some(n) => self.cl = Some(n),
                        // hyper refuses it (400) and closes.
                        None => self.state = Scan::Lost,
                    }
                }
            }
            Scan::ChunkSize => {
                let size = line.split(|b| *b == b';').next().unwrap_or_default();
                let size = std::str::from_utf8(size)
                    .ok()
                    .and_then(|s| u64::from_str_radix(s.trim(), 16).ok());
                self.state = match size {
                    Some(0) => Scan::Trailers,
                    Some(n) => Scan::ChunkData(n),
                    None => Scan::Lost,
                };
            }
            Scan::ChunkEnd => self.state = Scan::ChunkSize,
            Scan::Trailers if line.is_empty() => self.state = Scan::Head,
            Scan::Trailers | Scan::Fixed(_) | Scan::ChunkData(_) | Scan::Lost => {}
        }
    }

    fn head_done(&mut self) {
        let both = self.te && self.cl.is_some();
        self.heads
            .both_lengths
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(both);
        self.state = match (self.te, self.cl) {
            // Refused and closed: nothing after it is a request.
            (true, Some(_)) => Scan::Lost,
            (true, None) => Scan::ChunkSize,
            (false, Some(0) | None) => Scan::Head,
            (false, Some(n)) => Scan::Fixed(n),
        };
        self.lines = 0;
        self.te = false;
        self.cl = None;
    }
}

/// The value of `line` if it is the header `name` (ASCII case-insensitive;
/// HTTP/1.1 allows no space before the colon).
fn header_value<'a>(line: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let (n, rest) = (line.get(..name.len())?, line.get(name.len()..)?);
    let v = rest.strip_prefix(b":")?;
    n.eq_ignore_ascii_case(name).then(|| v.trim_ascii())
}

/// A stream that remembers when it last moved a byte, and follows the
/// request framing of what it reads.
struct Tracked<S> {
    inner: S,
    last: Arc<AtomicU64>,
    epoch: Instant,
    framing: Framing,
}

impl<S> Tracked<S> {
    fn touch(&self) {
        self.last
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.touch();
            self.framing.feed(&buf.filled()[before..]);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The router as one connection's service: marks the connection busy while
/// a request is answered, and refuses a request with two framings.
struct Edge {
    inner: TowerToHyperService<Router>,
    conn: Arc<ConnState>,
}

type EdgeFuture = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

impl hyper::service::Service<Request<Incoming>> for Edge {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = EdgeFuture;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        self.conn.waiting.store(false, Ordering::Release);
        let both = self
            .conn
            .both_lengths
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front()
            .unwrap_or(false);
        if both {
            // hyper already decided to close after this answer; say so.
            let mut r = (
                StatusCode::BAD_REQUEST,
                "a request may not carry both Content-Length and Transfer-Encoding (RFC 9112 6.3)\n",
            )
                .into_response();
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return Box::pin(std::future::ready(Ok(r)));
        }
        let answer = hyper::service::Service::call(&self.inner, req);
        let conn = self.conn.clone();
        Box::pin(async move {
            let r = answer.await?;
            Ok(r.map(|body| Body::new(Answering { body, conn })))
        })
    }
}

/// An answer's body: when hyper is done with it (written or abandoned) the
/// connection waits for its next request head.
struct Answering {
    body: Body,
    conn: Arc<ConnState>,
}

impl Drop for Answering {
    fn drop(&mut self) {
        self.conn.waiting.store(true, Ordering::Release);
    }
}

impl hyper::body::Body for Answering {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Serves `router` on `listener` until `stop`; then closes idle connections,
/// lets requests in flight finish, and returns when all connections are gone
/// (the caller bounds that with the shutdown deadline).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    counters: Arc<Counters>,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let registry = Arc::new(Registry::default());
    let mut next_id: u64 = 0;
    let accept_log = Throttle::new(Duration::from_secs(10));
    let cap_log = Throttle::new(Duration::from_secs(10));
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
        };
        let (stream, _peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: say so, and do not spin on it.
                Counters::add(&counters.accept_errors, 1);
                if let Some(n) = accept_log.allow() {
                    tracing::warn!("accepting a connection failed: {e} ({n} more not logged)");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let mut permit = slots.clone().try_acquire_owned().ok();
        if permit.is_none() && registry.evict_oldest_waiting() {
            Counters::add(&counters.connections_evicted, 1);
            // The evicted connection's task gives its slot back as soon as
            // it runs; bounded, so a stuck runtime never stalls accepting.
            permit = tokio::time::timeout(Duration::from_secs(1), slots.clone().acquire_owned())
                .await
                .ok()
                .and_then(Result::ok);
        }
        let Some(permit) = permit else {
            Counters::add(&counters.connections_refused, 1);
            if let Some(n) = cap_log.allow() {
                tracing::warn!(
                    "connection limit ({}) reached: closing new connections ({n} more not logged)",
                    limits.max_connections
                );
            }
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let mut stop = stop.clone();
        let state = Arc::new(ConnState {
            waiting: AtomicBool::new(true),
            ..ConnState::default()
        });
        let id = next_id;
        next_id += 1;
        registry.lock().insert(id, state.clone());
        let registry = registry.clone();
        conns.spawn(async move {
            let _permit = permit;
            let last = Arc::new(AtomicU64::new(0));
            let epoch = Instant::now();
            let io = TokioIo::new(Tracked {
                inner: stream,
                last: last.clone(),
                epoch,
                framing: Framing::new(state.clone()),
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .keep_alive(true)
                .serve_connection(
                    io,
                    Edge {
                        inner: TowerToHyperService::new(router),
                        conn: state.clone(),
                    },
                );
            tokio::pin!(conn);
            let mut closing = false;
            loop {
                let idle_for = Duration::from_millis(
                    (epoch.elapsed().as_millis() as u64)
                        .saturating_sub(last.load(Ordering::Relaxed)),
                );
                let wait = limits.idle_timeout.saturating_sub(idle_for);
                tokio::select! {
                    _ = conn.as_mut() => break,
                    // Nothing asked on it: dropped, no answer owed.
                    _ = state.evict.notified() => break,
                    _ = tokio::time::sleep(wait), if !closing => {
                        let idle = (epoch.elapsed().as_millis() as u64)
                            .saturating_sub(last.load(Ordering::Relaxed));
                        if Duration::from_millis(idle) >= limits.idle_timeout {
                            conn.as_mut().graceful_shutdown();
                            closing = true;
                        }
                    }
                    _ = stop.wait_for(|s| *s), if !closing => {
                        conn.as_mut().graceful_shutdown();
                        closing = true;
                    }
                }
            }
            registry.lock().remove(&id);
        });
    }
    drop(listener);
    while conns.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The flags `Framing` records for `wire`, fed in pieces of `step`.
    fn heads(wire: &[u8], step: usize) -> Vec<bool> {
        let state = Arc::new(ConnState::default());
        let mut f = Framing::new(state.clone());
        for part in wire.chunks(step) {
            f.feed(part);
        }
        let q = state.both_lengths.lock().unwrap();
        q.iter().copied().collect()
    }

    #[test]
    fn both_lengths_are_seen_in_either_order_and_any_case() {
        for step in [1, 3, 1000] {
            assert_eq!(
                heads(
                    b"POST / HTTP/1.1\r\nContent-Length: 3\r\ntransfer-encoding: chunked\r\n\r\n",
                    step
                ),
                [true]
            );
            assert_eq!(
                heads(b"\r\nPOST / HTTP/1.1\r\nTRANSFER-ENCODING: chunked\r\ncontent-length:0\r\n\r\n", step),
                [true]
            );
        }
    }

    #[test]
    fn bodies_are_skipped_not_read_as_headers() {
        // A fixed body and a chunked body that look like headers, then a
        // third, plain request: three heads, none with both lengths.
        let wire = b"POST / HTTP/1.1\r\nContent-Length: 49\r\n\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n\
POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1d;ext=1\r\nContent-Length: 1\r\n\r\nabcdefgh\r\n0\r\nX-Trailer: 1\r\n\r\n\
GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        for step in [1, 2, 7, 1000] {
            assert_eq!(heads(wire, step), [false, false, false], "step {step}");
        }
    }

    #[test]
    fn what_cannot_be_followed_adds_nothing() {
        assert_eq!(
            heads(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nContent-Length: 1\r\nTransfer-Encoding: x\r\n\r\n", 4),
            [false]
        );
    }
}
