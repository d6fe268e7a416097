//! What the collector promises an operator: nothing answered 202 is lost on
//! a clean stop, a crash loses at most one checkpoint interval and counts no
//! one twice, memory stays bounded under a flood, and slow clients cannot
//! hold it. Loopback only, bounded in count and time.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::support::{Conn, Server, read_pages, union_estimate, utc_today, wait_if_near_midnight};

fn beacon(page: &str, visitor: usize) -> Vec<u8> {
    let body = format!(r#"{{"n":"pageview","u":"https://example.com{page}","d":"example.com"}}"#);
    format!(
        "POST /api/event HTTP/1.1\r\nHost: x\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) Firefox/{visitor}\r\n\
         X-Forwarded-For: 100.66.{}.{}\r\nContent-Length: {}\r\n\r\n{body}",
        visitor / 256 % 256,
        visitor % 256,
        body.len()
    )
    .into_bytes()
}

/// The same page view as a `<noscript>` pixel sends it.
fn pixel(page: &str, visitor: usize) -> Vec<u8> {
    format!(
        "GET /api/event?d=example.com&u=https%3A%2F%2Fexample.com{page} HTTP/1.1\r\n\
         Host: x\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) Firefox/{visitor}\r\n\r\n"
    )
    .into_bytes()
}

/// A request for a path the server does not have: answered 404.
const NOTHING: &[u8] = b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n";

#[test]
fn sigterm_under_load_loses_no_counted_beacon() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Server::start(tmp.path(), &["--trusted-proxy", "127.0.0.1/32"]);
    let addr = server.addr;
    let counted = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|t| {
            let (counted, stop) = (Arc::clone(&counted), Arc::clone(&stop));
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(30);
                let mut i = 0usize;
                'connections: while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let Ok(stream) = TcpStream::connect(addr) else {
                        break;
                    };
                    stream
                        .set_read_timeout(Some(Duration::from_secs(20)))
                        .unwrap();
                    let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
                    let mut stream = stream;
                    loop {
                        i += 1;
                        if stream
                            .write_all(&beacon(&format!("/load/{}", i % 50), t * 1000 + i % 700))
                            .is_err()
                        {
                            continue 'connections;
                        }
                        // A reply counts only if it arrived whole.
                        match read_status(&mut reader) {
                            Some(202) => {
                                counted.fetch_add(1, Ordering::Relaxed);
                            }
                            Some(other) => panic!("status {other}"),
                            None => continue 'connections,
                        }
                        if stop.load(Ordering::Relaxed) {
                            break 'connections;
                        }
                    }
                }
            })
        })
        .collect();

    std::thread::sleep(Duration::from_millis(1500));
    server.terminate();
    let status = server.wait();
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    assert!(status.success(), "{}", server.log());
    let counted = counted.load(Ordering::Relaxed);
    assert!(counted > 100, "the load ran ({counted} beacons)");
    let views: i64 = read_pages(tmp.path()).iter().map(|r| r.views).sum();
    assert_eq!(
        views as u64, counted,
        "every 202 the clients saw is in the files, and nothing else"
    );
}

/// Reads one response; `None` when the connection ended first.
fn read_status(reader: &mut impl std::io::BufRead) -> Option<u16> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let status = line.split_whitespace().nth(1)?.parse().ok()?;
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some(status)
}

/// The views of the `pages` rows in `_state/checkpoint` (0 while there is
/// none). It is replaced by a rename, so it is read whole or not at all.
fn checkpointed_views(data: &std::path::Path) -> i64 {
    use arrow_array::{Int64Array, StringArray};
    let Ok(file) = std::fs::File::open(data.join("_state/checkpoint")) else {
        return 0;
    };
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let mut views = 0;
    for batch in reader {
        let batch = batch.unwrap();
        let column = |name: &str| batch.column_by_name(name).unwrap().as_any();
        let tables = column("table").downcast_ref::<StringArray>().unwrap();
        let counts = column("c0").downcast_ref::<Int64Array>().unwrap();
        for i in 0..batch.num_rows() {
            if tables.value(i) == "pages" {
                views += counts.value(i);
            }
        }
    }
    views
}

#[test]
fn a_crash_loses_nothing_checkpointed_and_counts_no_one_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let args = [
        "--trusted-proxy",
        "127.0.0.1/32",
        "--checkpoint-interval",
        "300ms",
    ];
    let mut server = Server::start(tmp.path(), &args);
    let mut conn = Conn::open(server.addr);
    for i in 0..400 {
        let reply = conn.raw(&beacon(&format!("/p/{}", i % 20), i % 80));
        assert_eq!(reply.status, 202);
    }
    // Wait for a checkpoint that holds every beacon. (Counting checkpoints
    // is not enough: one under way when the count is read took its
    // aggregates before the last beacons, and counts when it ends.)
    let deadline = Instant::now() + Duration::from_secs(30);
    while checkpointed_views(tmp.path()) < 400 {
        assert!(
            Instant::now() < deadline,
            "no checkpoint of every view within 30 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!server.kill().success(), "killed");
    assert!(
        read_pages(tmp.path()).is_empty(),
        "a crash writes no data file"
    );

    // The same 80 people come back after the restart.
    let mut server = Server::start(tmp.path(), &args);
    let mut conn = Conn::open(server.addr);
    for i in 0..100 {
        assert_eq!(conn.raw(&beacon("/after", i % 80)).status, 202);
    }
    assert!(server.stop().success(), "{}", server.log());
    assert!(
        server
            .log()
            .contains("restored unwritten aggregates from the checkpoint")
    );

    let rows = read_pages(tmp.path());
    assert_eq!(
        rows.iter().map(|r| r.views).sum::<i64>(),
        500,
        "nothing lost"
    );
    for p in 0..20 {
        let page: Vec<_> = rows
            .iter()
            .filter(|r| r.page == format!("/p/{p}"))
            .collect();
        assert_eq!(page.iter().map(|r| r.views).sum::<i64>(), 20);
    }
    assert_eq!(
        union_estimate(&rows).round(),
        80.0,
        "the same salt: 80 people, not 160"
    );
    assert!(
        !tmp.path().join("_state/checkpoint").exists(),
        "a clean stop that wrote everything leaves no checkpoint"
    );
}

#[test]
fn a_flood_of_unique_urls_stays_bounded_and_adds_up() {
    const BEACONS: usize = 300_000;
    const MAX_PAGES: usize = 10_000;
    let tmp = tempfile::tempdir().unwrap();
    // One attacker-like client flooding from a few addresses: the rate cap
    // is off, so what is measured is the bound on pages, not the cap. Two
    // worker threads, two shards: the bound holds per shard.
    const SHARDS: usize = 2;
    let mut server = Server::start(
        tmp.path(),
        &[
            "--trusted-proxy",
            "127.0.0.1/32",
            "--max-views-per-minute",
            "0",
            "--threads",
            "2",
        ],
    );
    let idle = server.rss_kib();
    let addr = server.addr;
    std::thread::scope(|s| {
        for t in 0..4 {
            s.spawn(move || {
                let mut conn = Conn::open(addr);
                for i in (t..BEACONS).step_by(4) {
                    // A random-looking, never repeated path of some length.
                    let path = format!(
                        "/flood/{:016x}/{i}",
                        (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
                    );
                    assert_eq!(conn.raw(&beacon(&path, i % 1000)).status, 202);
                }
            });
        }
    });
    let grown_mib = server.rss_kib().saturating_sub(idle) / 1024;
    let overflow = server.metric("footfall_overflow_views_total{kind=\"page\"}");
    assert!(server.stop().success());

    // The bound: 10,000 buckets of a few hundred bytes each and one (other)
    // bucket a shard, far below this, but allocator slack is not ours to
    // predict.
    assert!(grown_mib < 128, "resident memory grew by {grown_mib} MiB");
    let rows = read_pages(tmp.path());
    assert_eq!(
        rows.iter().map(|r| r.views).sum::<i64>(),
        BEACONS as i64,
        "every view counted"
    );
    // Every path is new, so each page kept has one view: at least one
    // shard's 10,000 (each took far more beacons than that, unless the
    // scheduler gave one worker nearly all), at most both shards'.
    let pages = rows.iter().filter(|r| r.page != "(other)").count();
    assert!(
        (MAX_PAGES..=SHARDS * MAX_PAGES).contains(&pages),
        "{pages} pages and (other)"
    );
    let other: i64 = rows
        .iter()
        .filter(|r| r.page == "(other)")
        .map(|r| r.views)
        .sum();
    assert_eq!(other as usize, BEACONS - pages);
    assert_eq!(overflow as usize, BEACONS - pages);
}

#[test]
fn a_slowloris_client_is_cut_off_without_holding_the_server() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Server::start(
        tmp.path(),
        &["--header-timeout", "1s", "--body-timeout", "1s"],
    );

    // Head one byte at a time.
    let mut slow = TcpStream::connect(server.addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    slow.write_all(b"POST /api/event HTTP/1.1\r\n").unwrap();
    // Body one byte at a time, after a complete head.
    let mut trickle = Conn::open(server.addr);
    trickle.write_raw(b"POST /api/event HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n{");

    let started = Instant::now();
    let mut cut = false;
    while started.elapsed() < Duration::from_secs(10) {
        // Everyone else is served meanwhile.
        let ok = Conn::open(server.addr).send("GET", "/healthz", &[], b"");
        assert_eq!(ok.status, 200);
        if slow.write_all(b"X").is_err() {
            cut = true;
            break;
        }
        let mut buf = [0u8; 64];
        if let Ok(0) = slow.read(&mut buf) {
            cut = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(cut, "the slow head was cut off");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "within a few seconds, not {:?}",
        started.elapsed()
    );

    let reply = trickle.read_reply();
    assert_eq!(reply.status, 408, "{}", reply.text());
    assert!(server.stop().success());
}

#[test]
fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout_and_a_busy_one_is_not() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Server::start(tmp.path(), &["--header-timeout", "1s"]);

    // Busy: a request every 300 ms for three timeouts, on one connection,
    // each answered; the next head is always due a timeout after the last
    // answer, not after the connection opened. Beacons, pixels and a
    // request for nothing take turns: every answer moves the deadline.
    let mut busy = Conn::open(server.addr);
    let started = Instant::now();
    let (mut sent, mut counted) = (0, 0);
    while started.elapsed() < Duration::from_secs(3) {
        let (request, status) = match sent % 3 {
            0 => (beacon("/busy", sent), 202),
            1 => (pixel("%2Fbusy-pixel", sent), 202),
            _ => (NOTHING.to_vec(), 404),
        };
        assert_eq!(busy.raw(&request).status, status, "request {sent}");
        counted += usize::from(status == 202);
        sent += 1;
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(sent >= 8, "{sent} requests");

    // Idle: answered once, then silent. The server closes it within a few
    // timeouts, and says nothing to it: after a beacon, after a pixel and
    // after a request for nothing alike.
    let idle_requests: [(&[u8], &str); 3] = [
        (&beacon("/idle", 0), "HTTP/1.1 202"),
        (&pixel("%2Fidle-pixel", 9), "HTTP/1.1 202"),
        (NOTHING, "HTTP/1.1 404"),
    ];
    for (request, status) in idle_requests {
        let mut idle = TcpStream::connect(server.addr).unwrap();
        idle.write_all(request).unwrap();
        idle.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut answer = Vec::new();
        let waited = Instant::now();
        let closed = idle.read_to_end(&mut answer);
        assert!(
            closed.is_ok(),
            "closed by the server, not timed out: {closed:?}"
        );
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with(status), "{answer}");
        assert_eq!(answer.matches("HTTP/1.1").count(), 1, "{answer}");
        assert!(
            waited.elapsed() >= Duration::from_millis(900)
                && waited.elapsed() < Duration::from_secs(5),
            "closed after {:?}",
            waited.elapsed()
        );
    }

    assert!(server.stop().success());
    let views: i64 = read_pages(tmp.path()).iter().map(|r| r.views).sum();
    assert_eq!(views, counted as i64 + 2, "every answered beacon counted");
}

#[test]
fn an_unwritable_data_dir_keeps_aggregates_reports_503_and_recovers() {
    wait_if_near_midnight();
    let tmp = tempfile::tempdir().unwrap();
    // A file where today's partition folder must go: every write fails,
    // even for root, which ignores permission bits.
    let blocker = tmp
        .path()
        .join("pages")
        .join(format!("date={}", utc_today()));
    std::fs::create_dir_all(blocker.parent().unwrap()).unwrap();
    std::fs::write(&blocker, "not a folder").unwrap();

    let args = ["--trusted-proxy", "127.0.0.1/32", "--flush-interval", "1s"];
    let mut server = Server::start(tmp.path(), &args);
    let mut conn = Conn::open(server.addr);
    for i in 0..50 {
        assert_eq!(conn.raw(&beacon("/disk", i)).status, 202);
    }
    // The operator's /healthz says why; the public one only that it is down.
    let health = |server: &Server| Conn::open(server.operator).send("GET", "/healthz", &[], b"");
    let deadline = Instant::now() + Duration::from_secs(30);
    let unhealthy = loop {
        let h = health(&server);
        if h.status == 503 {
            break h.text();
        }
        assert!(Instant::now() < deadline, "no 503 within 30 s");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        unhealthy.contains("date="),
        "names what cannot be written: {unhealthy}"
    );
    let public = Conn::open(server.addr).send("GET", "/healthz", &[], b"");
    assert_eq!(
        (public.status, public.text().as_str()),
        (503, "unavailable\n")
    );
    let reasons = server
        .log()
        .lines()
        .filter(|l| l.contains("unhealthy: /healthz answers 503"))
        .count();
    assert_eq!(
        reasons,
        1,
        "the reason is logged once, not per probe:\n{}",
        server.log()
    );
    assert!(server.metric("footfall_write_errors_total") >= 1.0);
    assert_eq!(server.metric("footfall_unwritten_buckets"), 1.0);
    // Beacons are still taken while the disk is away.
    assert_eq!(conn.raw(&beacon("/disk", 99)).status, 202);

    std::fs::remove_file(&blocker).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while health(&server).status != 200 {
        assert!(Instant::now() < deadline, "not healthy again within 60 s");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(server.stop().success());
    let rows = read_pages(tmp.path());
    assert_eq!(
        rows.iter().map(|r| r.views).sum::<i64>(),
        51,
        "nothing lost"
    );
    assert_eq!(union_estimate(&rows).round(), 51.0);
}

#[test]
fn connections_past_the_limit_wait_until_one_closes() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Server::start(
        tmp.path(),
        &["--max-connections", "1", "--header-timeout", "30s"],
    );

    // The one slot, held by an idle keep-alive connection.
    let mut first = Conn::open(server.addr);
    assert_eq!(first.send("GET", "/healthz", &[], b"").status, 200);

    // A second connection is accepted by the kernel but not served.
    let mut second = TcpStream::connect(server.addr).unwrap();
    second
        .set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();
    second
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 12];
    let waited = second.read(&mut buf);
    assert!(waited.is_err(), "served past the limit: {waited:?}");

    // Once the first closes, the second is served.
    drop(first);
    second
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    second.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"HTTP/1.1 200");
    drop(second);
    assert!(server.stop().success());
}
