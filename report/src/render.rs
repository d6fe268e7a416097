//! The three output formats of a report.

use crate::{Report, Row, SiteSpan};

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns for a terminal, with a note on what visitors mean.
    Table,
    /// A header row, then one row per key.
    Csv,
    /// An array of objects with exactly the key column, the count
    /// (`views`, or `entries` for sources), `visitors` and the report's
    /// metrics (`null` where one cannot be computed).
    Json,
}

/// Renders a report.
pub fn render(report: &Report, format: Format) -> String {
    let (key, count) = (report.key_name.as_str(), report.count_name);
    let mut columns = vec![key, count];
    if report.shows_visitors {
        columns.push("visitors");
    }
    columns.extend(report.metrics.iter().map(|m| m.name()));
    // Every cell but the key's, as text: a metric with its decimals, or
    // empty when it cannot be computed.
    let cells = |r: &Row| -> Vec<Option<String>> {
        let mut cells = vec![Some(r.count.to_string())];
        if report.shows_visitors {
            cells.push(Some(r.visitors.to_string()));
        }
        for (m, v) in report.metrics.iter().zip(&r.metrics) {
            cells.push(v.map(|v| format!("{v:.*}", m.decimals())));
        }
        cells
    };
    match format {
        Format::Json => {
            let rows: Vec<serde_json::Value> = report
                .rows
                .iter()
                .map(|r| {
                    let mut object = serde_json::Map::new();
                    object.insert(key.into(), r.key.clone().into());
                    object.insert(count.into(), r.count.into());
                    if report.shows_visitors {
                        object.insert("visitors".into(), r.visitors.into());
                    }
                    for (m, v) in report.metrics.iter().zip(&r.metrics) {
                        let value = match v {
                            None => serde_json::Value::Null,
                            Some(v) if m.decimals() == 0 => (*v as i64).into(),
                            Some(v) => (*v).into(),
                        };
                        object.insert(m.name().into(), value);
                    }
                    serde_json::Value::Object(object)
                })
                .collect();
            let mut s = serde_json::to_string_pretty(&rows).expect("JSON of strings and numbers");
            s.push('\n');
            s
        }
        Format::Csv => {
            // A null is an empty field, as every CSV reader takes it.
            let mut s = columns.join(",");
            s.push('\n');
            for r in &report.rows {
                let mut fields = vec![csv_field(r.key.as_deref().unwrap_or(""))];
                fields.extend(cells(r).into_iter().map(Option::unwrap_or_default));
                s.push_str(&fields.join(","));
                s.push('\n');
            }
            s
        }
        Format::Table => {
            let shown = |r: &Row| {
                r.key
                    .clone()
                    .unwrap_or_else(|| report.null_label.to_owned())
            };
            let lines: Vec<Vec<String>> = report
                .rows
                .iter()
                .map(|r| {
                    let mut line = vec![shown(r)];
                    line.extend(
                        cells(r)
                            .into_iter()
                            .map(|c| c.unwrap_or_else(|| "-".into())),
                    );
                    line
                })
                .collect();
            let widths: Vec<usize> = (0..columns.len())
                .map(|i| {
                    lines
                        .iter()
                        .map(|l| l[i].chars().count())
                        .chain([columns[i].len()])
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            let line = |cells: &[&str]| {
                let mut out = String::new();
                for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
                    if i == 0 {
                        out.push_str(&format!("{cell:<w$}"));
                    } else {
                        out.push_str(&format!("  {cell:>w$}"));
                    }
                }
                out.push('\n');
                out
            };
            let mut s = line(&columns);
            for l in &lines {
                let cells: Vec<&str> = l.iter().map(String::as_str).collect();
                s.push_str(&line(&cells));
            }
            if report.rows.is_empty() && report.suppressed == 0 {
                s.push_str("(no views in this range)\n");
            }
            if report.suppressed > 0 {
                s.push_str(&format!(
                    "\n{} row{} of fewer than {} visitors not shown: counted in (other), shown only if it reaches {}.\n",
                    report.suppressed,
                    if report.suppressed == 1 { "" } else { "s" },
                    report.min_visitors,
                    report.min_visitors,
                ));
            }
            if report.spans_windows && report.shows_visitors {
                s.push_str(
                    "\nvisitors: distinct within one UTC day; over several days a person counts once per day (visitor-days).\n",
                );
            }
            s
        }
    }
}

/// Renders the list of sites with data: `site`, `first`, `last` (UTC days).
pub fn render_sites(sites: &[SiteSpan], format: Format) -> String {
    let day = |d: chrono::NaiveDate| d.format("%Y-%m-%d").to_string();
    match format {
        Format::Json => {
            let rows: Vec<serde_json::Value> = sites
                .iter()
                .map(|s| serde_json::json!({"site": s.site, "first": day(s.first), "last": day(s.last)}))
                .collect();
            let mut s = serde_json::to_string_pretty(&rows).expect("JSON of strings");
            s.push('\n');
            s
        }
        Format::Csv => {
            let mut out = String::from("site,first,last\n");
            for s in sites {
                out.push_str(&format!(
                    "{},{},{}\n",
                    csv_field(&s.site),
                    day(s.first),
                    day(s.last)
                ));
            }
            out
        }
        Format::Table => {
            let width = sites
                .iter()
                .map(|s| s.site.chars().count())
                .chain(["site".len()])
                .max()
                .unwrap_or(4);
            let mut out = format!("{:<width$}  {:<10}  {:<10}\n", "site", "first", "last");
            for s in sites {
                out.push_str(&format!(
                    "{:<width$}  {}  {}\n",
                    s.site,
                    day(s.first),
                    day(s.last)
                ));
            }
            if sites.is_empty() {
                out.push_str("(no site has data yet)\n");
            }
            out
        }
    }
}

/// A CSV field as every reader takes it, quoted where needed, and never a
/// formula a spreadsheet would run.
pub fn csv_field(s: &str) -> String {
    // A spreadsheet would run a cell starting `=`, `+`, `-` or `@` as a
    // formula, and campaign values are whatever a link said: a leading `'`
    // keeps it text (OWASP's advice for CSV export).
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_what_needs_it() {
        assert_eq!(csv_field("/a,b"), "\"/a,b\"");
        assert_eq!(csv_field("/\"q\""), "\"/\"\"q\"\"\"");
        assert_eq!(csv_field("/plain"), "/plain");
        assert_eq!(csv_field("=cmd|'/c calc'!A1"), "'=cmd|'/c calc'!A1");
        assert_eq!(csv_field("@SUM(1,2)"), "\"'@SUM(1,2)\"");
    }
}
