//! Test harness: the real `footfall` binary on a free loopback port, a small
//! HTTP/1.1 client over plain sockets (so tests control every byte, even
//! malformed ones), and a reader for the Parquet files it writes.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow_array::{Array, BinaryArray, Int64Array, StringArray, TimestampMicrosecondArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// A running `footfall serve`, killed if a test panics before stopping it.
pub struct Server {
    child: Option<Child>,
    pub addr: SocketAddr,
    /// The operator's listener (`/metrics`, `/healthz` with its reason).
    pub operator: SocketAddr,
    pub data_dir: PathBuf,
    log: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `footfall serve --listen 127.0.0.1:0 --dashboard-listen
    /// 127.0.0.1:0 --data-dir DIR ARGS...` at debug log level and waits
    /// until it says where both listeners are.
    pub fn start(data_dir: &Path, args: &[&str]) -> Server {
        Server::start_at(None, data_dir, args)
    }

    /// As [`Server::start`], with the server's clocks (wall and monotonic)
    /// moved by Debian's `faketime` to start at `time` (`"@2026-12-03
    /// 10:00:05"`, optionally with a speed such as `" x20"`), so a test
    /// of minutes or midnights neither waits for nor depends on the real
    /// clock. `scripts/test.sh` installs it.
    pub fn start_at(time: Option<&str>, data_dir: &Path, args: &[&str]) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_footfall"));
        if let Some(time) = time {
            // Preloaded into footfall itself, not run through the `faketime`
            // command, which would stand between the test's SIGTERM and it.
            command
                .env("LD_PRELOAD", libfaketime())
                .env("FAKETIME", time)
                .env("FAKETIME_NO_CACHE", "1");
        }
        let mut child = command
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(if args.contains(&"--dashboard-listen") {
                &[][..]
            } else {
                &["--dashboard-listen", "127.0.0.1:0"][..]
            })
            .args(args)
            // Every level: the privacy scan reads every line the server can
            // log, not only the default ones.
            .env("RUST_LOG", "trace")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start footfall (under faketime: scripts/test.sh installs it)");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                // The beacon listener's `addr=`, then the operator's `at=`.
                let found = line.split(" addr=").nth(1).or_else(|| {
                    line.split(" at=")
                        .nth(1)
                        .filter(|_| line.contains("operator"))
                });
                if let Some(addr) = found {
                    let addr = addr.split_whitespace().next().unwrap_or("").to_owned();
                    let _ = tx.send(addr);
                }
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let mut next = || match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(a) => a.parse::<SocketAddr>().expect("listening address"),
            Err(_) => {
                let _ = child.kill();
                panic!("footfall did not start:\n{}", log.lock().unwrap());
            }
        };
        let addr = next();
        let operator = next();
        Server {
            child: Some(child),
            addr,
            operator,
            data_dir: data_dir.to_owned(),
            log,
        }
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn stop(&mut self) -> ExitStatus {
        self.terminate();
        self.wait()
    }

    /// Sends SIGKILL and waits: a crash, with no chance to flush.
    pub fn kill(&mut self) -> ExitStatus {
        let child = self.child.as_mut().expect("server already stopped");
        child.kill().expect("SIGKILL");
        self.wait()
    }

    /// Resident memory of the server process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let pid = self.child.as_ref().expect("server running").id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("procfs");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }

    /// The operator listener's `/metrics`.
    pub fn metrics(&self) -> String {
        Conn::open(self.operator)
            .send("GET", "/metrics", &[], b"")
            .text()
    }

    /// The value of a `/metrics` series, e.g. `footfall_views_total`.
    pub fn metric(&self, series: &str) -> f64 {
        let text = self.metrics();
        text.lines()
            .find_map(|l| {
                l.strip_prefix(series)
                    .and_then(|rest| rest.strip_prefix(' '))
            })
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
    }

    /// Sends SIGTERM without waiting.
    pub fn terminate(&self) {
        let child = self.child.as_ref().expect("server already stopped");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// Waits (at most 60 s) for the process to exit.
    pub fn wait(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("server already stopped");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                // Let the reader thread take the last lines.
                std::thread::sleep(Duration::from_millis(100));
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("footfall did not exit within 60 s:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One HTTP answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    /// Header names lowercase; repeated headers keep every value.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A keep-alive HTTP/1.1 connection.
pub struct Conn {
    reader: BufReader<TcpStream>,
    stream: TcpStream,
    /// The request just sent was a HEAD: its answer has no body, whatever
    /// its Content-Length says.
    head: bool,
}

impl Conn {
    pub fn open(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Conn {
            reader: BufReader::new(stream.try_clone().unwrap()),
            stream,
            head: false,
        }
    }

    /// Everything the server sends until it closes the connection.
    pub fn read_to_end(&mut self) -> Vec<u8> {
        let mut rest = Vec::new();
        self.reader
            .read_to_end(&mut rest)
            .expect("closed, not reset");
        rest
    }

    /// Sends raw bytes without reading an answer.
    pub fn write_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// Sends raw request bytes and reads one answer.
    pub fn raw(&mut self, request: &[u8]) -> Reply {
        self.stream.write_all(request).expect("send request");
        self.read_reply()
    }

    /// Sends a request built from parts; adds Host and Content-Length.
    pub fn send(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Reply {
        self.head = method == "HEAD";
        let mut req = format!("{method} {target} HTTP/1.1\r\nHost: collector.test\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        if !body.is_empty() || method == "POST" {
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);
        self.raw(&bytes)
    }

    pub fn read_reply(&mut self) -> Reply {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("read status line");
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {line:?}"));
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            self.reader.read_line(&mut h).expect("read header");
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':').expect("header line");
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
        let len: usize = if std::mem::take(&mut self.head) {
            0
        } else {
            headers
                .iter()
                .find(|(k, _)| k == "content-length")
                .map_or(0, |(_, v)| v.parse().unwrap())
        };
        let mut body = vec![0; len];
        self.reader.read_exact(&mut body).expect("read body");
        Reply {
            status,
            headers,
            body,
        }
    }
}

/// One row of the `pages` table.
#[derive(Debug, Clone)]
pub struct PageRow {
    pub site: String,
    pub hour_micros: i64,
    pub page: String,
    pub views: i64,
    pub entries: i64,
    pub visitors: Vec<u8>,
    pub file: PathBuf,
}

/// Every `*.parquet` file below `dir`, recursively.
pub fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    all_files(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect()
}

/// Every regular file below `dir`, recursively.
pub fn all_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Reads every row of every `pages` file with arrow-rs.
pub fn read_pages(data_dir: &Path) -> Vec<PageRow> {
    read_table(data_dir, "pages")
        .into_iter()
        .map(|r| PageRow {
            page: r.dims[0].clone().expect("page is never null"),
            views: r.count("views"),
            entries: r.count("entries"),
            site: r.site,
            hour_micros: r.hour_micros,
            visitors: r.visitors,
            file: r.file,
        })
        .collect()
}

/// One row of any table, read generically: its dimension columns (between
/// `hour` and the counts) and its counts by name.
#[derive(Debug, Clone)]
pub struct Row {
    pub site: String,
    pub hour_micros: i64,
    pub dims: Vec<Option<String>>,
    /// The table's counts (`views`, `entries`, `visits`, ...).
    pub counts: HashMap<String, i64>,
    pub visitors: Vec<u8>,
    pub file: PathBuf,
}

impl Row {
    pub fn count(&self, name: &str) -> i64 {
        self.counts[name]
    }
}

/// Every row of every file of `table` (`sources`, `devices`, ...), read with
/// arrow-rs by column name and type, as an engine would.
pub fn read_table(data_dir: &Path, table: &str) -> Vec<Row> {
    let mut rows = Vec::new();
    for file in parquet_files(&data_dir.join(table)) {
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&file).unwrap())
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            let schema = batch.schema();
            let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            let n = names.len();
            assert_eq!(names[..2], ["site", "hour"], "{}", file.display());
            assert_eq!(names[n - 1], "visitors", "{}", file.display());
            let counts_start = names
                .iter()
                .position(|c| matches!(*c, "views" | "entries" | "visits" | "events"))
                .expect("a count column");
            let strings = |i: usize| {
                batch
                    .column(i)
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .unwrap()
                    .clone()
            };
            let site = strings(0);
            let hour = batch
                .column(1)
                .as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                .unwrap();
            let dims: Vec<StringArray> = (2..counts_start).map(strings).collect();
            let counts: Vec<(&str, &Int64Array)> = (counts_start..n - 1)
                .map(|i| {
                    (
                        names[i],
                        batch
                            .column(i)
                            .as_any()
                            .downcast_ref::<Int64Array>()
                            .unwrap(),
                    )
                })
                .collect();
            let visitors = batch
                .column(n - 1)
                .as_any()
                .downcast_ref::<BinaryArray>()
                .unwrap();
            for i in 0..batch.num_rows() {
                rows.push(Row {
                    site: site.value(i).to_owned(),
                    hour_micros: hour.value(i),
                    dims: dims
                        .iter()
                        .map(|d| d.is_valid(i).then(|| d.value(i).to_owned()))
                        .collect(),
                    counts: counts
                        .iter()
                        .map(|(name, c)| ((*name).to_owned(), c.value(i)))
                        .collect(),
                    visitors: visitors.value(i).to_vec(),
                    file: file.clone(),
                });
            }
        }
    }
    rows
}

/// The estimate of the union of some rows' sketches (any table).
pub fn union_of<'a>(sketches: impl IntoIterator<Item = &'a [u8]>) -> f64 {
    use datasketches::hll::{HllSketch, HllUnion};
    let mut union = HllUnion::new(12).unwrap();
    for s in sketches {
        union.update(&HllSketch::deserialize(s).expect("a DataSketches HLL image"));
    }
    union.estimate()
}

/// A current desktop browser's User-Agent, for requests that stand for a
/// person (anything else is dropped as a bot).
pub const BROWSER_UA: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36";

/// Relative standard error of an lg_k 12 HLL union: 1.04 / sqrt(4096).
pub const RSE: f64 = 1.04 / 64.0;

/// An estimate is exact below 100 visitors (the sketch still lists them)
/// and within three standard errors above.
pub fn assert_estimate(what: &str, estimate: f64, truth: usize) {
    if truth < 100 {
        assert_eq!(
            estimate.round() as usize,
            truth,
            "{what}: exact below 100 visitors"
        );
    } else {
        let err = (estimate - truth as f64).abs() / truth as f64;
        assert!(
            err <= 3.0 * RSE,
            "{what}: estimate {estimate:.1} vs truth {truth} ({:.2} %)",
            err * 100.0
        );
    }
}

/// A raw pageview beacon for `site` at `url`, from a desktop browser at
/// `xff` (read only by a server that trusts 127.0.0.1 as a proxy).
pub fn pageview(site: &str, url: &str, xff: &str) -> Vec<u8> {
    let body = format!(r#"{{"n":"pageview","u":"{url}","d":"{site}"}}"#);
    post(&body, BROWSER_UA, xff, "text/plain")
}

/// A raw `POST /api/event` with these headers.
pub fn post(body: &str, ua: &str, xff: &str, content_type: &str) -> Vec<u8> {
    format!(
        "POST /api/event HTTP/1.1\r\nHost: collector.test\r\nUser-Agent: {ua}\r\nX-Forwarded-For: {xff}\r\n\
         Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The estimate a reader gets for a set of rows: the union of their
/// sketches, as DuckDB, Spark or Python would compute it.
pub fn union_estimate<'a>(rows: impl IntoIterator<Item = &'a PageRow>) -> f64 {
    union_of(rows.into_iter().map(|r| &r.visitors[..]))
}

/// Sums of views and entries per (site, page), and the rows of each.
pub fn by_page(rows: &[PageRow]) -> HashMap<(String, String), Vec<&PageRow>> {
    let mut out: HashMap<(String, String), Vec<&PageRow>> = HashMap::new();
    for r in rows {
        out.entry((r.site.clone(), r.page.clone()))
            .or_default()
            .push(r);
    }
    out
}

/// A tiny deterministic generator (SplitMix64), so a failing run can be
/// replayed: the tests need spread, not cryptographic randomness.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Roughly Zipf-distributed index in 0..n: a few pages get most views.
    pub fn zipf(&mut self, n: usize) -> usize {
        let u = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        ((n as f64).powf(u) - 1.0).floor().min((n - 1) as f64) as usize
    }
}

/// Tests that count visitors across a whole run must not straddle UTC
/// midnight, when the salt (rightly) changes: start after it instead.
pub fn wait_if_near_midnight() {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let to_midnight = 86_400 - secs % 86_400;
    if to_midnight < 90 {
        std::thread::sleep(std::time::Duration::from_secs(to_midnight + 1));
    }
}

/// Today's UTC date, `YYYY-MM-DD`.
pub fn utc_today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    utc_date(secs)
}

/// `YYYY-MM-DD` of a Unix time, without pulling a date crate into the tests.
pub fn utc_date(secs: i64) -> String {
    // Howard Hinnant's days-to-civil algorithm.
    let z = secs.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Runs `footfall ARGS --data-dir DIR` to the end: (success, stdout, stderr).
pub fn footfall(args: &[&str], data_dir: &Path) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_footfall"))
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Debian's libfaketime (package `faketime`), wherever the architecture
/// puts it.
fn libfaketime() -> PathBuf {
    let found = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|d| d.path().join("faketime/libfaketime.so.1"))
        .chain([PathBuf::from("/usr/lib/faketime/libfaketime.so.1")])
        .find(|p| p.exists());
    found.expect("libfaketime.so.1 (Debian's faketime; scripts/test.sh installs it)")
}
