//! The accept loop: HTTP/1.1 only (Logplex speaks HTTP/1.1; no h2c, so no
//! stream multiplexing for a stranger to exploit), with a connection cap
//! below the descriptor limit, a header-read timeout (slowloris), an idle
//! timeout for keep-alive connections, and accept errors logged (rate
//! limited) instead of spinning. Bodies get their own limit and deadline in
//! the handlers, after the credentials were checked.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use crate::act::report::Counters;
use crate::telemetry::Throttle;

/// The limits of the HTTP edge (defaults in SECURITY.md).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Open connections at most; more are closed at once.
    pub max_connections: usize,
    /// A request's headers must arrive within this.
    pub header_timeout: Duration,
    /// A keep-alive connection with no traffic for this long is closed.
    pub idle_timeout: Duration,
    /// A request body must arrive within this.
    pub body_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            body_timeout: Duration::from_secs(30),
        }
    }
}

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

/// A stream that remembers when it last moved a byte.
struct Tracked<S> {
    inner: S,
    last: Arc<AtomicU64>,
    epoch: Instant,
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
        let Ok(permit) = slots.clone().try_acquire_owned() else {
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
        conns.spawn(async move {
            let _permit = permit;
            let last = Arc::new(AtomicU64::new(0));
            let epoch = Instant::now();
            let io = TokioIo::new(Tracked {
                inner: stream,
                last: last.clone(),
                epoch,
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .keep_alive(true)
                .serve_connection(io, TowerToHyperService::new(router));
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
        });
    }
    drop(listener);
    while conns.join_next().await.is_some() {}
}
