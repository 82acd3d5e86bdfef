//! The HTTP server, with bounds a hostile client cannot stretch: request headers must arrive
//! within `http.header_timeout` (counted from the moment the connection is ready for a request,
//! so it is also how long a kept-alive connection may sit idle), a request body within
//! `http.body_timeout`, and no more than `http.max_connections` connections at once, of which one
//! client address may hold `http.max_connections_per_client`. A flood of slow or idle
//! connections from one address therefore costs everyone else nothing.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{FromRef, FromRequestParts, Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use ipnet::IpNet;
use tokio::net::TcpListener;
use tracing::{debug, warn};

use super::{ApiError, HttpState};
use crate::config::HttpConfig;

/// The largest body the server buffers before a route's own limit applies (axum's default).
const BUFFER_LIMIT: usize = 2 * 1024 * 1024;

/// The address a request's connection came from.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// Open connections, in all and per client address.
#[derive(Default)]
struct Connections {
    total: usize,
    by_client: HashMap<IpAddr, usize>,
}

/// A connection's place in the count, given back when it closes.
struct Slot {
    connections: Arc<Mutex<Connections>>,
    client: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut connections = self.connections.lock().expect("connection count");
        connections.total -= 1;
        if let Some(n) = connections.by_client.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                connections.by_client.remove(&self.client);
            }
        }
    }
}

/// Takes a slot for a new connection from `client`, or `None` when a bound is reached.
fn admit(connections: &Arc<Mutex<Connections>>, client: IpAddr, limits: &HttpConfig) -> Option<Slot> {
    let mut open = connections.lock().expect("connection count");
    let mine = open.by_client.get(&client).copied().unwrap_or(0);
    if open.total >= limits.max_connections || mine >= limits.max_connections_per_client {
        return None;
    }
    open.total += 1;
    *open.by_client.entry(client).or_default() += 1;
    Some(Slot { connections: connections.clone(), client })
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
    let graceful = GracefulShutdown::new();
    let connections: Arc<Mutex<Connections>> = Default::default();
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
        let Some(slot) = admit(&connections, peer.ip(), &limits) else {
            debug!(client = %peer.ip(), "connection refused: too many open");
            metrics::counter!(crate::telemetry::metric::CONNECTIONS_REFUSED).increment(1);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service = tower::ServiceExt::map_request(
            router,
            move |mut request: hyper::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(Peer(peer));
                request.map(Body::new)
            },
        );
        let connection = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
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

/// Reads a request's whole body before the route sees it, within `http.body_timeout`: a body
/// that trickles in is answered 408 instead of holding a connection and a task for ever.
pub async fn buffer_body(State(timeout): State<Duration>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, BUFFER_LIMIT)).await {
        Ok(Ok(bytes)) => next.run(Request::from_parts(parts, Body::from(bytes))).await,
        Ok(Err(e))
            if std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>()) =>
        {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("body: larger than {BUFFER_LIMIT} bytes"),
            )
            .into_response()
        }
        Ok(Err(e)) => {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", format!("body: {e}")).into_response()
        }
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            format!("body: not received within {} s", timeout.as_secs()),
        )
        .into_response(),
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

    fn limits(total: usize, per_client: usize) -> HttpConfig {
        HttpConfig { max_connections: total, max_connections_per_client: per_client, ..HttpConfig::default() }
    }

    #[test]
    fn one_client_cannot_take_every_connection() {
        let connections: Arc<Mutex<Connections>> = Default::default();
        let limits = limits(5, 2);
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.2".parse().unwrap(), "127.0.0.1".parse().unwrap());
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
