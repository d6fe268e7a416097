//! End-to-end tests: the real `footfall` binary on a free loopback port,
//! real HTTP, a real stop, the real Parquet files read back.

mod analyst;
mod browser;
mod dashboard;
mod dashboard_browser;
mod dimensions;
mod events;
mod events_browser;
mod first_minutes;
mod http;
mod pipeline;
mod reliability;
mod shields;
mod support;
mod visits;
