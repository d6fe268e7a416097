//! The operator's listener: `/metrics` (Prometheus text) and `/healthz`
//! with its reason, off the public beacon listener.
//!
//! The beacon listener faces the internet, and a site's counters are its
//! traffic, which belongs to its owner; so nothing there reveals a count.
//! This listener is loopback by default. On any other address the binary
//! refuses to start without a secret, and every request must then carry it
//! as `Authorization: Bearer <secret>` (what Prometheus' `authorization`
//! setting sends), compared in constant time and never logged.
//!
//! `serve_operator(listener, collector, secret, shutdown)` is the one entry
//! point. It is where the dashboard and the stats API will be served too.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;

use crate::server::{self, Collector, Resp, next_connection};

/// Connections the operator's listener serves at once; more wait in the
/// kernel's backlog.
const MAX_CONNECTIONS: usize = 32;

/// The secret a request to the operator's listener must carry. Its `Debug`
/// says only that there is one.
#[derive(Clone)]
pub struct Secret(Arc<[u8]>);

impl Secret {
    /// A secret of at least 16 bytes (surrounding whitespace, such as a
    /// file's last newline, is not part of it).
    pub fn new(text: &str) -> Result<Self, &'static str> {
        let text = text.trim();
        if text.len() < 16 {
            return Err("the dashboard password must be at least 16 characters");
        }
        Ok(Self(Arc::from(text.as_bytes())))
    }

    /// True when `headers` carry `Authorization: Bearer <this secret>`.
    fn admits(&self, headers: &HeaderMap) -> bool {
        // The scheme's name is case-insensitive (RFC 9110).
        let Some(given) = headers
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes())
            .filter(|v| v.len() > 7 && v[..7].eq_ignore_ascii_case(b"bearer "))
            .map(|v| &v[7..])
        else {
            return false;
        };
        // Constant time in the content; a length mismatch is refused too,
        // in time that depends on the lengths only.
        bool::from(given.trim_ascii().ct_eq(&self.0))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Serves the operator's endpoints until `shutdown` completes, then lets
/// requests in flight finish (a second at most: they are answered from
/// memory).
pub async fn serve_operator(
    listener: TcpListener,
    collector: Arc<Collector>,
    secret: Option<Secret>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    // Off loopback anyone can connect before showing a secret: a few
    // connections at once is all an operator needs, and more must not
    // take file descriptors from the beacon listener.
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut shutdown = std::pin::pin!(shutdown);
    while let Some((permit, stream, _)) =
        next_connection(&listener, &slots, shutdown.as_mut()).await
    {
        let c = Arc::clone(&collector);
        let secret = secret.clone();
        let service = service_fn(move |req: Request<Incoming>| {
            let resp = answer(&c, secret.as_ref(), &req);
            async move { Ok::<_, Infallible>(resp) }
        });
        let conn = http1::Builder::new()
            .header_read_timeout(Duration::from_secs(10))
            .timer(hyper_util::rt::TokioTimer::new())
            .serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
            drop(permit);
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(Duration::from_secs(1), graceful.shutdown()).await;
    Ok(())
}

fn answer(c: &Collector, secret: Option<&Secret>, req: &Request<Incoming>) -> Resp {
    if let Some(secret) = secret
        && !secret.admits(req.headers())
    {
        let mut r = text(
            StatusCode::UNAUTHORIZED,
            "the operator's listener needs its secret: Authorization: Bearer <secret>\n".into(),
        );
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"footfall\""),
        );
        return r;
    }
    match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/metrics") => {
            let mut r = text(StatusCode::OK, c.render_metrics());
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        (&Method::GET | &Method::HEAD, "/healthz") => match c.health() {
            Ok(()) => text(StatusCode::OK, "ok\n".into()),
            Err(why) => text(StatusCode::SERVICE_UNAVAILABLE, format!("unhealthy: {why}\n")),
        },
        (&Method::GET | &Method::HEAD, "/") => text(
            StatusCode::OK,
            "footfall's operator listener: /metrics (Prometheus text), /healthz (with the reason)\n"
                .into(),
        ),
        _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
    }
}

/// Plain text, never cached, never sniffed.
fn text(status: StatusCode, body: String) -> Resp {
    let mut r = server::text(status, "text/plain; charset=utf-8", body);
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(auth).unwrap());
        h
    }

    #[test]
    fn only_the_secret_is_admitted() {
        let s = Secret::new("correct horse battery staple\n").unwrap();
        assert!(s.admits(&with("Bearer correct horse battery staple")));
        assert!(!s.admits(&with("Bearer correct horse battery stapl")));
        assert!(!s.admits(&with("Bearer correct horse battery staple!")));
        assert!(!s.admits(&with("Basic correct horse battery staple")));
        assert!(s.admits(&with("bearer correct horse battery staple")));
        assert!(!s.admits(&with("Bearer")));
        assert!(!s.admits(&HeaderMap::new()));
        assert!(Secret::new("short").is_err());
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
    }
}
