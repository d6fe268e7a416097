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
use footfall_aggregator::{Aggregator, AggregatorConfig};
use footfall_collector::{Collector, CollectorConfig, SaltStore, SiteFilter};
use footfall_schemas::VisitSink;
use footfall_schemas::tables::{DEFAULT_LG_K, STATE_DIR};
use ipnet::IpNet;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing_subscriber::EnvFilter;

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
    Serve(ServeArgs),
    /// Top pages or site totals for a date range, merging counts and
    /// sketches from the Parquet files.
    Report(ReportArgs),
}

#[derive(Debug, clap::Args)]
struct ReportArgs {
    /// Folder that `serve` writes to.
    #[arg(long, env = "FOOTFALL_DATA_DIR", default_value = "./footfall-data")]
    data_dir: PathBuf,

    /// The site to report on.
    #[arg(long)]
    site: String,

    /// First UTC day, inclusive (YYYY-MM-DD) [default: today].
    #[arg(long)]
    from: Option<chrono::NaiveDate>,

    /// Last UTC day, inclusive (YYYY-MM-DD) [default: --from].
    #[arg(long)]
    to: Option<chrono::NaiveDate>,

    /// Break down by this dimension; without it, one row of site totals.
    #[arg(long, value_enum)]
    by: Option<ByArg>,

    /// Show at most N rows.
    #[arg(long, value_name = "N")]
    limit: Option<usize>,

    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: FormatArg,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ByArg {
    Page,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum FormatArg {
    Table,
    Csv,
    Json,
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "FOOTFALL_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,

    /// Folder for the Parquet output and the `_state` folder.
    #[arg(long, env = "FOOTFALL_DATA_DIR", default_value = "./footfall-data")]
    data_dir: PathBuf,

    /// Count only these sites (repeatable, or comma-separated in the
    /// variable). None: accept any site.
    #[arg(
        long = "site",
        env = "FOOTFALL_SITE",
        value_name = "DOMAIN",
        value_delimiter = ','
    )]
    sites: Vec<String>,

    /// Peers (CIDR, repeatable) whose `X-Forwarded-For` names the client.
    /// Anyone else's header is ignored, since it would let them forge uniques.
    #[arg(
        long = "trusted-proxy",
        env = "FOOTFALL_TRUSTED_PROXY",
        value_name = "CIDR",
        value_delimiter = ','
    )]
    trusted_proxies: Vec<IpNet>,

    /// Tokio worker threads [default: all cores].
    #[arg(long, env = "FOOTFALL_THREADS")]
    threads: Option<usize>,

    /// HLL sketch precision: 2^lg_k registers, relative error about
    /// 1.04/sqrt(2^lg_k). One value per data dir.
    #[arg(long, env = "FOOTFALL_LG_K", default_value_t = DEFAULT_LG_K,
          value_parser = clap::value_parser!(u8).range(4..=21))]
    lg_k: u8,
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
        Command::Serve(args) => serve(args).inspect_err(|e| tracing::error!("{e:#}")),
        // A command's errors go to the person who typed it.
        Command::Report(args) => report(args).inspect_err(|e| eprintln!("footfall: error: {e:#}")),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(_) => std::process::ExitCode::FAILURE,
    }
}

fn report(args: ReportArgs) -> Result<()> {
    let from = args.from.unwrap_or_else(|| chrono::Utc::now().date_naive());
    let query = footfall_report::Query {
        site: footfall_collector::normalise::site_id(&args.site)
            .map_err(|e| anyhow::anyhow!("--site {:?}: {e}", args.site))?,
        data_dir: args.data_dir,
        from,
        to: args.to.unwrap_or(from),
        by: args.by.map(|ByArg::Page| footfall_report::Dimension::Page),
        limit: args.limit,
    };
    let report = footfall_report::run(&query)?;
    let format = match args.format {
        FormatArg::Table => footfall_report::Format::Table,
        FormatArg::Csv => footfall_report::Format::Csv,
        FormatArg::Json => footfall_report::Format::Json,
    };
    print!("{}", footfall_report::render(&report, format));
    Ok(())
}

fn serve(args: ServeArgs) -> Result<()> {
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

async fn serve_async(args: ServeArgs) -> Result<()> {
    let sites = if args.sites.is_empty() {
        tracing::warn!(
            "no --site given: counting beacons for any site; set --site to accept only yours"
        );
        SiteFilter::any()
    } else {
        SiteFilter::only(&args.sites)
            .map_err(|e| anyhow::anyhow!("--site {:?}: {e}", args.sites))?
    };

    let aggregator = Arc::new(
        Aggregator::open(AggregatorConfig {
            data_dir: args.data_dir.clone(),
            lg_k: args.lg_k,
            tick: Duration::from_secs(5),
        })
        .with_context(|| format!("opening data dir {}", args.data_dir.display()))?,
    );
    let salts = SaltStore::persistent(&args.data_dir.join(STATE_DIR))?;
    let collector = Arc::new(Collector::new(
        CollectorConfig {
            sites,
            trusted_proxies: args.trusted_proxies,
            ..CollectorConfig::default()
        },
        salts,
        Arc::clone(&aggregator) as Arc<dyn VisitSink>,
    ));

    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    tracing::info!(%addr, data_dir = %args.data_dir.display(), lg_k = args.lg_k, "listening");

    let (stop_tx, mut stop_rx) = watch::channel(());
    let ticker = tokio::spawn(Arc::clone(&aggregator).run_ticker(async move {
        let _ = stop_rx.changed().await;
    }));

    footfall_collector::serve(listener, collector, shutdown_signal())
        .await
        .context("serving HTTP")?;
    tracing::info!("stopped accepting; writing every open bucket");
    let _ = stop_tx.send(());
    let _ = ticker.await;
    aggregator
        .flush_all(5)
        .await
        .context("writing the last aggregates failed; they are lost")?;
    tracing::info!("all aggregates written; bye");
    Ok(())
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received"),
        () = term => tracing::info!("SIGTERM received"),
    }
}
