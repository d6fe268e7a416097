//! The HTTP shell: hyper plumbing around the pure `decode` and `anonymise`.
//!
//! `serve(listener, collector, shutdown)` is the one entry point. Requests are
//! answered from memory: a counted beacon is handed to the [`VisitSink`]
//! before its 202 is sent, so the sink (the aggregator) holds every beacon the
//! clients were told was counted.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use atomic_waker::AtomicWaker;
use bytes::Bytes;
use footfall_schemas::{CustomEvent, Engagement, Visit, VisitSink};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulConnection;
use ipnet::IpNet;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::anonymise::{Client, Context, Record, SiteFilter, anonymise};
use crate::beacon::{Beacon, QUERY_SCRATCH, decode_json, decode_query};
use crate::error::{BeaconError, DropReason};
use crate::events::{EventProps, PropDrop};
use crate::geo::GeoDb;
use crate::metrics::Metrics;
use crate::notices::DropNotices;
use crate::salt::SaltStore;
use crate::scripts::{script, variant};
use crate::shields::Shields;
use crate::welcome::{Welcome, plain_host};

/// Global Privacy Control's header, named once rather than parsed from a
/// string on every beacon.
static SEC_GPC: header::HeaderName = header::HeaderName::from_static("sec-gpc");

/// Largest accepted beacon body. Plausible's tracker sends about 200 bytes.
pub const MAX_BODY: usize = 16 * 1024;

/// The collector's settings.
#[derive(Debug, Clone)]
pub struct CollectorConfig {
    /// Which sites are counted.
    pub sites: SiteFilter,
    /// Peers allowed to name the client in `X-Forwarded-For`. Empty: the
    /// header is ignored, since anyone could otherwise forge uniques.
    pub trusted_proxies: Vec<IpNet>,
    /// A connection that has not sent its next complete request head by
    /// then, counted from its opening or its last answer, is closed
    /// (slowloris, idle keep-alive).
    pub header_read_timeout: Duration,
    /// How long a beacon's body may take to arrive once its head has.
    pub body_read_timeout: Duration,
    /// How long a stop waits for in-flight requests before closing them.
    pub shutdown_grace: Duration,
    /// Connections served at once; further ones wait in the listen backlog
    /// until one closes, so a flood of idle connections cannot exhaust
    /// memory or file descriptors.
    pub max_connections: usize,
    /// Country lookups, when `--geoip-db` names a database.
    pub geo: Option<Arc<GeoDb>>,
    /// Drop beacons whose browser sent `Sec-GPC: 1` (`--honor-gpc`).
    pub honor_gpc: bool,
    /// Excluded addresses and pages, and the cap on views a minute.
    pub shields: Arc<Shields>,
    /// The custom-event property keys that may be stored (`--event-prop`).
    pub event_props: EventProps,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        Self {
            sites: SiteFilter::any(),
            trusted_proxies: Vec::new(),
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(10),
            max_connections: 10_000,
            geo: None,
            honor_gpc: false,
            shields: Arc::new(Shields::none()),
            event_props: EventProps::none(),
        }
    }
}

/// Everything a request handler needs, shared by all connections.
pub struct Collector {
    config: CollectorConfig,
    salts: SaltStore,
    sink: Arc<dyn VisitSink>,
    metrics: Metrics,
    /// Which refused sites the log has been told of this hour.
    notices: DropNotices,
    /// The last health reason logged (`None`: healthy), so the log says
    /// each change once, not each probe.
    health_said: Mutex<Option<String>>,
}

impl std::fmt::Debug for Collector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Collector")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Collector {
    /// A collector handing its visits to `sink`.
    pub fn new(config: CollectorConfig, salts: SaltStore, sink: Arc<dyn VisitSink>) -> Self {
        // Compile the User-Agent lists now, not on the first beacon.
        crate::agent::warm_up();
        Self {
            config,
            salts,
            sink,
            metrics: Metrics::default(),
            notices: DropNotices::default(),
            health_said: Mutex::new(None),
        }
    }

    /// Destroys the salts of finished days; see [`SaltStore::expire`].
    pub fn expire_salts(&self, now: i64) {
        self.salts.expire(now);
    }

    /// Fetches shared salts as they are due; see [`SaltStore::refresh`].
    pub async fn refresh_salts(&self, now: i64) -> Result<(), String> {
        self.salts.refresh(now).await
    }

    /// The salt's and the sink's health, with the reason when unhealthy; a
    /// change is logged once.
    pub fn health(&self) -> Result<(), String> {
        let clock = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let now = self.salts.health(clock).and_then(|()| self.sink.health());
        let mut said = lock(&self.health_said);
        let reason = now.as_ref().err();
        if said.as_ref() != reason {
            match reason {
                Some(why) => tracing::warn!(reason = %why, "unhealthy: /healthz answers 503"),
                None => tracing::info!("healthy again: /healthz answers 200"),
            }
            *said = reason.cloned();
        }
        now
    }

    /// Every counter, in Prometheus' text format.
    pub fn render_metrics(&self) -> String {
        let mut out = String::with_capacity(4096);
        self.metrics.render(&mut out);
        self.sink.render_metrics(&mut out);
        out
    }

    /// Turns the rate cap's minutes over; call every few seconds.
    pub fn tick_shields(&self, now: i64) {
        self.config.shields.tick(now);
    }

    /// Decodes, anonymises and records one beacon; the outcome decides the
    /// answer. This is the whole request path minus HTTP.
    fn ingest(
        &self,
        beacon: Result<Beacon<'_>, BeaconError>,
        peer: IpAddr,
        headers: &HeaderMap,
    ) -> Result<Option<DropReason>, BeaconError> {
        let beacon = beacon?;
        // One walk over a handful of headers costs less than two lookups,
        // each hashing its name. The first of each counts, as with `get`.
        let (mut user_agent, mut gpc) = (None, None);
        for (name, value) in headers {
            if *name == header::USER_AGENT {
                user_agent.get_or_insert(value);
            } else if *name == SEC_GPC {
                gpc.get_or_insert(value);
            }
        }
        let client = Client {
            ip: self.client_ip(peer, headers),
            user_agent: user_agent.map_or(&[][..], |v| v.as_bytes()),
            gpc: gpc.is_some_and(|v| v.as_bytes().trim_ascii() == b"1"),
        };
        // Unix seconds straight from the clock: a calendar date is not
        // needed here, and making one costs more than reading the clock.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let Some(salt) = self.salts.key_for(now) else {
            // Salts are shared and today's is not here: a salt of our own
            // would count these visitors apart from the other collectors'.
            return Ok(Some(DropReason::NoSalt));
        };
        let cx = Context {
            salt,
            now,
            sites: &self.config.sites,
            geo: self.config.geo.as_deref(),
            honor_gpc: self.config.honor_gpc,
            shields: &self.config.shields,
            event_props: &self.config.event_props,
        };
        let mut sink = Counting {
            sink: &*self.sink,
            views: 0,
            engagements: 0,
            events: 0,
            props_dropped: [0; PropDrop::ALL.len()],
        };
        let dropped = anonymise(&beacon, client, &cx, &mut sink, |site, reason| {
            self.notices.tell(site, reason, now)
        })?;
        if sink.views > 0 {
            self.metrics.counted(sink.views);
        }
        if sink.engagements > 0 {
            self.metrics.engaged(sink.engagements);
        }
        if sink.events > 0 {
            self.metrics.events(sink.events, &sink.props_dropped);
        }
        Ok(dropped)
    }

    /// The client address. The socket peer, unless it is a trusted proxy:
    /// then `X-Forwarded-For` is read from the right (the hop nearest to us)
    /// past every trusted proxy, and the first address that is not one is
    /// the client. Entries left of it were written by the client itself and
    /// could be forged, so they are never used: with a proxy that appends
    /// (nginx's `$proxy_add_x_forwarded_for`) the client's own header stays
    /// in front of the address the proxy saw.
    fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let trusted = |ip: &IpAddr| self.config.trusted_proxies.iter().any(|n| n.contains(ip));
        let mut client = peer.to_canonical();
        if !trusted(&client) {
            return client;
        }
        // Several header lines are one list, in order.
        let hops = headers
            .get_all("x-forwarded-for")
            .iter()
            .rev()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.rsplit(','));
        for hop in hops {
            match parse_forwarded(hop.trim()) {
                Some(ip) => {
                    client = ip.to_canonical();
                    if !trusted(&client) {
                        return client;
                    }
                }
                // An unparseable hop ends what can be trusted.
                None => break,
            }
        }
        client
    }
}

/// The sink, counting the views, engagement reports and custom events it
/// took, and the properties of those events that were not kept.
struct Counting<'a> {
    sink: &'a dyn VisitSink,
    views: usize,
    engagements: u64,
    events: u64,
    /// By [`PropDrop::ALL`]'s order.
    props_dropped: [u64; PropDrop::ALL.len()],
}

impl Record for &mut Counting<'_> {
    fn visit(&mut self, visit: &Visit<'_>) {
        self.sink.record(visit);
        self.views += 1;
    }

    fn engage(&mut self, engagement: &Engagement<'_>) -> bool {
        let counted = self.sink.engage(engagement);
        self.engagements += u64::from(counted);
        counted
    }

    fn event(&mut self, event: &CustomEvent<'_>) {
        self.sink.event(event);
        self.events += 1;
    }

    fn prop_dropped(&mut self, reason: PropDrop) {
        if let Some(i) = PropDrop::ALL.iter().position(|r| *r == reason) {
            self.props_dropped[i] += 1;
        }
    }
}

/// An address as proxies write it: `203.0.113.9`, `2001:db8::1`, or with a
/// port, `203.0.113.9:5123` / `[2001:db8::1]:5123`.
fn parse_forwarded(s: &str) -> Option<IpAddr> {
    s.parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| s.strip_prefix('[')?.strip_suffix(']')?.parse().ok())
}

/// Accepts connections until `shutdown` completes, then stops accepting,
/// lets in-flight requests finish (up to the configured grace), aborts what
/// is left, and returns only when no connection task is running.
///
/// That last part matters for "every 202 is in the files": once this
/// returns, no request can still reach the sink, so the caller's final flush
/// sees every visit that was answered 202.
pub async fn serve(
    listener: TcpListener,
    collector: Arc<Collector>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let mut connections = JoinSet::new();
    // No hyper timer: request heads are bounded by the one sweeper below,
    // not by a timer entry per request.
    let mut http = http1::Builder::new();
    http.keep_alive(true);
    let head_timeout = collector.config.header_read_timeout;
    LazyLock::force(&EPOCH);
    let watches = Arc::new(Watches::default());
    let sweeper = tokio::spawn(sweep(Arc::clone(&watches), head_timeout));
    let slots = Arc::new(Semaphore::new(collector.config.max_connections.max(1)));
    tokio::pin!(shutdown);
    while let Some((slot, stream, peer)) =
        next_connection(&listener, &slots, shutdown.as_mut()).await
    {
        // Reap finished connections so the set holds only live ones.
        while connections.try_join_next().is_some() {}
        let _ = stream.set_nodelay(true);
        let c = Arc::clone(&collector);
        let watch = watches.open(head_timeout);
        let service_watch = Arc::clone(&watch.watch);
        let service = service_fn(move |req| {
            service_watch.serving();
            handle(
                Arc::clone(&c),
                Arc::clone(&service_watch),
                head_timeout,
                peer,
                req,
            )
        });
        let conn = http.serve_connection(TokioIo::new(stream), service);
        connections.spawn(async move {
            let _slot = slot;
            // Client-side failures (resets, timeouts) are routine on the
            // internet and say nothing about the server: not logged above
            // debug, and never with the peer's address.
            match watched(conn, &watch.watch).await {
                Some(Err(e)) => tracing::debug!(error = %e, "connection ended with an error"),
                None => tracing::debug!("no request head within the header timeout; closed"),
                Some(Ok(())) => {}
            }
        });
    }
    drop(listener);
    // Idle connections close now, busy ones after their answer.
    watches.drain();
    let grace = collector.config.shutdown_grace;
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, drained).await.is_err() {
        tracing::warn!(
            grace_secs = grace.as_secs(),
            open = connections.len(),
            "connections still busy after the grace period; closing them unanswered"
        );
    }
    // A request cut here has not been answered 202: `record` runs before
    // the answer and between awaits, so it either finished or never began.
    connections.abort_all();
    while connections.join_next().await.is_some() {}
    sweeper.abort();
    Ok(())
}

/// What the server knows of one open connection, shared by the connection's
/// task, its service (which moves the deadline) and the [`sweep`]er.
///
/// hyper's `header_read_timeout` takes a timer entry for every request, and
/// hyper-util's graceful shutdown and a timer of our own a connection were
/// each polled on every wake-up: together about 1,600 instructions a
/// keep-alive request (`benches/instructions.sh`). Here a request costs two
/// stores and a waker check, and one task sweeps every connection once a
/// quarter of the timeout. It bounds the same things: a slow head, a
/// connection idle between requests, and, since the clock starts when the
/// answer is made, a client that does not read its answer.
struct Watch {
    /// When the next request head is due, as nanoseconds since [`EPOCH`];
    /// [`SERVING`] while a request is being answered (its body has a
    /// timeout of its own).
    due: AtomicU64,
    /// [`CHECK`] and [`DRAIN`].
    flags: AtomicU8,
    /// The connection's task, for the sweeper to wake.
    waker: AtomicWaker,
}

const SERVING: u64 = u64::MAX;
/// The sweeper saw the deadline pass: the connection's task checks it.
const CHECK: u8 = 1;
/// The server is stopping: the connection closes once idle.
const DRAIN: u8 = 2;

/// The zero of [`Watch`]'s clock.
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// A free slot, then the next connection on it, or `None` once `shutdown`
/// has completed. Both listeners accept this way: a connection past the
/// slots waits in the kernel's backlog, and a failed accept (out of file
/// descriptors and the like) is logged and retried after a pause instead
/// of spinning, while the connections already open are served.
pub(crate) async fn next_connection<F: Future<Output = ()>>(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
    mut shutdown: std::pin::Pin<&mut F>,
) -> Option<(
    tokio::sync::OwnedSemaphorePermit,
    tokio::net::TcpStream,
    SocketAddr,
)> {
    loop {
        let slot = tokio::select! {
            slot = Arc::clone(slots).acquire_owned() => slot.expect("the semaphore is never closed"),
            () = shutdown.as_mut() => return None,
        };
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => return Some((slot, stream, peer)),
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = shutdown.as_mut() => return None,
        }
    }
}

/// Never [`SERVING`]: 584 years after start are read as the year before.
fn nanos_since_epoch(at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(*EPOCH).as_nanos())
        .map_or(SERVING - 1, |n| n.min(SERVING - 1))
}

impl Watch {
    fn serving(&self) {
        self.due.store(SERVING, Ordering::Relaxed);
    }

    /// The next head is due `timeout` from now.
    fn waiting(&self, timeout: Duration) {
        let due = nanos_since_epoch(Instant::now() + timeout);
        self.due.store(due, Ordering::Relaxed);
    }

    /// The deadline has passed by `now` (nanoseconds since [`EPOCH`]).
    fn late_at(&self, now: u64) -> bool {
        let due = self.due.load(Ordering::Relaxed);
        due != SERVING && now >= due
    }

    fn tell(&self, flag: u8) {
        self.flags.fetch_or(flag, Ordering::Relaxed);
        self.waker.wake();
    }
}

/// The open connections' [`Watch`]es, by a number of their own.
#[derive(Default)]
struct Watches {
    open: Mutex<HashMap<u64, Arc<Watch>>>,
    next: AtomicU64,
}

/// A connection's place in [`Watches`], given up when it is dropped.
struct Open {
    watch: Arc<Watch>,
    watches: Arc<Watches>,
    id: u64,
}

impl Drop for Open {
    fn drop(&mut self) {
        lock(&self.watches.open).remove(&self.id);
    }
}

/// The map is consistent after any panic (one insert or remove).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Watches {
    /// A new connection, whose first head is due `timeout` from now.
    fn open(self: &Arc<Self>, timeout: Duration) -> Open {
        let watch = Arc::new(Watch {
            due: AtomicU64::new(SERVING),
            flags: AtomicU8::new(0),
            waker: AtomicWaker::new(),
        });
        watch.waiting(timeout);
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        lock(&self.open).insert(id, Arc::clone(&watch));
        Open {
            watch,
            watches: Arc::clone(self),
            id,
        }
    }

    /// Tells every open connection to close once idle. The accept loop has
    /// ended by then, so no connection opens after.
    fn drain(&self) {
        for watch in lock(&self.open).values() {
            watch.tell(DRAIN);
        }
    }
}

/// Wakes every connection whose next head is late, once a quarter of the
/// timeout: an idle connection is closed between one timeout and a quarter
/// more after its last answer.
async fn sweep(watches: Arc<Watches>, timeout: Duration) {
    let mut tick = tokio::time::interval(
        (timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1)),
    );
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = nanos_since_epoch(Instant::now());
        for watch in lock(&watches.open).values() {
            if watch.late_at(now) {
                watch.tell(CHECK);
            }
        }
    }
}

/// Runs a connection until it ends, or until its next request head is late
/// (`None`: the connection is dropped, which closes it). A request being
/// answered is never cut: the deadline is checked here, on the connection's
/// own task, only when the connection is waiting, and `record` and the 202
/// happen between its awaits.
async fn watched<C: GracefulConnection>(conn: C, watch: &Watch) -> Option<C::Output> {
    tokio::pin!(conn);
    let mut draining = false;
    std::future::poll_fn(|cx| {
        watch.waker.register(cx.waker());
        let flags = watch.flags.load(Ordering::Relaxed);
        if flags & DRAIN != 0 && !draining {
            draining = true;
            conn.as_mut().graceful_shutdown();
        }
        if let Poll::Ready(ended) = conn.as_mut().poll(cx) {
            return Poll::Ready(Some(ended));
        }
        if flags & CHECK != 0 {
            watch.flags.fetch_and(!CHECK, Ordering::Relaxed);
            if watch.late_at(nanos_since_epoch(Instant::now())) {
                return Poll::Ready(None);
            }
        }
        Poll::Pending
    })
    .await
}

pub(crate) type Resp = Response<Full<Bytes>>;

/// Answers one request; then the connection's next head is due within
/// `head_timeout`. (One future, not this one inside another that moves the
/// deadline: every level of nesting copies the request's state again.)
async fn handle(
    c: Arc<Collector>,
    watch: Arc<Watch>,
    head_timeout: Duration,
    peer: SocketAddr,
    mut req: Request<Incoming>,
) -> Result<Resp, Infallible> {
    let mut resp = match (req.method(), req.uri().path()) {
        (&Method::POST, "/api/event") => {
            let body = read_body(req.body_mut(), c.config.body_read_timeout).await;
            let outcome =
                body.and_then(|bytes| c.ingest(decode_json(&bytes), peer.ip(), req.headers()));
            answer(&c, outcome)
        }
        // GET only: a HEAD (link checkers, prefetchers) must not count.
        (&Method::GET, "/api/event") => pixel(&c, peer, &req),
        (&Method::OPTIONS, "/api/event") => preflight(),
        (_, "/api/event") => {
            let mut r = json_error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
            r.headers_mut().insert(
                header::ALLOW,
                HeaderValue::from_static("POST, GET, OPTIONS"),
            );
            cors(r)
        }
        (&Method::GET | &Method::HEAD, "/") => welcome(&c, req.headers()),
        (&Method::GET | &Method::HEAD, "/script.js") => script(req.headers()),
        (&Method::GET | &Method::HEAD, p) if p.starts_with("/js/") => variant(p, req.headers()),
        // A load balancer's probe: up or not, and no reason, which may
        // name internal paths (the operator's listener has it).
        (&Method::GET | &Method::HEAD, "/healthz") => match c.health() {
            Ok(()) => text(StatusCode::OK, "text/plain; charset=utf-8", "ok\n".into()),
            Err(_) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain; charset=utf-8",
                "unavailable\n".into(),
            ),
        },
        _ => json_error(StatusCode::NOT_FOUND, "not found"),
    };
    // No answer here is to be read as anything but its declared type.
    resp.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    watch.waiting(head_timeout);
    Ok(resp)
}

/// A beacon's body, read in full, at most [`MAX_BODY`] bytes. It borrows
/// the body rather than taking the request, so the request's head is not
/// copied into this future.
async fn read_body(body: &mut Incoming, timeout: Duration) -> Result<Bytes, BeaconError> {
    // Refuse a declared oversize body before reading a byte of it.
    if body.size_hint().lower() > MAX_BODY as u64 {
        return Err(BeaconError::BodyTooLarge);
    }
    // A beacon's body nearly always arrives with its head, and then the
    // first poll reads it: only a body still on its way needs a timer.
    let mut read = std::pin::pin!(Limited::new(body, MAX_BODY).collect());
    let first = std::future::poll_fn(|cx| Poll::Ready(read.as_mut().poll(cx))).await;
    let read = match first {
        Poll::Ready(read) => Ok(read),
        // The header timeout does not cover the body: a client trickling
        // a declared 16 KiB body would otherwise hold its connection
        // forever.
        Poll::Pending => tokio::time::timeout(timeout, read).await,
    };
    match read {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(BeaconError::BodyTooLarge),
        Ok(Err(_)) => Err(BeaconError::BodyRead),
        Err(_) => Err(BeaconError::BodyTimeout),
    }
}

fn pixel(c: &Collector, peer: SocketAddr, req: &Request<Incoming>) -> Resp {
    let query = req.uri().query().unwrap_or("");
    // Room to decode the query's escaped values into, on the stack: a
    // pixel's query is a few hundred bytes, and a longer one decodes what
    // does not fit into strings of its own.
    let mut scratch = [0; QUERY_SCRATCH];
    let outcome = c.ingest(decode_query(query, &mut scratch), peer.ip(), req.headers());
    let mut resp = answer(c, outcome);
    if resp.status() == StatusCode::ACCEPTED {
        *resp.body_mut() = Full::new(Bytes::from_static(PIXEL_GIF));
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/gif"));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

/// Maps an ingest outcome to the answer and counts it.
fn answer(c: &Collector, outcome: Result<Option<DropReason>, BeaconError>) -> Resp {
    let resp = match outcome {
        Ok(None) => empty(StatusCode::ACCEPTED),
        Ok(Some(reason)) => {
            // The reason only: nothing about who sent it or which page.
            tracing::debug!(reason = reason.as_str(), "beacon not counted for a site");
            c.metrics.dropped(reason);
            let mut r = empty(StatusCode::ACCEPTED);
            let h = r.headers_mut();
            h.insert(
                "x-footfall-dropped",
                HeaderValue::from_static(reason.as_str()),
            );
            // Lets a page's script read why (only a response that carries
            // the header needs to say so).
            h.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static("X-Footfall-Dropped"),
            );
            r
        }
        Err(e) => {
            tracing::debug!(reason = e.label(), "beacon refused");
            c.metrics.rejected(e);
            let mut r = json_error(e.status(), &e.to_string());
            if matches!(e, BeaconError::BodyTooLarge | BeaconError::BodyTimeout) {
                // The rest of the body is not read; the connection cannot be
                // reused for another request.
                r.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            r
        }
    };
    cors(resp)
}

/// The page at `/`: footfall is running, the tag for this address, and
/// (with no allow-list) a tracker that counts this visit under `localhost`.
fn welcome(c: &Collector, headers: &HeaderMap) -> Resp {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(plain_host);
    let page = crate::welcome::render(Welcome {
        host,
        counts_own_visit: c.config.sites.accepts_any(),
    });
    let mut r = text(StatusCode::OK, "text/html; charset=utf-8", page);
    let h = r.headers_mut();
    // Scripts from this origin only (the tracker), beacons to it, and the
    // page's one inline style sheet; nothing else loads.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; connect-src 'self'; \
             style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; \
             frame-ancestors 'none'",
        ),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The smallest transparent 1×1 GIF.
const PIXEL_GIF: &[u8] = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff\
\x21\xf9\x04\x01\x00\x00\x00\x00\x2c\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02\x44\x01\x00\x3b";

pub(crate) fn empty(status: StatusCode) -> Resp {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = status;
    r
}

pub(crate) fn text(status: StatusCode, content_type: &'static str, body: String) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// `{"error": "..."}`. Messages are fixed strings without quotes or
/// backslashes, so no escaping is needed, and never echo the request.
fn json_error(status: StatusCode, message: &str) -> Resp {
    text(
        status,
        "application/json",
        format!("{{\"error\":\"{message}\"}}"),
    )
}

/// Any page may send beacons: they carry no credentials and set no cookies.
/// A simple request's answer needs only this header; every header costs on
/// every beacon, in encoding and on the wire.
fn cors(mut r: Resp) -> Resp {
    r.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    r
}

/// The answer to a CORS preflight (`OPTIONS`), cached by browsers a day.
fn preflight() -> Resp {
    let mut r = cors(empty(StatusCode::NO_CONTENT));
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, GET, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Content-Type"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("86400"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NullSink;
    impl VisitSink for NullSink {
        fn record(&self, _: &footfall_schemas::Visit<'_>) {}
    }

    #[test]
    fn the_client_is_the_nearest_untrusted_hop() {
        let config = CollectorConfig {
            trusted_proxies: vec![
                "10.0.0.0/8".parse().unwrap(),
                "127.0.0.1/32".parse().unwrap(),
            ],
            ..CollectorConfig::default()
        };
        let c = Collector::new(config, SaltStore::in_memory(), Arc::new(NullSink));
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let with = |lines: &[&str]| {
            let mut h = HeaderMap::new();
            for l in lines {
                h.append("x-forwarded-for", HeaderValue::from_str(l).unwrap());
            }
            h
        };
        // (peer, X-Forwarded-For lines, client)
        let cases: &[(&str, &[&str], &str)] = &[
            ("203.0.113.7", &["198.51.100.1"], "203.0.113.7"),
            ("127.0.0.1", &[], "127.0.0.1"),
            ("127.0.0.1", &["198.51.100.1"], "198.51.100.1"),
            ("127.0.0.1", &["6.6.6.6, 198.51.100.1"], "198.51.100.1"),
            (
                "127.0.0.1",
                &["6.6.6.6, 198.51.100.1, 10.1.2.3"],
                "198.51.100.1",
            ),
            ("127.0.0.1", &["6.6.6.6", "198.51.100.1"], "198.51.100.1"),
            ("127.0.0.1", &["198.51.100.1:4711"], "198.51.100.1"),
            ("127.0.0.1", &["garbage, 10.1.2.3"], "10.1.2.3"),
            ("::ffff:127.0.0.1", &["198.51.100.1"], "198.51.100.1"),
        ];
        for (peer, lines, want) in cases {
            assert_eq!(
                c.client_ip(ip(peer), &with(lines)),
                ip(want),
                "{peer} {lines:?}"
            );
        }
    }

    #[test]
    fn forwarded_addresses_in_every_form_proxies_write() {
        for (raw, want) in [
            ("203.0.113.9", Some("203.0.113.9")),
            ("203.0.113.9:5123", Some("203.0.113.9")),
            ("2001:db8::1", Some("2001:db8::1")),
            ("[2001:db8::1]", Some("2001:db8::1")),
            ("[2001:db8::1]:5123", Some("2001:db8::1")),
            ("unknown", None),
            ("", None),
        ] {
            let got = parse_forwarded(raw).map(|ip| ip.to_string());
            assert_eq!(got.as_deref(), want, "{raw}");
        }
    }

    #[test]
    fn the_pixel_is_a_gif() {
        assert!(PIXEL_GIF.starts_with(b"GIF89a"));
        assert_eq!(PIXEL_GIF.len(), 43);
        assert_eq!(PIXEL_GIF.last(), Some(&0x3b));
    }

    #[test]
    fn every_error_message_is_valid_json() {
        for e in BeaconError::ALL {
            let r = json_error(e.status(), &e.to_string());
            let body = body_bytes(r);
            let v: serde_json::Value = serde_json::from_slice(&body).expect("valid JSON");
            assert_eq!(v["error"], e.to_string());
        }
    }

    fn body_bytes(r: Resp) -> Bytes {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(r.into_body().collect()).unwrap().to_bytes()
    }
}
