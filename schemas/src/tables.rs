//! The tables footfall writes and the metadata each Parquet file carries.
//!
//! Counts are signed `Int64` on purpose: Spark reads Parquet `UINT64` as
//! `decimal(20,0)`, and Hive, Trino and BigQuery have no unsigned 64-bit
//! integer. A count never nears 2^63.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// Version of the file layout; readers refuse files from a newer one.
///
/// 2 added the `visits` table and the visit columns of `pages` and
/// `sources`; a reader of a version-1 file treats them as absent. 3 added
/// the `events` and `event_props` tables (custom events); no column of an
/// older table changed.
pub const SCHEMA_VERSION: u32 = 3;

/// Name of the folder under the data dir that holds state (salts, later
/// checkpoints). Spark and Hive skip paths starting with `_`, and nothing in
/// it ends in `.parquet`, so no reader's glob picks it up.
pub const STATE_DIR: &str = "_state";

/// The DataSketches HLL target type footfall writes, as the libraries name it.
pub const HLL_TYPE: &str = "HLL_4";

/// How long one salt lives, which is how long one person hashes to the same
/// visitor key. A union of sketches inside one window counts people; across
/// windows it counts visitor-windows.
pub const UNIQUENESS_WINDOW: &str = "day";

/// Default `lg_k`: 4096 registers, about 1.6 % relative standard error.
pub const DEFAULT_LG_K: u8 = 12;

/// The page (and referrer) a view counts under once its (site, hour) has
/// `max_pages` of them, and the site once an hour has `max_sites` sites.
/// Neither can be a real page (pages start with `/`), referrer or site (not
/// a domain name). Readers see it as a value like any other.
pub const OVERFLOW: &str = "(other)";

/// Key-value metadata keys, one constant each so writers and readers agree.
pub mod meta {
    /// [`super::SCHEMA_VERSION`] as a decimal string.
    pub const SCHEMA_VERSION: &str = "footfall.schema_version";
    /// The table's name (`pages`, ...).
    pub const TABLE: &str = "footfall.table";
    /// `lg_k` of every sketch in the file, as a decimal string.
    pub const HLL_LG_K: &str = "footfall.hll.lg_k";
    /// The sketches' target type, [`super::HLL_TYPE`].
    pub const HLL_TYPE: &str = "footfall.hll.type";
    /// [`super::UNIQUENESS_WINDOW`].
    pub const UNIQUENESS_WINDOW: &str = "footfall.uniqueness_window";
    /// In a daily rollup: the names of the hourly files it was built from
    /// (the file names in `<table>/date=D/`, sorted, joined by `,`). A
    /// rollup stands for its day only while that is still the list present.
    pub const ROLLUP_COVERS: &str = "footfall.rollup.covers";
}

/// The tables footfall writes. Each lives in `<data-dir>/<name>/date=YYYY-MM-DD/`.
///
/// Every table has the same shape: `site`, `hour`, its dimension columns,
/// its counts, `visitors`. The one rule for readers holds for all of them:
/// `SUM` the counts and union the sketches of rows with the same key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    /// Views, entries and visitors per (site, hour, page).
    Pages,
    /// Entries and visitors per (site, hour, referrer host, campaign):
    /// landings only, since internal navigation is not a source.
    Sources,
    /// Views and visitors per (site, hour, browser, os, device).
    Devices,
    /// Views and visitors per (site, hour, country); only with a GeoIP
    /// database.
    Countries,
    /// Visits per (site, hour the visit started, entry page): how many, how
    /// many bounced, their pageviews and summed durations, and the visitors
    /// who started them. Written when a visit ends; absent when sessions
    /// are off.
    Visits,
    /// Custom events and their visitors per (site, hour, event name, page).
    Events,
    /// Custom events and their visitors per (site, hour, event name,
    /// property key, property value), for the keys the owner allowed only.
    EventProps,
}

/// A count column.
///
/// The visit counts (`Exits` onwards) belong to the hour the visit
/// started, and are written when it ends, in a later file than its views.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    /// Page views.
    Views,
    /// Landings: views whose referrer is absent or another site.
    Entries,
    /// Visits that ended on the page.
    Exits,
    /// Engaged milliseconds on the page, summed over visits.
    EngagedMs,
    /// (visit, page) pairs with at least one engagement report.
    Engagements,
    /// Sum over (visit, page) pairs of the deepest scroll seen, in percent.
    ScrollSum,
    /// (visit, page) pairs whose scroll depth is known.
    Scrolls,
    /// Visits.
    Visits,
    /// Visits of fewer than two pageviews (and, once custom events are
    /// counted, no interactive one).
    Bounces,
    /// The pageviews of the visits.
    Pageviews,
    /// Summed visit durations (last activity minus start), in seconds.
    DurationS,
    /// Custom events.
    Events,
}

impl Count {
    /// The column name.
    pub fn name(self) -> &'static str {
        match self {
            Count::Views => "views",
            Count::Entries => "entries",
            Count::Exits => "exits",
            Count::EngagedMs => "engaged_ms",
            Count::Engagements => "engagements",
            Count::ScrollSum => "scroll_sum",
            Count::Scrolls => "scrolls",
            Count::Visits => "visits",
            Count::Bounces => "bounces",
            Count::Pageviews => "pageviews",
            Count::DurationS => "duration_s",
            Count::Events => "events",
        }
    }

    /// True for the counts that a visit's end adds (absent in a file of
    /// schema version 1, and when sessions are off).
    pub fn of_visits(self) -> bool {
        !matches!(self, Count::Views | Count::Entries | Count::Events)
    }
}

/// The most count columns a table has (`pages`: seven).
pub const MAX_COUNTS: usize = 7;

impl Table {
    /// Every table, in the order they are written.
    pub const ALL: [Table; 7] = [
        Table::Pages,
        Table::Sources,
        Table::Devices,
        Table::Countries,
        Table::Visits,
        Table::Events,
        Table::EventProps,
    ];

    /// The folder and metadata name of the table.
    pub fn name(self) -> &'static str {
        match self {
            Table::Pages => "pages",
            Table::Sources => "sources",
            Table::Devices => "devices",
            Table::Countries => "countries",
            Table::Visits => "visits",
            Table::Events => "events",
            Table::EventProps => "event_props",
        }
    }

    /// The dimension columns between `hour` and the counts, and whether
    /// each may be null. All are Utf8.
    pub fn dims(self) -> &'static [(&'static str, bool)] {
        match self {
            Table::Pages => &[("page", false)],
            Table::Sources => &[
                ("referrer", true),
                ("utm_source", true),
                ("utm_medium", true),
                ("utm_campaign", true),
            ],
            Table::Devices => &[("browser", false), ("os", false), ("device", false)],
            Table::Countries => &[("country", true)],
            Table::Visits => &[("entry_page", false)],
            Table::Events => &[("name", false), ("page", false)],
            Table::EventProps => &[("name", false), ("key", false), ("value", false)],
        }
    }

    /// The count columns after the dimensions, at most [`MAX_COUNTS`].
    pub fn counts(self) -> &'static [Count] {
        match self {
            Table::Pages => &[
                Count::Views,
                Count::Entries,
                Count::Exits,
                Count::EngagedMs,
                Count::Engagements,
                Count::ScrollSum,
                Count::Scrolls,
            ],
            Table::Sources => &[
                Count::Entries,
                Count::Visits,
                Count::Bounces,
                Count::Pageviews,
                Count::DurationS,
            ],
            Table::Devices | Table::Countries => &[Count::Views],
            Table::Visits => &[
                Count::Visits,
                Count::Bounces,
                Count::Pageviews,
                Count::DurationS,
            ],
            Table::Events | Table::EventProps => &[Count::Events],
        }
    }

    /// Where `count` is among [`Table::counts`], if the table has it.
    pub fn count_index(self, count: Count) -> Option<usize> {
        self.counts().iter().position(|&c| c == count)
    }

    /// The folder and metadata name of the table's daily rollup
    /// (`pages_daily`): the same rows summed per UTC day.
    pub fn daily_name(self) -> String {
        format!("{}_daily", self.name())
    }

    /// The table's Arrow schema, with the file metadata for `lg_k` attached.
    pub fn schema(self, lg_k: u8) -> SchemaRef {
        self.schema_with(hour_field(), self.metadata(lg_k))
    }

    /// The daily rollup's schema: `day` (a date) where the table has `hour`.
    /// Its metadata is the table's, named as the rollup, plus
    /// [`meta::ROLLUP_COVERS`].
    pub fn daily_schema(self, lg_k: u8, covers: &str) -> SchemaRef {
        let mut metadata = self.metadata(lg_k);
        metadata.insert(meta::TABLE.into(), self.daily_name());
        metadata.insert(meta::ROLLUP_COVERS.into(), covers.into());
        self.schema_with(Field::new("day", DataType::Date32, false), metadata)
    }

    fn schema_with(self, time: Field, metadata: HashMap<String, String>) -> SchemaRef {
        let mut fields = vec![Field::new("site", DataType::Utf8, false), time];
        for &(name, nullable) in self.dims() {
            fields.push(Field::new(name, DataType::Utf8, nullable));
        }
        for count in self.counts() {
            fields.push(Field::new(count.name(), DataType::Int64, false));
        }
        fields.push(Field::new("visitors", DataType::Binary, false));
        Arc::new(Schema::new_with_metadata(fields, metadata))
    }

    /// The key-value metadata every file of this table carries.
    pub fn metadata(self, lg_k: u8) -> HashMap<String, String> {
        HashMap::from([
            (meta::SCHEMA_VERSION.into(), SCHEMA_VERSION.to_string()),
            (meta::TABLE.into(), self.name().into()),
            (meta::HLL_LG_K.into(), lg_k.to_string()),
            (meta::HLL_TYPE.into(), HLL_TYPE.into()),
            (meta::UNIQUENESS_WINDOW.into(), UNIQUENESS_WINDOW.into()),
        ])
    }
}

/// The start of the UTC hour, microseconds: the unit Spark and DuckDB use
/// natively, with the UTC zone so every engine reads an instant.
fn hour_field() -> Field {
    Field::new(
        "hour",
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        false,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_schema_has_the_documented_columns() {
        let schema = Table::Pages.schema(DEFAULT_LG_K);
        let got: Vec<(&str, &DataType)> = schema
            .fields()
            .iter()
            .map(|f| (f.name().as_str(), f.data_type()))
            .collect();
        let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        assert_eq!(
            got,
            vec![
                ("site", &DataType::Utf8),
                ("hour", &ts),
                ("page", &DataType::Utf8),
                ("views", &DataType::Int64),
                ("entries", &DataType::Int64),
                ("exits", &DataType::Int64),
                ("engaged_ms", &DataType::Int64),
                ("engagements", &DataType::Int64),
                ("scroll_sum", &DataType::Int64),
                ("scrolls", &DataType::Int64),
                ("visitors", &DataType::Binary),
            ]
        );
        assert_eq!(schema.metadata()[meta::HLL_LG_K], "12");
        assert_eq!(schema.metadata()[meta::HLL_TYPE], "HLL_4");
        assert_eq!(schema.metadata()[meta::SCHEMA_VERSION], "3");
    }

    #[test]
    fn every_table_has_site_hour_dims_counts_visitors() {
        let columns = |t: Table| -> Vec<String> {
            t.schema(12)
                .fields()
                .iter()
                .map(|f| format!("{}{}", f.name(), if f.is_nullable() { "?" } else { "" }))
                .collect()
        };
        assert_eq!(
            columns(Table::Sources),
            [
                "site",
                "hour",
                "referrer?",
                "utm_source?",
                "utm_medium?",
                "utm_campaign?",
                "entries",
                "visits",
                "bounces",
                "pageviews",
                "duration_s",
                "visitors"
            ]
        );
        assert_eq!(
            columns(Table::Visits),
            [
                "site",
                "hour",
                "entry_page",
                "visits",
                "bounces",
                "pageviews",
                "duration_s",
                "visitors"
            ]
        );
        assert_eq!(
            columns(Table::Devices),
            [
                "site", "hour", "browser", "os", "device", "views", "visitors"
            ]
        );
        assert_eq!(
            columns(Table::Countries),
            ["site", "hour", "country?", "views", "visitors"]
        );
        assert_eq!(
            columns(Table::Events),
            ["site", "hour", "name", "page", "events", "visitors"]
        );
        assert_eq!(
            columns(Table::EventProps),
            ["site", "hour", "name", "key", "value", "events", "visitors"]
        );
        for t in Table::ALL {
            assert_eq!(t.schema(12).metadata()[meta::TABLE], t.name());
            assert!(t.counts().len() <= MAX_COUNTS);
        }
    }
}
