//! `footfall`: the command-line entry point.
//!
//! `footfall serve` runs the collector and the aggregator in one process.
//! This file parses flags, sets up logging, wires the crates together and
//! turns errors into exit codes; everything else lives in the library
//! crates.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use footfall_aggregator::buckets::Limits;
use footfall_aggregator::sessions::SessionSettings;
use footfall_aggregator::{Aggregator, AggregatorConfig};
use footfall_collector::events::EventProps;
use footfall_collector::shields::Shields;
use footfall_collector::{Collector, CollectorConfig, SaltStore, SiteFilter};
use footfall_dashboard::{Dashboard, Operations, Secret};
use footfall_schemas::VisitSink;
use footfall_schemas::tables::{DEFAULT_LG_K, STATE_DIR};
use footfall_storage::Store;
use ipnet::IpNet;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing_subscriber::EnvFilter;

mod privacy_notice;
mod publish;

/// Privacy-preserving page-view analytics: beacons in, hourly aggregates and
/// HyperLogLog sketches out, as Parquet.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the collector and the aggregator: take beacons over HTTP, write
    /// hourly Parquet aggregates. Stops cleanly on SIGINT/SIGTERM.
    Serve(Box<ServeArgs>),
    /// Top pages, sources, browsers, countries… or a time series, for a
    /// site and date range, merging counts and sketches from the files.
    Report(ReportArgs),
    /// Build the daily rollups (`<table>_daily/`) of closed UTC days, or of
    /// one day. `serve` does this by itself after each day; this is for
    /// backfills and data copied in from elsewhere.
    Rollup(RollupArgs),
    /// The sites with data, with the first and last UTC day of each.
    Sites(SitesArgs),
    /// The analytics paragraph for a site's privacy policy, made from the
    /// same flags and FOOTFALL_* variables `serve` runs with.
    PrivacyNotice(Box<PrivacyNoticeArgs>),
    /// A differentially private release of a report's counts (OpenDP):
    /// noise on every count, rare keys held back, the parameters in the
    /// file, and each day's ε spent from a per-site budget.
    Publish(PublishArgs),
    /// The dashboard and the stats API from files alone, without a
    /// collector: an analyst's laptop, a copy of the data, a bucket.
    Dashboard(DashboardArgs),
}

#[derive(Debug, clap::Args)]
struct DashboardArgs {
    /// Where `serve` writes: a folder, or an object-store URL
    /// (`s3://bucket/prefix`, …; credentials from the environment).
    #[arg(long, env = "FOOTFALL_DATA_DIR", default_value = "./footfall-data")]
    data_dir: String,

    /// Address to listen on. Anything but loopback needs a secret.
    #[arg(long, env = "FOOTFALL_DASHBOARD_LISTEN", default_value = "127.0.0.1:8081", value_parser = parse_listen)]
    listen: SocketAddr,

    /// A file holding the secret (at least 16 characters), required off
    /// loopback as HTTP Basic's password or `Authorization: Bearer`. Or
    /// set FOOTFALL_DASHBOARD_PASSWORD.
    #[arg(long, env = "FOOTFALL_DASHBOARD_PASSWORD_FILE")]
    dashboard_password_file: Option<PathBuf>,
}

/// Which files and which site a report or a release reads.
#[derive(Debug, clap::Args)]
struct RangeArgs {
    /// Where `serve` writes: a folder, or an object-store URL
    /// (`s3://bucket/prefix`, `gs://…`, `az://…`; credentials from the
    /// environment, as `AWS_ACCESS_KEY_ID`, `AWS_ENDPOINT_URL`…).
    #[arg(long, env = "FOOTFALL_DATA_DIR", default_value = "./footfall-data")]
    data_dir: String,

    /// The site [default: the one site with data, when only one has any].
    #[arg(long)]
    site: Option<String>,

    /// First UTC day, inclusive (YYYY-MM-DD) [default: today, or --to].
    #[arg(long, value_parser = parse_date)]
    from: Option<chrono::NaiveDate>,

    /// Last UTC day, inclusive (YYYY-MM-DD) [default: today].
    #[arg(long, value_parser = parse_date)]
    to: Option<chrono::NaiveDate>,
}

#[derive(Debug, clap::Args)]
struct PublishArgs {
    #[command(flatten)]
    range: RangeArgs,

    /// Local folder of the privacy-budget ledger [default:
    /// `<data-dir>/_state`; required when the data dir is a URL].
    #[arg(long, env = "FOOTFALL_STATE_DIR")]
    state_dir: Option<PathBuf>,

    /// The dimension whose counts are released (as `report --by`).
    #[arg(long, value_parser = dimension_parser())]
    by: footfall_report::Dimension,

    /// The privacy loss of this release, per day it covers: smaller is
    /// more private and noisier (noise scale 1/ε views).
    #[arg(long)]
    epsilon: f64,

    /// The chance, at most, that the release threshold lets a key of one
    /// view through.
    #[arg(long, default_value_t = 1e-6)]
    delta: f64,

    /// The most ε all releases together may spend on one day of a site.
    #[arg(long, env = "FOOTFALL_EPSILON_BUDGET", default_value_t = 1.0)]
    epsilon_budget: f64,

    /// Where to write the release: `.csv`, `.json` or `.parquet`.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, clap::Args)]
struct PrivacyNoticeArgs {
    #[command(flatten)]
    serve: ServeArgs,

    /// Output format.
    #[arg(long, value_enum, default_value = "markdown")]
    format: NoticeFormat,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum NoticeFormat {
    Markdown,
    Html,
}

#[derive(Debug, clap::Args)]
struct SitesArgs {
    /// Where `serve` writes: a folder, or an object-store URL
    /// (`s3://bucket/prefix`, `gs://…`, `az://…`; credentials from the
    /// environment, as `AWS_ACCESS_KEY_ID`, `AWS_ENDPOINT_URL`…).
    #[arg(long, env = "FOOTFALL_DATA_DIR", default_value = "./footfall-data")]
    data_dir: String,

    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: FormatArg,
}

#[derive(Debug, clap::Args)]
struct RollupArgs {
    /// Where `serve` writes: a folder, or an object-store URL
    /// (`s3://bucket/prefix`, `gs://…`, `az://…`; credentials from the
    /// environment, as `AWS_ACCESS_KEY_ID`, `AWS_ENDPOINT_URL`…).
    #[arg(long, env = "FOOTFALL_DATA_DIR", default_value = "./footfall-data")]
    data_dir: String,

    /// The UTC day to roll up (YYYY-MM-DD) [default: every day before
    /// today that has hourly files].
    #[arg(long, value_parser = parse_date)]
    date: Option<chrono::NaiveDate>,
}

#[derive(Debug, clap::Args)]
struct ReportArgs {
    #[command(flatten)]
    range: RangeArgs,

    /// Break down by this dimension (page; entry_page and exit_page, the
    /// pages visits began and ended on; sources from `sources`, families
    /// from `devices`, `country` from `countries`; `hour` and `day` are time
    /// series; `event`, custom events by name; `prop:KEY`, one `--event`'s
    /// values of the property KEY; `goal`, each `--goal`); without it, one
    /// row of site totals. Totals, time series, pages, entry and exit pages
    /// and sources add their visit numbers; events and goals their
    /// conversion rate.
    #[arg(long, value_name = "DIMENSION", value_parser = parse_by)]
    by: Option<By>,

    /// The event whose property values `--by prop:KEY` lists.
    #[arg(long, value_name = "NAME")]
    event: Option<String>,

    /// A goal for `--by goal` (repeatable): an event's name, or
    /// `page:/path` for views of a page (`*` matches within a path
    /// segment, `**` across them: `page:/blog/**`).
    #[arg(long = "goal", value_name = "GOAL")]
    goals: Vec<String>,

    /// Show at most N rows.
    #[arg(long, value_name = "N")]
    limit: Option<usize>,

    /// Hide rows of fewer than K visitors (small-cell suppression, for
    /// numbers you publish): their counts go into one `(other)` row, shown
    /// only if it reaches K itself.
    #[arg(long, value_name = "K", default_value_t = 0)]
    min_visitors: u64,

    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: FormatArg,
}

/// `report --by`: a dimension, with the property's key for `prop:KEY`.
#[derive(Debug, Clone)]
struct By {
    dimension: footfall_report::Dimension,
    prop: Option<String>,
}

fn parse_by(text: &str) -> Result<By, String> {
    use footfall_report::Dimension;
    if let Some(key) = text.strip_prefix("prop:") {
        if key.is_empty() {
            return Err("prop: needs the property's key, as prop:plan".into());
        }
        return Ok(By {
            dimension: Dimension::Prop,
            prop: Some(key.to_owned()),
        });
    }
    match Dimension::from_name(text) {
        Some(Dimension::Prop) | None => {
            let names: Vec<&str> = Dimension::ALL
                .iter()
                .map(|d| match d {
                    Dimension::Prop => "prop:KEY",
                    d => d.name(),
                })
                .collect();
            Err(format!("one of: {}", names.join(", ")))
        }
        Some(dimension) => Ok(By {
            dimension,
            prop: None,
        }),
    }
}

/// `publish --by` takes the report's own dimension names, listed in
/// `--help`, but those that need more than a name (`prop:KEY` and its
/// `--event`, `goal` and its `--goal`s, which `publish` does not take).
fn dimension_parser() -> impl clap::builder::TypedValueParser<Value = footfall_report::Dimension> {
    use clap::builder::TypedValueParser as _;
    use footfall_report::Dimension;
    let names: Vec<&'static str> = Dimension::ALL
        .into_iter()
        .filter(|d| !matches!(d, Dimension::Prop | Dimension::Goal))
        .map(Dimension::name)
        .collect();
    clap::builder::PossibleValuesParser::new(names)
        .map(|name: String| Dimension::from_name(&name).expect("one of the possible values"))
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum FormatArg {
    Table,
    Csv,
    Json,
}

impl From<FormatArg> for footfall_report::Format {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::Table => Self::Table,
            FormatArg::Csv => Self::Csv,
            FormatArg::Json => Self::Json,
        }
    }
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Address to listen on: `IP:PORT`, `[IPv6]:PORT` or `HOST:PORT`
    /// (`localhost:8080`; the first address the name resolves to).
    #[arg(long, env = "FOOTFALL_LISTEN", default_value = "127.0.0.1:8080", value_parser = parse_listen)]
    listen: SocketAddr,

    /// Where the Parquet output goes: a folder (created if missing), or an
    /// object-store URL (`s3://bucket/prefix`, `gs://…`, `az://…`), with
    /// credentials from the environment as that ecosystem expects
    /// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
    /// `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`).
    #[arg(long, env = "FOOTFALL_DATA_DIR", default_value = "./footfall-data")]
    data_dir: String,

    /// Local folder for this collector's lock, checkpoint and (without
    /// `--salt-store`) salt [default: `<data-dir>/_state`; required when
    /// the data dir is a URL]. Each collector needs its own.
    #[arg(long, env = "FOOTFALL_STATE_DIR")]
    state_dir: Option<PathBuf>,

    /// A private location (`s3://other-bucket/prefix`, or a folder) where
    /// collectors counting the same sites share each day's salt, so a
    /// visitor whose beacons reach two of them is counted once. Never
    /// inside the data dir: whoever reads a salt can test whether someone
    /// is in that day's numbers. Salts are kept in memory only.
    #[arg(long, env = "FOOTFALL_SALT_STORE")]
    salt_store: Option<String>,

    /// Count only these sites (repeatable, or comma-separated in the
    /// variable). None: accept any site.
    #[arg(
        long = "site",
        env = "FOOTFALL_SITE",
        value_name = "DOMAIN",
        value_delimiter = ','
    )]
    sites: Vec<String>,

    /// Peers (CIDR, repeatable) whose `X-Forwarded-For` names the client:
    /// the nearest address that is not a trusted proxy. Anyone else's header,
    /// and entries a client wrote itself, are ignored: they could forge uniques.
    #[arg(long = "trusted-proxy", env = "FOOTFALL_TRUSTED_PROXY", value_name = "CIDR",
          value_delimiter = ',', value_parser = parse_net)]
    trusted_proxies: Vec<IpNet>,

    /// Tokio worker threads [default: all cores].
    #[arg(long, env = "FOOTFALL_THREADS")]
    threads: Option<usize>,

    /// HLL sketch precision: 2^lg_k registers, relative error about
    /// 1.04/sqrt(2^lg_k). One value per data dir.
    #[arg(long, env = "FOOTFALL_LG_K", default_value_t = DEFAULT_LG_K,
          value_parser = clap::value_parser!(u8).range(4..=21))]
    lg_k: u8,

    /// How often unwritten aggregates are saved to `_state/checkpoint`: the
    /// most a crash (kill -9, power loss) can lose. `10s`, `500ms`, `1m`.
    #[arg(long, env = "FOOTFALL_CHECKPOINT_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    checkpoint_interval: Duration,

    /// Also write the current hour's aggregates this often (`5m`), so the
    /// files are never older than that [default: when an hour closes].
    #[arg(long, env = "FOOTFALL_FLUSH_INTERVAL", value_parser = parse_duration)]
    flush_interval: Option<Duration>,

    /// Distinct pages per site per hour; further pages count as `(other)`.
    #[arg(long, env = "FOOTFALL_MAX_PAGES", default_value_t = 10_000)]
    max_pages: usize,

    /// Distinct sites per hour when no --site allow-list is given; further
    /// sites count as `(other)`.
    #[arg(long, env = "FOOTFALL_MAX_SITES", default_value_t = 1_000)]
    max_sites: usize,

    /// Connections served at once; more wait in the kernel's backlog.
    #[arg(long, env = "FOOTFALL_MAX_CONNECTIONS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,

    /// A connection that has not sent its next full request head by then,
    /// counted from its opening or its last answer (a slow head, an idle
    /// keep-alive connection, a client not reading its answer), is closed.
    #[arg(long, env = "FOOTFALL_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    header_timeout: Duration,

    /// A request whose body has not fully arrived by then gets a 408.
    #[arg(long, env = "FOOTFALL_BODY_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    body_timeout: Duration,

    /// A country database in MaxMind DB format (GeoLite2 Country or City,
    /// DB-IP Lite, ip-location-db): write the `countries` table. Addresses
    /// are looked up in memory and never stored.
    #[arg(long, env = "FOOTFALL_GEOIP_DB", value_name = "PATH")]
    geoip_db: Option<PathBuf>,

    /// The operator's listener: `/metrics` and `/healthz` with its reason
    /// (the dashboard's, later). `off` turns it off. Any address but
    /// loopback needs FOOTFALL_DASHBOARD_PASSWORD or
    /// --dashboard-password-file: its answers are the site's traffic.
    #[arg(long, env = "FOOTFALL_DASHBOARD_LISTEN", default_value = "127.0.0.1:8081",
          value_name = "ADDR|off", value_parser = parse_optional_listen)]
    dashboard_listen: OptionalAddr,

    /// A file holding the operator listener's secret (at least 16
    /// characters), sent as `Authorization: Bearer <secret>`. Or set
    /// FOOTFALL_DASHBOARD_PASSWORD, which no flag can show in `ps`.
    #[arg(long, env = "FOOTFALL_DASHBOARD_PASSWORD_FILE", value_name = "PATH")]
    dashboard_password_file: Option<PathBuf>,

    /// Never count beacons from these addresses (CIDR or address,
    /// repeatable): your office, a monitoring probe. They are dropped with
    /// reason `excluded` before anything is hashed.
    #[arg(long = "exclude-ip", env = "FOOTFALL_EXCLUDE_IP", value_name = "CIDR",
          value_delimiter = ',', value_parser = parse_net)]
    exclude_ips: Vec<IpNet>,

    /// Never count views of pages matching this pattern (repeatable): `*`
    /// is any characters but `/`, `**` any characters (`/admin/**`).
    #[arg(
        long = "exclude-page",
        env = "FOOTFALL_EXCLUDE_PAGE",
        value_name = "PATTERN",
        value_delimiter = ','
    )]
    exclude_pages: Vec<String>,

    /// Store custom events' values of this property key (repeatable, or
    /// comma-separated in the variable). Every other property is dropped
    /// before anything is stored, and values that look like an e-mail
    /// address are refused even here: properties are where e-mail
    /// addresses and user ids leak in. Outbound-link and file-download
    /// events keep their `url`, reduced to host and path, without this.
    #[arg(
        long = "event-prop",
        env = "FOOTFALL_EVENT_PROPS",
        value_name = "KEY",
        value_delimiter = ','
    )]
    event_props: Vec<String>,

    /// Views a minute one visitor (browser and address) may add to one
    /// site; past it they are dropped with reason `rate-limit`. 0 turns the
    /// cap off.
    #[arg(long, env = "FOOTFALL_MAX_VIEWS_PER_MINUTE",
          default_value_t = footfall_collector::shields::DEFAULT_MAX_VIEWS_PER_MINUTE)]
    max_views_per_minute: u32,

    /// Track visits (bounce rate, visit duration, entry and exit pages,
    /// time on page, scroll depth): each visitor's open visit is held in
    /// memory, never written, until it ends. `off` keeps no per-visitor
    /// state past a request, and writes no visit counts.
    #[arg(long, env = "FOOTFALL_SESSIONS", value_enum, default_value = "on")]
    sessions: Switch,

    /// A visit ends after this long without a beacon (`30m`).
    #[arg(long, env = "FOOTFALL_SESSION_TIMEOUT", default_value = "30m", value_parser = parse_duration)]
    session_timeout: Duration,

    /// Open visits at most (about 116 bytes each); new visitors past it
    /// count as usual but not as a visit (footfall_visits_untracked_total).
    #[arg(long, env = "FOOTFALL_MAX_VISITS", default_value_t = 1_000_000)]
    max_visits: usize,

    /// Drop beacons from browsers that send `Sec-GPC: 1` (Global Privacy
    /// Control). Off by default: footfall stores no personal data, so GPC's
    /// opt-out of sale and sharing does not require it.
    #[arg(long, env = "FOOTFALL_HONOR_GPC")]
    honor_gpc: bool,
}

/// `IP:PORT`, or `HOST:PORT` resolved now, so a typo fails at start with
/// the name in the message rather than at bind.
fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    let s = s.trim();
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let resolved = s.to_socket_addrs().map_err(|e| {
        format!("{s:?} is not an address like 127.0.0.1:8080 or localhost:8080 ({e})")
    })?;
    // Prefer IPv4 for a name like localhost that has both, as most clients
    // (and the README's examples) try 127.0.0.1.
    let all: Vec<SocketAddr> = resolved.collect();
    all.iter()
        .find(|a| a.is_ipv4())
        .or(all.first())
        .copied()
        .ok_or_else(|| format!("{s:?} resolves to no address"))
}

/// `on` or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Switch {
    On,
    Off,
}

/// An address, or `off`.
#[derive(Debug, Clone, Copy)]
struct OptionalAddr(Option<SocketAddr>);

fn parse_optional_listen(s: &str) -> Result<OptionalAddr, String> {
    if s.trim().eq_ignore_ascii_case("off") {
        return Ok(OptionalAddr(None));
    }
    parse_listen(s).map(|a| OptionalAddr(Some(a)))
}

/// A CIDR range, or a single address (`10.0.0.1` = `10.0.0.1/32`).
fn parse_net(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{s:?} is neither an address nor a CIDR range like 10.0.0.0/8"))
}

/// `10s`, `500ms`, `2m`, `1h`, or a bare number of seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, "s"), |i| s.split_at(i));
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 10s or 500ms"))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => return Err(format!("{s:?}: the unit must be ms, s, m or h")),
    };
    if d.is_zero() {
        return Err("a duration must be above zero".into());
    }
    Ok(d)
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        // A server's errors go to its log, with the rest of its story.
        Command::Serve(args) => serve(*args).inspect_err(|e| tracing::error!("{}", chain(e))),
        // A command's errors go to the person who typed it.
        Command::Report(args) => {
            report(args).inspect_err(|e| eprintln!("footfall: error: {}", chain(e)))
        }
        Command::Rollup(args) => {
            rollup(args).inspect_err(|e| eprintln!("footfall: error: {}", chain(e)))
        }
        Command::Sites(args) => {
            sites(args).inspect_err(|e| eprintln!("footfall: error: {}", chain(e)))
        }
        Command::PrivacyNotice(args) => {
            privacy_notice(&args);
            Ok(())
        }
        Command::Publish(args) => {
            publish(args).inspect_err(|e| eprintln!("footfall: error: {}", chain(e)))
        }
        Command::Dashboard(args) => {
            dashboard(args).inspect_err(|e| tracing::error!("{}", chain(e)))
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(_) => std::process::ExitCode::FAILURE,
    }
}

/// An error and its causes on one line, each cause once: our errors name
/// their cause in their own message, which `{:#}` would print again.
fn chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.ends_with(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// `YYYY-MM-DD`, with a message that says so.
fn parse_date(s: &str) -> Result<chrono::NaiveDate, String> {
    chrono::NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
        .map_err(|_| format!("{s:?} is not a date like 2026-11-25 (YYYY-MM-DD, UTC)"))
}

/// `--from` and `--to` as a range: `--to` alone is that one day, `--from`
/// alone runs to today (UTC).
fn date_range(
    from: Option<chrono::NaiveDate>,
    to: Option<chrono::NaiveDate>,
) -> Result<(chrono::NaiveDate, chrono::NaiveDate)> {
    let today = chrono::Utc::now().date_naive();
    let start = from.or(to).unwrap_or(today);
    let end = to.unwrap_or(today);
    if start > end {
        match to {
            Some(_) => anyhow::bail!("--from {start} is after --to {end}"),
            None => anyhow::bail!(
                "--from {start} is after --to, which defaults to today, {today} (UTC)"
            ),
        }
    }
    Ok((start, end))
}

/// `--site`, normalised as serve names sites, or the one site with data.
fn site_or_only(site: Option<&str>, store: &footfall_report::Store) -> Result<String> {
    Ok(match site {
        Some(site) => footfall_collector::normalise::site_id(site)
            .map_err(|_| anyhow::anyhow!("--site {site:?} is not a domain name like example.com"))?
            .into_owned(),
        None => footfall_report::only_site(store)?,
    })
}

impl RangeArgs {
    /// The query these flags ask for: the dates resolved, the site
    /// normalised or found.
    fn query(
        self,
        by: Option<footfall_report::Dimension>,
        limit: Option<usize>,
        min_visitors: u64,
    ) -> Result<footfall_report::Query> {
        let (from, to) = date_range(self.from, self.to)?;
        let store = footfall_report::open(&self.data_dir)?;
        let site = site_or_only(self.site.as_deref(), &store)?;
        Ok(footfall_report::Query {
            store,
            site,
            from,
            to,
            by,
            limit,
            min_visitors,
            event: None,
            prop: None,
            goals: Vec::new(),
            live: None,
        })
    }
}

fn report(args: ReportArgs) -> Result<()> {
    let dimension = args.by.as_ref().map(|b| b.dimension);
    let goals = args
        .goals
        .iter()
        .map(|g| footfall_report::Goal::parse(g))
        .collect::<Result<Vec<_>, _>>()?;
    if !goals.is_empty() && dimension != Some(footfall_report::Dimension::Goal) {
        anyhow::bail!("--goal is for --by goal, which lists each goal's conversions");
    }
    if args.event.is_some() && dimension != Some(footfall_report::Dimension::Prop) {
        anyhow::bail!("--event is for --by prop:KEY, which lists that event's values of KEY");
    }
    let mut query = args.range.query(dimension, args.limit, args.min_visitors)?;
    query.prop = args.by.and_then(|b| b.prop);
    query.event = args.event;
    query.goals = goals;
    let report = footfall_report::run(&query)?;
    print!("{}", footfall_report::render(&report, args.format.into()));
    Ok(())
}

fn privacy_notice(args: &PrivacyNoticeArgs) {
    let serve = &args.serve;
    let settings = privacy_notice::Settings {
        sites: serve
            .sites
            .iter()
            .map(|s| {
                footfall_collector::normalise::site_id(s)
                    .map_or_else(|_| s.trim().to_owned(), |id| id.into_owned())
            })
            .collect(),
        countries: serve.geoip_db.is_some(),
        honor_gpc: serve.honor_gpc,
        rate_cap: (serve.max_views_per_minute > 0).then_some(serve.max_views_per_minute),
        session_timeout: (serve.sessions == Switch::On).then_some(serve.session_timeout),
        event_props: footfall_collector::events::EventProps::only(&serve.event_props)
            .map(|p| p.keys().map(str::to_owned).collect())
            .unwrap_or_else(|_| serve.event_props.clone()),
        shared_salt: serve.salt_store.is_some(),
    };
    let format = match args.format {
        NoticeFormat::Markdown => privacy_notice::Format::Markdown,
        NoticeFormat::Html => privacy_notice::Format::Html,
    };
    print!("{}", privacy_notice::render(&settings, format));
}

fn publish(args: PublishArgs) -> Result<()> {
    // Every row: the threshold, not a limit, decides what is released.
    let state_dir = match (
        &args.state_dir,
        footfall_storage::is_url(&args.range.data_dir),
    ) {
        (Some(dir), _) => dir.clone(),
        (None, false) => PathBuf::from(&args.range.data_dir).join(STATE_DIR),
        (None, true) => anyhow::bail!(
            "--data-dir {} is not on this machine: pass --state-dir, the local folder \
             that keeps this data's privacy-budget ledger",
            args.range.data_dir
        ),
    };
    let query = args.range.query(Some(args.by), None, 0)?;
    let report = footfall_report::run(&query)?;
    let footfall_report::Query { site, from, to, .. } = query;
    let counts = publish::counts_of(&report.rows);
    let mut ledger = publish::Ledger::open(&state_dir)?;
    ledger.check(&site, from, to, args.epsilon, args.epsilon_budget)?;
    let release = publish::release(&counts, args.epsilon, args.delta)?;
    // Spent once drawn, whether or not the file is written.
    ledger.record(&site, from, to, release.epsilon)?;
    let meta = publish::Meta {
        site: &site,
        from,
        to,
        by: &report.key_name,
        count: report.count_name,
    };
    publish::write(&args.out, &meta, &release)?;
    println!(
        "{}: released {} of {} {} values, {} from {from} to {to}: ε {} per day, δ {:.2e}, noise scale {}, threshold {}",
        args.out.display(),
        release.rows.len(),
        counts.len(),
        report.key_name,
        report.count_name,
        release.epsilon,
        release.delta,
        release.scale,
        release.threshold,
    );
    Ok(())
}

fn sites(args: SitesArgs) -> Result<()> {
    let sites = footfall_report::sites(&footfall_report::open(&args.data_dir)?)?;
    print!(
        "{}",
        footfall_report::render_sites(&sites, args.format.into())
    );
    Ok(())
}

fn rollup(args: RollupArgs) -> Result<()> {
    use footfall_aggregator::rollup::{Outcome, rollup_date};
    let store = footfall_report::open(&args.data_dir)?;
    // The data dir's lg_k, as serve recorded it; else the first file's.
    let lg_k = footfall_aggregator::service::recorded_lg_k(&store);
    let today = chrono::Utc::now().date_naive();
    let dates = match args.date {
        Some(d) => vec![d],
        None => footfall_aggregator::rollup::dates_with_partitions(&store)?
            .into_iter()
            .filter(|d| *d < today)
            .collect(),
    };
    if dates.is_empty() {
        println!("no closed day with hourly files in {store}");
    }
    for date in dates {
        if date >= today {
            eprintln!(
                "footfall: warning: {date} is not over yet; a day's rollup is written once, \
                 and files written after it are read beside it"
            );
        }
        let outcomes =
            rollup_date(&store, date, lg_k).with_context(|| format!("rolling up {date}"))?;
        if outcomes.iter().all(|(_, o)| matches!(o, Outcome::NoData)) {
            println!("{date}: no hourly files");
        }
        for (table, outcome) in outcomes {
            match outcome {
                Outcome::Written { written, covers } => println!(
                    "{date} {}: wrote {} ({} rows from {covers} hourly file{})",
                    table.name(),
                    written.at,
                    written.rows,
                    if covers == 1 { "" } else { "s" }
                ),
                Outcome::Exists { late: 0 } => println!("{date} {}: up to date", table.name()),
                Outcome::Exists { late } => println!(
                    "{date} {}: has its rollup; {late} hourly file{} written after it, read beside it",
                    table.name(),
                    if late == 1 { "" } else { "s" }
                ),
                Outcome::NoData => {}
            }
        }
    }
    Ok(())
}

fn dashboard(args: DashboardArgs) -> Result<()> {
    let secret = operator_secret(args.dashboard_password_file.as_deref())?;
    if secret.is_none() && !args.listen.ip().is_loopback() {
        anyhow::bail!(
            "--listen {} is reachable from other machines: set FOOTFALL_DASHBOARD_PASSWORD \
             or --dashboard-password-file, or listen on loopback",
            args.listen
        );
    }
    let store = footfall_report::open(&args.data_dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(async move {
        let shutdown = shutdown_signal()?;
        let listener = TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        let at = listener.local_addr().context("reading the bound address")?;
        tracing::info!(%at, data_dir = %store,
            secret = if secret.is_some() { "required" } else { "none (loopback)" },
            "dashboard listening: open http://{at}/");
        footfall_dashboard::serve(
            listener,
            Dashboard {
                store,
                operations: None,
                live: None,
                secret,
            },
            shutdown,
        )
        .await
        .context("serving the dashboard")
    })
}

fn serve(args: ServeArgs) -> Result<()> {
    no_core_dumps();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.threads {
        anyhow::ensure!(n > 0, "--threads must be at least 1");
        runtime.worker_threads(n);
    }
    let runtime = runtime
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(serve_async(args))
}

/// Makes the serving process non-dumpable: no core dump, and no other
/// process of the same user may attach to it or read its memory. It holds
/// the day's salt and, with sessions on, every open visit's key; a crash
/// must not leave them on disk.
fn no_core_dumps() {
    #[cfg(target_os = "linux")]
    if let Err(e) =
        rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
    {
        tracing::warn!(error = %e, "could not turn core dumps off");
    }
}

/// What a started `serve` runs with: every check passed, the data dir
/// opened and the port bound.
struct Started {
    aggregator: Arc<Aggregator>,
    collector: Arc<Collector>,
    listener: TcpListener,
    /// The operator's listener and its secret, unless `off`.
    operator: Option<(TcpListener, Option<Secret>)>,
    shutdown: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
}

async fn serve_async(args: ServeArgs) -> Result<()> {
    run(start(args).await?).await
}

/// Creates the data dir if it is missing (its parents too); true when this
/// call made the dir itself, so a failed start may take it away again.
fn create_data_dir(dir: &std::path::Path) -> Result<bool> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating data dir {}", dir.display()))?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e).with_context(|| format!("creating data dir {}", dir.display())),
    }
}

/// Where the data goes and where this collector's state stays: a local
/// data dir (and `<data-dir>/_state` unless `--state-dir` says otherwise),
/// or an object store, which needs `--state-dir`.
fn locations(args: &ServeArgs) -> Result<(Option<PathBuf>, PathBuf)> {
    if footfall_storage::is_url(&args.data_dir) {
        let state = args.state_dir.clone().with_context(|| {
            format!(
                "--data-dir {} is not on this machine: pass --state-dir, a local folder for \
                 this collector's lock and checkpoint (crash safety must not wait on a network)",
                args.data_dir
            )
        })?;
        // Checked now, before anything is created: a bad URL is a typo.
        Store::open(&args.data_dir).with_context(|| format!("--data-dir {}", args.data_dir))?;
        Ok((None, state))
    } else {
        let dir = PathBuf::from(&args.data_dir);
        let state = args
            .state_dir
            .clone()
            .unwrap_or_else(|| dir.join(STATE_DIR));
        Ok((Some(dir), state))
    }
}

/// The shared salt store, checked: not inside the data location, and
/// honouring create-only puts (probed with an object of its own).
async fn shared_salts(spec: &str, data: &Store) -> Result<SaltStore> {
    let salts = Store::open(spec).with_context(|| format!("--salt-store {spec}"))?;
    anyhow::ensure!(
        !data.contains(&salts),
        "--salt-store {salts} is inside the data dir {data}: whoever can read the data \
         could read the salts and test whether a known person is in a day's numbers. \
         Give the salts a private location of their own"
    );
    let honoured = salts
        .probe_create_only(footfall_collector::salt::SHARED_DIR)
        .await
        .with_context(|| format!("--salt-store {salts}: probing it"))?;
    anyhow::ensure!(
        honoured,
        "--salt-store {salts} overwrites an object on a create-only put (If-None-Match is \
         ignored): two collectors could each believe their salt won and count visitors twice. \
         Use a store that honours conditional puts"
    );
    let store = SaltStore::shared(salts);
    // Today's now, so the first beacons have it; a store that does not
    // answer is said at once.
    store
        .refresh(unix_now())
        .await
        .map_err(|e| anyhow::anyhow!("--salt-store {spec}: {e}"))?;
    Ok(store)
}

/// Everything that can refuse to start, in an order that touches the disk
/// last: flags and files are checked and the ports are bound before the
/// data dir is created or locked. A start that fails after that leaves
/// nothing behind in a data dir it created: a typo in a flag must not leave
/// a `_state` folder that looks like data.
async fn start(args: ServeArgs) -> Result<Started> {
    let (local_dir, state_dir) = locations(&args)?;
    let allow_list = !args.sites.is_empty();
    let geo = match &args.geoip_db {
        None => None,
        Some(path) => {
            let db = footfall_collector::GeoDb::open(path)
                .with_context(|| format!("--geoip-db {}", path.display()))?;
            tracing::info!(database = %db.describe(), "countries from the GeoIP database");
            Some(Arc::new(db))
        }
    };
    let sites = if args.sites.is_empty() {
        SiteFilter::any()
    } else {
        SiteFilter::only(&args.sites).map_err(|_| {
            anyhow::anyhow!(
                "--site {:?}: each must be a domain name like example.com",
                args.sites
            )
        })?
    };

    let shields = Shields::new(
        args.exclude_ips,
        &args.exclude_pages,
        (args.max_views_per_minute > 0).then_some(args.max_views_per_minute),
    )?;
    let event_props =
        EventProps::only(&args.event_props).map_err(|e| anyhow::anyhow!("--event-prop: {e}"))?;
    let secret = operator_secret(args.dashboard_password_file.as_deref())?;
    if let (Some(addr), None) = (args.dashboard_listen.0, &secret)
        && !addr.ip().is_loopback()
    {
        anyhow::bail!(
            "--dashboard-listen {addr} is reachable from other machines: set \
             FOOTFALL_DASHBOARD_PASSWORD or --dashboard-password-file, or listen on loopback"
        );
    }

    // Signal handlers go in before the port opens: a SIGTERM right after
    // "listening" must stop cleanly, not kill the process.
    let shutdown = shutdown_signal()?;
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let operator = match args.dashboard_listen.0 {
        None => None,
        Some(addr) => Some((
            TcpListener::bind(addr)
                .await
                .with_context(|| format!("--dashboard-listen {addr}"))?,
            secret,
        )),
    };

    let created = match &local_dir {
        Some(dir) => create_data_dir(dir)?,
        None => false,
    };
    // Only a local dir this start made is taken away again on a failure.
    let ours = local_dir.clone().filter(|_| created);
    let store =
        Store::open(&args.data_dir).with_context(|| format!("--data-dir {}", args.data_dir));
    let store = match store {
        Ok(store) => store,
        Err(e) => {
            if let Some(dir) = &ours {
                let _ = std::fs::remove_dir(dir);
            }
            return Err(e);
        }
    };
    // A shared salt store is checked before anything is written: a refused
    // one must leave the data location as it was.
    let shared = match &args.salt_store {
        Some(spec) => match shared_salts(spec, &store).await {
            Ok(salts) => Some(salts),
            Err(e) => {
                if let Some(dir) = &ours {
                    let _ = std::fs::remove_dir(dir);
                }
                return Err(e);
            }
        },
        None => None,
    };
    let aggregator = Aggregator::open(AggregatorConfig {
        store: store.clone(),
        state_dir: state_dir.clone(),
        lg_k: args.lg_k,
        tick: Duration::from_secs(1),
        checkpoint_interval: args.checkpoint_interval,
        flush_interval: args.flush_interval,
        limits: Limits {
            max_pages: args.max_pages,
            // An allow-list bounds the sites already.
            max_sites: if allow_list {
                usize::MAX
            } else {
                args.max_sites
            },
        },
        countries: geo.is_some(),
        sessions: match args.sessions {
            Switch::On => Some(SessionSettings {
                timeout: args.session_timeout.as_secs().max(1) as i64,
                max_visits: args.max_visits,
            }),
            Switch::Off => None,
        },
        // One shard per worker thread, as many as tokio starts.
        shards: args.threads.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        }),
    })
    .with_context(|| format!("opening data dir {store}"));
    let aggregator = match aggregator {
        Ok(a) => Arc::new(a),
        Err(e) => {
            // Another process may have opened the dir meanwhile (this one
            // then failed on its lock): only a dir still empty goes, so
            // nothing of theirs does.
            if let Some(dir) = &ours {
                let _ = std::fs::remove_dir(dir.join(STATE_DIR));
                let _ = std::fs::remove_dir(dir);
            }
            return Err(e);
        }
    };
    // From here the lock is ours: what this start wrote is all there is.
    let undo = |e: anyhow::Error| {
        if let Some(dir) = &ours
            && let Err(rm) = std::fs::remove_dir_all(dir)
        {
            tracing::warn!(error = %rm, data_dir = %dir.display(),
                "could not remove the data dir this failed start created");
        }
        e
    };
    // Warned only once the data dir is ours: a second process refused for
    // the lock should say that alone.
    if !allow_list {
        tracing::warn!(
            "no --site given: counting beacons for any site; set --site to accept only yours"
        );
    }
    let salts = match shared {
        Some(salts) => salts,
        None => SaltStore::persistent(&state_dir).map_err(|e| undo(e.into()))?,
    };
    // A salt left by a run on an earlier day dies now, not at the first beacon.
    salts.expire(unix_now());
    let collector = Arc::new(Collector::new(
        CollectorConfig {
            sites,
            trusted_proxies: args.trusted_proxies,
            max_connections: args.max_connections as usize,
            header_read_timeout: args.header_timeout,
            body_read_timeout: args.body_timeout,
            geo,
            honor_gpc: args.honor_gpc,
            shields: Arc::new(shields),
            event_props,
            ..CollectorConfig::default()
        },
        salts,
        Arc::clone(&aggregator) as Arc<dyn VisitSink>,
    ));
    // Said once the data dir is ours too: tests and people read "listening"
    // as "ready".
    let addr = listener
        .local_addr()
        .context("reading the bound address")
        .map_err(undo)?;
    tracing::info!(%addr, data_dir = %store, state_dir = %state_dir.display(), lg_k = args.lg_k,
        salts = if args.salt_store.is_some() { "shared" } else { "local" }, "listening");
    // Only a browser on this machine can open it as localhost.
    if !allow_list && (addr.ip().is_loopback() || addr.ip().is_unspecified()) {
        tracing::info!(
            "open http://localhost:{}/ in a browser: that page counts its own visit under site localhost",
            addr.port()
        );
    }
    if let Some((operator, secret)) = &operator {
        let at = operator
            .local_addr()
            .context("reading the bound address")
            .map_err(undo)?;
        tracing::info!(
            at = %at,
            secret = if secret.is_some() { "required" } else { "none (loopback)" },
            "dashboard and operator endpoints listening: the dashboard at http://{at}/, \
             the stats API under /api/, /metrics, /healthz"
        );
    }
    Ok(Started {
        aggregator,
        collector,
        listener,
        operator,
        shutdown: Box::pin(shutdown),
    })
}

async fn run(started: Started) -> Result<()> {
    let Started {
        aggregator,
        collector,
        listener,
        operator,
        shutdown,
    } = started;
    let (stop_tx, stop_rx) = watch::channel(());
    let mut ticker_stop = stop_rx.clone();
    let ticker = tokio::spawn(Arc::clone(&aggregator).run_ticker(unix_now, async move {
        let _ = ticker_stop.changed().await;
    }));
    let sweeper = tokio::spawn(sweep(Arc::clone(&collector), stop_rx.clone()));
    let salts = tokio::spawn(refresh_salts(Arc::clone(&collector), stop_rx.clone()));
    let operator = operator.map(|(listener, secret)| {
        let mut stop = stop_rx.clone();
        tokio::spawn(footfall_dashboard::serve(
            listener,
            Dashboard {
                store: aggregator.store().clone(),
                operations: Some(Arc::new(CollectorOperations(
                    Arc::clone(&collector),
                    Arc::clone(&aggregator),
                ))),
                live: Some(Arc::new(AggregatorLive(Arc::clone(&aggregator)))),
                secret,
            },
            async move {
                let _ = stop.changed().await;
            },
        ))
    });

    footfall_collector::serve(listener, Arc::clone(&collector), shutdown)
        .await
        .context("serving HTTP")?;
    tracing::info!("stopped accepting; writing every open bucket");
    let _ = stop_tx.send(());
    let _ = ticker.await;
    let _ = sweeper.await;
    let _ = salts.await;
    if let Some(operator) = operator {
        let _ = operator.await;
    }
    aggregator.flush_all(5).await.context(
        "writing the last aggregates failed; they are kept in the state dir's checkpoint \
         and will be written at the next start",
    )?;
    tracing::info!("all aggregates written; bye");
    Ok(())
}

fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Every five seconds: turns the rate cap's minutes over, and destroys
/// each day's salt within seconds of the day's end, whether or not a beacon
/// arrives to trigger the rotation.
async fn sweep(collector: Arc<Collector>, mut stop: watch::Receiver<()>) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let now = unix_now();
                collector.tick_shields(now);
                collector.expire_salts(now);
            }
            _ = stop.changed() => return,
        }
    }
}

/// The collector's counters and health, as the dashboard listener shows
/// them.
struct CollectorOperations(Arc<Collector>, Arc<Aggregator>);

impl Operations for CollectorOperations {
    fn metrics(&self) -> String {
        self.0.render_metrics()
    }

    fn health(&self) -> Result<(), String> {
        self.0.health()
    }

    fn current_visitors(&self, site: &str) -> u64 {
        self.1.current_visitors(site, unix_now())
    }
}

/// The aggregates not in any file yet, as the dashboard's answers read
/// them: every answer is live.
#[derive(Debug)]
struct AggregatorLive(Arc<Aggregator>);

impl footfall_report::Live for AggregatorLive {
    fn hold(&self) -> Box<dyn footfall_report::LiveView + '_> {
        Box::new(HeldAggregator {
            _writes: self.0.hold_writes(),
            aggregator: &self.0,
        })
    }

    fn sites(&self) -> Vec<String> {
        self.0.open_sites()
    }

    fn counts_visits(&self) -> bool {
        self.0.counts_visits()
    }
}

/// The aggregator with its writes held back.
struct HeldAggregator<'a> {
    _writes: std::sync::MutexGuard<'a, ()>,
    aggregator: &'a Aggregator,
}

impl footfall_report::LiveView for HeldAggregator<'_> {
    fn batches(
        &self,
        table: footfall_schemas::tables::Table,
        from: chrono::NaiveDate,
        to: chrono::NaiveDate,
    ) -> Vec<arrow_array::RecordBatch> {
        self.aggregator
            .unwritten_batches(table, from, to)
            .unwrap_or_else(|e| {
                // Our own schema: a bug, not the data's fault. The files
                // still answer.
                tracing::error!(error = %e, "cannot show the open aggregates");
                Vec::new()
            })
    }

    fn lg_k(&self) -> u8 {
        self.aggregator.lg_k()
    }
}

/// Every five seconds, apart from the sweeper (a store that does not
/// answer must not hold up the rate cap's minutes): fetches shared salts
/// as they are due. Nothing for local salts.
async fn refresh_salts(collector: Arc<Collector>, mut stop: watch::Receiver<()>) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                // Failures are logged (once, until it answers again) and
                // shown by /healthz.
                let _ = collector.refresh_salts(unix_now()).await;
            }
            _ = stop.changed() => return,
        }
    }
}

/// The operator listener's secret: from FOOTFALL_DASHBOARD_PASSWORD, or
/// from the file `--dashboard-password-file` names. Neither is ever logged.
fn operator_secret(file: Option<&std::path::Path>) -> Result<Option<Secret>> {
    // Set but empty is unset, as shells and env files often leave it.
    let from_env = std::env::var("FOOTFALL_DASHBOARD_PASSWORD")
        .ok()
        .filter(|t| !t.trim().is_empty());
    let text = match (from_env, file) {
        (Some(text), _) => text,
        (None, Some(path)) => std::fs::read_to_string(path)
            .with_context(|| format!("--dashboard-password-file {}", path.display()))?,
        (None, None) => return Ok(None),
    };
    Secret::new(&text).map(Some).map_err(|e| anyhow::anyhow!(e))
}

/// A future that completes on SIGINT (Ctrl-C) or SIGTERM. The handlers are
/// registered when this is called, not when the future is first polled.
#[cfg(unix)]
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => tracing::info!("SIGINT received"),
            _ = term.recv() => tracing::info!("SIGTERM received"),
        }
    })
}

#[cfg(not(unix))]
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::info!("Ctrl-C received");
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn the_serving_process_dumps_no_core() {
        no_core_dumps();
        assert_eq!(
            rustix::process::dumpable_behavior().unwrap(),
            rustix::process::DumpableBehavior::NotDumpable
        );
    }

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("ten").is_err());
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("5d").is_err());
    }

    #[test]
    fn trusted_proxies_are_ranges_or_addresses() {
        assert_eq!(parse_net("10.0.0.0/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(parse_net("10.0.0.1").unwrap().to_string(), "10.0.0.1/32");
        assert_eq!(parse_net("::1").unwrap().to_string(), "::1/128");
        assert!(parse_net("localhost").is_err());
    }

    #[test]
    fn listen_takes_addresses_and_host_names() {
        assert_eq!(
            parse_listen("127.0.0.1:8080").unwrap().to_string(),
            "127.0.0.1:8080"
        );
        assert_eq!(
            parse_listen("[::1]:8080").unwrap().to_string(),
            "[::1]:8080"
        );
        assert_eq!(
            parse_listen("localhost:8080").unwrap().to_string(),
            "127.0.0.1:8080"
        );
        for bad in ["localhost", "8080", "nope:x", ""] {
            let e = parse_listen(bad).unwrap_err();
            assert!(e.contains("localhost:8080"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
