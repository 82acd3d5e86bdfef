//! The HTTP server, with bounds a hostile client cannot stretch: request headers must arrive
//! within `http.header_timeout` (counted from the moment the connection is ready for a request,
//! so it is also how long a kept-alive connection may sit idle); an answer the client does not
//! read for `http.write_timeout` ends its connection; no more than `http.max_connections`
//! connections are open at once, of which one client network (an IPv4 address, an IPv6 /64) may
//! hold `http.max_connections_per_client`. The last `http.reserved_connections` of them are kept
//! for the health checks and the admin: a connection taken there answers `/healthz`, `/readyz`,
//! `/metrics`, the admin API and the admin pages, once, and nothing else. A flood of slow or idle
//! connections therefore costs everyone else nothing, and the daemon stays observable through it.
//! Request bodies are bounded in [`super::body`].

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use ipnet::IpNet;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::time::Sleep;
use tracing::{debug, warn};

use super::{ApiError, ErrorCode, HttpState};
use crate::config::HttpConfig;

/// The address a request's connection came from.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// The network a client is counted by, for connection limits and the guessing throttle: an IPv4
/// address alone, or an IPv6 address's /64 (one subscriber's share: whoever holds one address
/// of it holds 2^64 of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientNet(IpAddr);

impl ClientNet {
    pub fn of(ip: IpAddr) -> ClientNet {
        match ip {
            IpAddr::V4(_) => ClientNet(ip),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => ClientNet(IpAddr::V4(v4)),
                None => {
                    let bits = u128::from(v6) & !(u128::MAX >> 64);
                    ClientNet(IpAddr::V6(Ipv6Addr::from(bits)))
                }
            },
        }
    }
}

impl std::fmt::Display for ClientNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

/// Open connections: in all, per client network, and which networks hold a reserved one.
#[derive(Default)]
struct Connections {
    total: usize,
    by_client: HashMap<ClientNet, usize>,
    reserved: HashSet<ClientNet>,
}

/// A connection's place in the count, given back when it closes.
struct Slot {
    connections: Arc<Mutex<Connections>>,
    client: ClientNet,
    /// Taken from the reserve: it serves the health checks and the admin routes, once.
    reserved: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut connections = self.connections.lock().expect("connection count");
        connections.total -= 1;
        if self.reserved {
            connections.reserved.remove(&self.client);
        }
        if let Some(n) = connections.by_client.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                connections.by_client.remove(&self.client);
            }
        }
    }
}

/// Takes a slot for a new connection from `client`, or `None` when a bound is reached. Once only
/// the reserve is left, each client network may hold one connection of it.
fn admit(connections: &Arc<Mutex<Connections>>, client: ClientNet, limits: &HttpConfig) -> Option<Slot> {
    let mut open = connections.lock().expect("connection count");
    let mine = open.by_client.get(&client).copied().unwrap_or(0);
    if open.total >= limits.max_connections || mine >= limits.max_connections_per_client {
        return None;
    }
    let general = limits.max_connections.saturating_sub(limits.reserved_connections);
    let reserved = open.total >= general;
    if reserved && !open.reserved.insert(client) {
        return None;
    }
    open.total += 1;
    *open.by_client.entry(client).or_default() += 1;
    Some(Slot { connections: connections.clone(), client, reserved })
}

/// What a connection from the reserve may ask for: the health checks and the admin's routes
/// (the admin API but ingest, the admin pages), each still behind its own credentials.
fn served_from_reserve(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics")
        || path.starts_with("/ui")
        || (path.starts_with("/api/v1/") && !path.ends_with("/messages"))
}

/// The answer on a reserved connection to anything else.
fn busy() -> Response {
    let mut response =
        ApiError::new(ErrorCode::Busy, "too many connections are open: try again shortly").into_response();
    response.headers_mut().insert(axum::http::header::RETRY_AFTER, super::error::RETRY_AFTER_SECONDS.into());
    response
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets the requests in flight
/// finish (the caller bounds how long) and returns.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpConfig,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout.0).keep_alive(true);
    // A reserved connection answers one request, and gets no time to idle.
    let mut reserve = http.clone();
    reserve.keep_alive(false).header_read_timeout(limits.header_timeout.0.min(RESERVE_HEADER_TIMEOUT));
    let graceful = GracefulShutdown::new();
    let connections: Arc<Mutex<Connections>> = Default::default();
    let write_timeout = limits.write_timeout.0;
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before it was accepted:
                    // wait a moment rather than spin, and go on.
                    warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let client = ClientNet::of(peer.ip());
        let Some(slot) = admit(&connections, client, &limits) else {
            debug!(%client, "connection refused: too many open");
            metrics::counter!(crate::telemetry::metric::CONNECTIONS_REFUSED).increment(1);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let reserved = slot.reserved;
        let forwarding_is_news = !limits.trusted_proxies.iter().any(|net| net.contains(&peer.ip()));
        let router = router.clone();
        let service = tower::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
            let router = router.clone();
            async move {
                if reserved && !served_from_reserve(request.uri().path()) {
                    return Ok::<_, Infallible>(busy());
                }
                if forwarding_is_news && request.headers().contains_key("x-forwarded-for") {
                    untrusted_forwarding(peer.ip());
                }
                let mut request = request.map(Body::new);
                request.extensions_mut().insert(Peer(peer));
                tower::ServiceExt::oneshot(router, request).await
            }
        });
        let io = TokioIo::new(WriteDeadline::new(stream, write_timeout));
        let builder = if reserved { &reserve } else { &http };
        let connection = graceful.watch(builder.serve_connection(io, TowerToHyperService::new(service)));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                debug!(error = %e, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// How long a reserved connection may take to send its request's headers.
const RESERVE_HEADER_TIMEOUT: Duration = Duration::from_secs(2);

/// A connection whose writes must make progress: once a write finds the client's window full,
/// the client has `limit` to read enough of it for the next write to go through, or the
/// connection ends. A client that never reads its answer cannot hold the answer, and the task
/// writing it, for ever.
struct WriteDeadline<S> {
    inner: S,
    limit: Duration,
    /// Running while a write waits on the client.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<S> WriteDeadline<S> {
    fn new(inner: S, limit: Duration) -> Self {
        WriteDeadline { inner, limit, stalled: None }
    }

    /// The outcome of a write or flush: progress clears the deadline; waiting starts it, and
    /// waiting past it is an error that ends the connection.
    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        if polled.is_ready() {
            self.stalled = None;
            return polled;
        }
        let limit = self.limit;
        let stalled = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if stalled.as_mut().poll(cx).is_ready() {
            self.stalled = None;
            metrics::counter!(crate::telemetry::metric::WRITE_TIMEOUTS).increment(1);
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client did not read its answer within http.write_timeout",
            )));
        }
        Poll::Pending
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteDeadline<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.watch(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.watch(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.watch(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.watch(cx, polled)
    }
}

/// The client a request comes from: its connection's address, or, when that is a trusted
/// reverse proxy (`http.trusted_proxies`), the nearest address in `X-Forwarded-For` that is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client(pub IpAddr);

impl Client {
    pub fn of(parts: &Parts, trusted: &[IpNet]) -> Client {
        let peer = parts.extensions.get::<Peer>().map(|p| p.0.ip()).unwrap_or(IpAddr::from([0, 0, 0, 0]));
        if !trusted.iter().any(|net| net.contains(&peer)) {
            return Client(peer);
        }
        let forwarded = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|a| a.trim().parse::<IpAddr>().ok())
            .collect::<Vec<_>>();
        let nearest = forwarded.into_iter().rev().find(|ip| !trusted.iter().any(|net| net.contains(ip)));
        Client(nearest.unwrap_or(peer))
    }

    /// The network it is counted by.
    pub fn net(self) -> ClientNet {
        ClientNet::of(self.0)
    }
}

/// When the last warning about an untrusted `X-Forwarded-For` went out (Unix seconds).
static FORWARDING_WARNED: AtomicU64 = AtomicU64::new(0);

/// Says, at most once a minute, that a peer sends `X-Forwarded-For` but is not a trusted proxy:
/// behind a reverse proxy that is left out of `http.trusted_proxies`, every client counts as the
/// proxy, for the connection limits and the guessing throttle alike.
fn untrusted_forwarding(peer: IpAddr) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let last = FORWARDING_WARNED.load(Ordering::Relaxed);
    if now >= last + 60
        && FORWARDING_WARNED.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
    {
        warn!(
            %peer,
            "a request carries X-Forwarded-For from a peer that is not in http.trusted_proxies: the header is \
             ignored and the peer counted as the client (add the proxy's address to http.trusted_proxies if it is one)"
        );
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Client
where
    HttpState: FromRef<S>,
{
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = &HttpState::from_ref(state);
        Ok(Client::of(parts, &state.http.trusted_proxies))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(total: usize, per_client: usize, reserved: usize) -> HttpConfig {
        HttpConfig {
            max_connections: total,
            max_connections_per_client: per_client,
            reserved_connections: reserved,
            ..HttpConfig::default()
        }
    }

    fn net(s: &str) -> ClientNet {
        ClientNet::of(s.parse().unwrap())
    }

    #[test]
    fn one_client_cannot_take_every_connection() {
        let connections: Arc<Mutex<Connections>> = Default::default();
        let limits = limits(5, 2, 0);
        let (a, b) = (net("127.0.0.2"), net("127.0.0.1"));
        let held: Vec<Slot> = (0..2).map(|_| admit(&connections, a, &limits).unwrap()).collect();
        assert!(admit(&connections, a, &limits).is_none(), "a's share is taken");
        let others: Vec<Slot> = (0..2).map(|_| admit(&connections, b, &limits).unwrap()).collect();
        drop(held);
        assert!(admit(&connections, a, &limits).is_some(), "closed connections give their slots back");
        drop(others);
        assert_eq!(connections.lock().unwrap().total, 0);
        assert!(connections.lock().unwrap().by_client.is_empty());
    }

    #[test]
    fn an_ipv6_client_is_counted_by_its_64_network() {
        let connections: Arc<Mutex<Connections>> = Default::default();
        let limits = limits(100, 2, 0);
        let held: Vec<Slot> = ["2001:db8:0:1::1", "2001:db8:0:1::2"]
            .iter()
            .map(|a| admit(&connections, net(a), &limits).unwrap())
            .collect();
        assert!(
            admit(&connections, net("2001:db8:0:1:ffff::9"), &limits).is_none(),
            "the /64's share is taken"
        );
        assert!(
            admit(&connections, net("2001:db8:0:2::1"), &limits).is_some(),
            "the next /64 is another client"
        );
        assert_eq!(net("::ffff:192.0.2.1"), net("192.0.2.1"), "an IPv4-mapped address is its IPv4 address");
        assert_eq!(net("2001:db8:0:1:abcd::1").to_string(), "2001:db8:0:1::/64");
        drop(held);
    }

    #[test]
    fn the_last_connections_are_kept_one_per_client_for_health_checks_and_the_admin() {
        let connections: Arc<Mutex<Connections>> = Default::default();
        let limits = limits(6, 10, 2);
        let flood: Vec<Slot> =
            (0..4).map(|_| admit(&connections, net("127.0.0.2"), &limits).unwrap()).collect();
        assert!(flood.iter().all(|s| !s.reserved));
        let spare = admit(&connections, net("127.0.0.2"), &limits).expect("one of the reserve");
        assert!(spare.reserved);
        assert!(
            admit(&connections, net("127.0.0.2"), &limits).is_none(),
            "one reserved connection per client"
        );
        let health = admit(&connections, net("127.0.0.3"), &limits).expect("the health check's");
        assert!(health.reserved);
        assert!(admit(&connections, net("127.0.0.4"), &limits).is_none(), "every slot taken");
        drop(spare);
        assert!(admit(&connections, net("127.0.0.2"), &limits).is_some_and(|s| s.reserved));
        for path in ["/healthz", "/readyz", "/metrics", "/api/v1/workspaces", "/ui/workspaces/ws_1"] {
            assert!(served_from_reserve(path), "{path}");
        }
        for path in ["/api/v1/workspaces/ws_1/messages", "/hooks/zoho-desk/in_x", "/login", "/c/abc"] {
            assert!(!served_from_reserve(path), "{path}");
        }
        drop(flood);
        drop(health);
    }

    #[test]
    fn forwarded_addresses_count_only_behind_a_trusted_proxy() {
        let parts = |peer: &str, forwarded: &str| {
            let mut request =
                axum::http::Request::builder().header("x-forwarded-for", forwarded).body(()).unwrap();
            request.extensions_mut().insert(Peer(format!("{peer}:1234").parse().unwrap()));
            request.into_parts().0
        };
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            Client::of(&parts("203.0.113.9", "1.2.3.4"), &trusted),
            Client(ip("203.0.113.9")),
            "not a proxy"
        );
        assert_eq!(Client::of(&parts("10.0.0.5", "1.2.3.4, 5.6.7.8"), &trusted), Client(ip("5.6.7.8")));
        assert_eq!(Client::of(&parts("10.0.0.5", "1.2.3.4, 10.0.0.7"), &trusted), Client(ip("1.2.3.4")));
        assert_eq!(Client::of(&parts("10.0.0.5", "junk"), &trusted), Client(ip("10.0.0.5")));
    }
}
