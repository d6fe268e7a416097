//! footfall's dashboard listener: the operator's endpoints (`/metrics`,
//! `/healthz` with its reason), the dashboard's page at `/`, and a
//! Plausible-compatible Stats API over the report engine, all on one
//! listener off the public beacon port.
//!
//! The beacon listener faces the internet, and a site's numbers are its
//! owner's; so nothing there reveals a count. This listener is loopback by
//! default. On any other address the binary refuses to start without a
//! secret ([`Secret`]), and every request must then carry it.
//!
//! [`serve`] is the one entry point; the binary hands it a [`Dashboard`]:
//! where the files are, and (inside `serve`) the collector's metrics and
//! health through [`Operations`].
//!
//! - `access`: the secret (bearer or HTTP Basic) and the backoff of
//!   clients that keep failing.
//! - `assets`: the page and its assets, embedded.
//! - `query`: Plausible's Stats API v2 over `footfall_report`.

mod access;
mod assets;
mod query;
mod v1;

use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use footfall_report::Store;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;

pub use access::Secret;

/// Connections served at once; more wait in the kernel's backlog. Off
/// loopback anyone can connect before showing a secret: more must not
/// take file descriptors from the beacon listener.
const MAX_CONNECTIONS: usize = 32;

/// The largest API request body read.
const MAX_BODY: usize = 64 * 1024;

/// The page's and the API's Content-Security-Policy: nothing but this
/// origin's own script, styles, images and API.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// What `serve` (the collector) tells the operator: its counters and its
/// health. `footfall dashboard`, serving files alone, has none.
pub trait Operations: Send + Sync + 'static {
    /// Every counter, in Prometheus' text format.
    fn metrics(&self) -> String;
    /// Healthy, or why not.
    fn health(&self) -> Result<(), String>;
    /// The distinct visitors of `site` over the last five minutes (from
    /// memory only, never written).
    fn current_visitors(&self, site: &str) -> u64;
}

/// What the listener serves.
pub struct Dashboard {
    /// Where the files are.
    pub store: Store,
    /// The collector's counters and health, inside `serve`.
    pub operations: Option<Arc<dyn Operations>>,
    /// Rows not in any file yet, inside `serve`: every answer includes
    /// them, so a beacon is on the dashboard within a second.
    pub live: Option<Arc<dyn footfall_report::Live>>,
    /// Required of every request when set (off loopback).
    pub secret: Option<Secret>,
}

impl std::fmt::Debug for Dashboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dashboard")
            .field("store", &self.store)
            .field("operations", &self.operations.is_some())
            .field("live", &self.live.is_some())
            .field("secret", &self.secret)
            .finish()
    }
}

struct Shared {
    dashboard: Dashboard,
    backoff: access::Backoff,
}

type Resp = Response<Full<Bytes>>;

/// Serves the dashboard listener until `shutdown` completes, then lets
/// requests in flight finish (a few seconds at most).
pub async fn serve(
    listener: TcpListener,
    dashboard: Dashboard,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let shared = Arc::new(Shared {
        dashboard,
        backoff: access::Backoff::default(),
    });
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = Arc::clone(&slots).acquire_owned() => p.expect("the semaphore is never closed"),
            () = shutdown.as_mut() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "dashboard listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.as_mut() => break,
        };
        let shared = Arc::clone(&shared);
        let service = service_fn(move |req: Request<Incoming>| {
            let shared = Arc::clone(&shared);
            async move { Ok::<_, Infallible>(answer(&shared, peer.ip(), req).await) }
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
    let _ = tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await;
    Ok(())
}

async fn answer(shared: &Shared, client: IpAddr, req: Request<Incoming>) -> Resp {
    let mut resp = route(shared, client, req).await;
    let h = resp.headers_mut();
    h.insert("content-security-policy", HeaderValue::from_static(CSP));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    resp
}

async fn route(shared: &Shared, client: IpAddr, req: Request<Incoming>) -> Resp {
    if let Some(secret) = &shared.dashboard.secret {
        // A client that keeps failing waits longer for every answer, even
        // a right one, so guessing is slow from any one address.
        let delay = shared.backoff.delay(client, Instant::now());
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if !secret.admits(req.headers()) {
            shared.backoff.failed(client, Instant::now());
            let mut r = text(
                StatusCode::UNAUTHORIZED,
                "this listener needs its secret: the password of HTTP Basic, or \
                 Authorization: Bearer <secret>\n"
                    .into(),
            );
            let h = r.headers_mut();
            h.append(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"footfall\", charset=\"UTF-8\""),
            );
            h.append(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"footfall\""),
            );
            return r;
        }
        shared.backoff.succeeded(client);
    }
    let get = matches!(*req.method(), Method::GET | Method::HEAD);
    let path = req.uri().path().to_owned();
    let ops = shared.dashboard.operations.as_ref();
    match (get, path.as_str()) {
        (true, "/metrics") => match ops {
            Some(ops) => {
                let mut r = text(StatusCode::OK, ops.metrics());
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                r
            }
            None => text(
                StatusCode::NOT_FOUND,
                "no collector here: footfall dashboard serves files alone\n".into(),
            ),
        },
        (true, "/healthz") => match ops.map_or(Ok(()), |o| o.health()) {
            Ok(()) => text(StatusCode::OK, "ok\n".into()),
            Err(why) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("unhealthy: {why}\n"),
            ),
        },
        (true, "/api/v1/stats/realtime/visitors") => {
            let site = req
                .uri()
                .query()
                .unwrap_or("")
                .split('&')
                .find_map(|pair| pair.strip_prefix("site_id="))
                .map(|s| s.trim().to_ascii_lowercase())
                .filter(|s| !s.is_empty());
            match (site, ops) {
                (None, _) => api_error(400, "site_id is required: ?site_id=example.com"),
                (Some(site), Some(ops)) => {
                    api_json(StatusCode::OK, &json!(ops.current_visitors(&site)))
                }
                (Some(_), None) => api_error(
                    404,
                    "no collector here: current visitors are counted in serve's memory, \
                     not in the files footfall dashboard reads",
                ),
            }
        }
        (true, p) if v1::Endpoint::of(p).is_some() => {
            let endpoint = v1::Endpoint::of(p).expect("matched");
            let store = shared.dashboard.store.clone();
            let live = shared.dashboard.live.clone();
            let query = req.uri().query().unwrap_or("").to_owned();
            let today = chrono::Utc::now().date_naive();
            blocking(
                move || match v1::answer(endpoint, &store, live, &query, today) {
                    Ok(v) => api_json(StatusCode::OK, &v),
                    Err(e) => api_error(e.status, &e.error),
                },
            )
            .await
        }
        (true, p) if p.starts_with("/api/v1/sites/") => {
            let site = p["/api/v1/sites/".len()..].to_ascii_lowercase();
            let store = shared.dashboard.store.clone();
            let live = shared.dashboard.live.clone();
            blocking(move || {
                let mut known: Vec<String> = match footfall_report::sites(&store) {
                    Ok(spans) => spans.into_iter().map(|s| s.site).collect(),
                    Err(e) => return api_error(503, &format!("cannot read the data: {e}")),
                };
                known.extend(live.map(|l| l.sites()).unwrap_or_default());
                if known.contains(&site) {
                    // footfall's days are UTC days.
                    api_json(
                        StatusCode::OK,
                        &json!({"domain": site, "timezone": "Etc/UTC"}),
                    )
                } else {
                    api_error(404, &format!("no data for site {site:?}"))
                }
            })
            .await
        }
        (true, "/api/footfall/sites") => {
            let store = shared.dashboard.store.clone();
            let live = shared.dashboard.live.clone();
            blocking(move || sites(&store, live.as_deref())).await
        }
        (_, "/api/v2/query") if *req.method() == Method::POST => {
            let body = match read_body(req).await {
                Ok(body) => body,
                Err(r) => return r,
            };
            let store = shared.dashboard.store.clone();
            let live = shared.dashboard.live.clone();
            let today = chrono::Utc::now().date_naive();
            blocking(move || match query::v2(&store, live, &body, today) {
                Ok(v) => api_json(StatusCode::OK, &v),
                Err(e) => api_error(e.status, &e.error),
            })
            .await
        }
        (_, p) if p.starts_with("/api/") => api_error(
            404,
            &format!("{} {p} is not an endpoint of footfall's API", req.method()),
        ),
        (true, p) => match assets::get(p) {
            Some(file) => asset(file, req.headers()),
            None => text(StatusCode::NOT_FOUND, "not found\n".into()),
        },
        _ => text(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed\n".into(),
        ),
    }
}

/// Runs a query off the runtime's threads: it reads and merges files.
async fn blocking(f: impl FnOnce() -> Resp + Send + 'static) -> Resp {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        tracing::error!(error = %e, "a dashboard query panicked");
        api_error(500, "the query failed inside footfall; the log says more")
    })
}

async fn read_body(req: Request<Incoming>) -> Result<Bytes, Resp> {
    let body = Limited::new(req.into_body(), MAX_BODY);
    match tokio::time::timeout(Duration::from_secs(10), body.collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(_)) => Err(api_error(413, "the query is larger than 64 KiB")),
        Err(_) => Err(api_error(408, "the query's body took longer than 10 s")),
    }
}

/// The sites with data, in files or (live) in memory, with their first and
/// last day.
fn sites(store: &Store, live: Option<&dyn footfall_report::Live>) -> Resp {
    let mut spans = match footfall_report::sites(store) {
        Ok(spans) => spans,
        Err(e) => return api_error(503, &format!("cannot read the data: {e}")),
    };
    let today = chrono::Utc::now().date_naive();
    for site in live.map(|l| l.sites()).unwrap_or_default() {
        match spans.iter_mut().find(|s| s.site == site) {
            Some(span) => span.last = span.last.max(today),
            None => spans.push(footfall_report::SiteSpan {
                site,
                first: today,
                last: today,
            }),
        }
    }
    spans.sort_by(|a, b| a.site.cmp(&b.site));
    api_json(
        StatusCode::OK,
        &json!({
            "sites": spans
                .iter()
                .filter(|s| s.site != footfall_report::OVERFLOW)
                .map(|s| json!({"site": s.site, "first": s.first.to_string(), "last": s.last.to_string()}))
                .collect::<Vec<_>>()
        }),
    )
}

fn asset(file: assets::File, headers: &HeaderMap) -> Resp {
    let gzip = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(accepts_gzip));
    let body = if gzip { file.gzipped } else { file.bytes };
    let mut r = Response::new(Full::new(Bytes::from_static(body)));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(file.content_type),
    );
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(if file.immutable {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        }),
    );
    if gzip {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    r
}

/// Whether one item of `Accept-Encoding` accepts gzip (`gzip`, any case,
/// with no `q=0`). The same rule as the collector's for the tracker.
fn accepts_gzip(item: &str) -> bool {
    let mut parts = item.split(';').map(str::trim);
    parts.next().is_some_and(|e| e.eq_ignore_ascii_case("gzip"))
        && parts
            .filter_map(|p| p.strip_prefix("q="))
            .all(|q| q.parse::<f32>().is_ok_and(|q| q > 0.0))
}

fn api_json(status: StatusCode, value: &serde_json::Value) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(value.to_string())));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn api_error(status: u16, error: &str) -> Resp {
    api_json(
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        &json!({ "error": error }),
    )
}

/// Plain text, never cached.
fn text(status: StatusCode, body: String) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_only_when_accepted() {
        assert!(accepts_gzip("gzip") && accepts_gzip(" GZIP;q=0.5"));
        assert!(!accepts_gzip("gzip;q=0") && !accepts_gzip("br") && !accepts_gzip("x-gzip"));
    }

    /// What is embedded is what the page's sources build: a change under
    /// `dashboard/ui/` without `node scripts/build-dashboard.mjs` fails
    /// here.
    #[test]
    fn the_embedded_page_is_built_from_its_sources() {
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/build-dashboard.mjs");
        let out = std::process::Command::new("node")
            .arg(script)
            .arg("--check")
            .output()
            .expect("node (Node.js), which scripts/test.sh needs too");
        assert!(
            out.status.success(),
            "{}{}\ndashboard/ui/dist/ is stale: run `node scripts/build-dashboard.mjs` (its \
             packages first: `npm ci --prefix scripts/dashboard-build --ignore-scripts`) and \
             commit what it writes",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
