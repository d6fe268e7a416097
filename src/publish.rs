//! `footfall publish`: a differentially private release of a report's
//! counts, for numbers that leave the owner's hands.
//!
//! The counts come from the same query engine as `footfall report`; the
//! noise and the release threshold come from the OpenDP library
//! (`make_laplace_threshold`: discrete Laplace noise on every count, and
//! only keys whose noisy count reaches the threshold released, so a key
//! that only a few views have cannot appear by chance). Its privacy map
//! gives the (ε, δ) this module reports; nothing here adds noise itself.
//!
//! The unit of privacy is one page view: footfall stores aggregates only,
//! and no visitor's views are bounded at collection time, so a release
//! protects each single view (event-level privacy), not a visitor's whole
//! day. Each view is in exactly one day and one key, so a release spends
//! its ε on every day it covers; the ledger in `_state/privacy-budget`
//! (numbers and site ids only) refuses a release that would take a day of
//! a site past `--epsilon-budget`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use chrono::NaiveDate;
use opendp::domains::{AtomDomain, MapDomain};
use opendp::measurements::make_laplace_threshold;
use opendp::metrics::{AbsoluteDistance, L01InfDistance};

/// What one release is made of.
#[derive(Debug, Clone)]
pub struct Release {
    /// Released (noisy) counts per key, every one at least `threshold`.
    pub rows: Vec<(String, i64)>,
    pub epsilon: f64,
    pub delta: f64,
    /// Noise scale of the discrete Laplace distribution.
    pub scale: f64,
    /// Noisy counts below this were not released.
    pub threshold: i64,
}

/// The noise scale and threshold for `epsilon` and at most `delta`, for
/// counts one view changes by one in one key.
pub fn calibrate(epsilon: f64, delta: f64) -> Result<(f64, i64)> {
    if !(epsilon.is_finite() && epsilon > 0.0) {
        bail!("--epsilon must be a number above 0, like 1 or 0.5");
    }
    if !(delta > 0.0 && delta < 1.0) {
        bail!("--delta must be above 0 and below 1, like 1e-6");
    }
    // One view: one key (l0 = 1), by one (l1 = l∞ = 1). ε is 1/scale.
    let scale = 1.0 / epsilon;
    let delta_at = |threshold: i64| -> Result<f64> {
        let (_, d) = measurement(scale, threshold)?
            .map(&(1, 1, 1))
            .map_err(|e| anyhow::anyhow!("OpenDP: {e}"))?;
        Ok(d)
    };
    // The smallest threshold whose δ is within the bound: δ falls as the
    // threshold grows, so a doubling search and then a bisection.
    let mut hi = 2;
    while delta_at(hi)? > delta {
        hi = hi.checked_mul(2).context("no threshold reaches that δ")?;
    }
    let mut lo = hi / 2;
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if delta_at(mid)? > delta {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok((scale, hi))
}

type Counts = HashMap<String, i64>;

/// OpenDP's measurement: counts per key in, noisy counts of the keys that
/// reach the threshold out, under approximate (ε, δ) differential privacy.
type Mechanism = opendp::core::Measurement<
    MapDomain<AtomDomain<String>, AtomDomain<i64>>,
    L01InfDistance<AbsoluteDistance<i64>>,
    opendp::measures::Approximate<opendp::measures::MaxDivergence>,
    Counts,
>;

fn measurement(scale: f64, threshold: i64) -> Result<Mechanism> {
    let domain = MapDomain::new(
        AtomDomain::<String>::default(),
        AtomDomain::<i64>::new_non_nan(),
    );
    let metric = L01InfDistance::<AbsoluteDistance<i64>>::default();
    make_laplace_threshold(domain, metric, scale, threshold, None)
        .map_err(|e| anyhow::anyhow!("OpenDP: {e}"))
}

/// Releases `counts` with ε and at most δ. Keys are the report's values;
/// a null value (direct traffic, no campaign) is the empty string.
pub fn release(counts: &Counts, epsilon: f64, delta: f64) -> Result<Release> {
    let (scale, threshold) = calibrate(epsilon, delta)?;
    let m = measurement(scale, threshold)?;
    let (spent, d) = m
        .map(&(1, 1, 1))
        .map_err(|e| anyhow::anyhow!("OpenDP: {e}"))?;
    let noisy = m
        .invoke(counts)
        .map_err(|e| anyhow::anyhow!("OpenDP: {e}"))?;
    let mut rows: Vec<(String, i64)> = noisy.into_iter().collect();
    rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Ok(Release {
        rows,
        epsilon: spent,
        delta: d,
        scale,
        threshold,
    })
}

/// The per-site, per-day ε spent so far, in `<data-dir>/_state/privacy-budget`.
#[derive(Debug)]
pub struct Ledger {
    path: PathBuf,
    /// (site, day) → ε spent.
    spent: HashMap<(String, NaiveDate), f64>,
}

impl Ledger {
    /// The ledger in `state_dir` (empty if none was kept yet).
    pub fn open(state_dir: &Path) -> Result<Self> {
        let path = state_dir.join("privacy-budget");
        let mut spent = HashMap::new();
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                for (i, line) in text.lines().enumerate() {
                    let bad =
                        || format!("{} line {}: not `site date epsilon`", path.display(), i + 1);
                    let mut parts = line.split_whitespace();
                    let (Some(site), Some(day), Some(eps), None) =
                        (parts.next(), parts.next(), parts.next(), parts.next())
                    else {
                        bail!(bad());
                    };
                    let day = NaiveDate::parse_from_str(day, "%Y-%m-%d").with_context(bad)?;
                    let eps: f64 = eps.parse().with_context(bad)?;
                    *spent.entry((site.to_owned(), day)).or_insert(0.0) += eps;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        }
        Ok(Self { path, spent })
    }

    /// ε already spent on `site`'s `day`.
    pub fn spent(&self, site: &str, day: NaiveDate) -> f64 {
        self.spent
            .get(&(site.to_owned(), day))
            .copied()
            .unwrap_or(0.0)
    }

    /// Refuses, naming the day, a spend that takes any day past `budget`.
    pub fn check(
        &self,
        site: &str,
        from: NaiveDate,
        to: NaiveDate,
        eps: f64,
        budget: f64,
    ) -> Result<()> {
        for day in from.iter_days().take_while(|d| *d <= to) {
            let after = self.spent(site, day) + eps;
            // A rounding hair over the budget is still within it.
            if after > budget * (1.0 + 1e-9) {
                bail!(
                    "{site} {day}: ε {:.4} spent already, {eps} more would pass --epsilon-budget {budget}",
                    self.spent(site, day)
                );
            }
        }
        Ok(())
    }

    /// Records the spend, atomically (a temporary file renamed over the
    /// ledger), before the release is written: a release whose file was
    /// lost has still been drawn.
    pub fn record(&mut self, site: &str, from: NaiveDate, to: NaiveDate, eps: f64) -> Result<()> {
        for day in from.iter_days().take_while(|d| *d <= to) {
            *self.spent.entry((site.to_owned(), day)).or_insert(0.0) += eps;
        }
        let mut entries: Vec<_> = self.spent.iter().collect();
        entries.sort_by(|a, b| a.0.cmp(b.0));
        let mut text = String::new();
        for ((site, day), eps) in entries {
            let _ = writeln!(text, "{site} {day} {eps}");
        }
        let dir = self.path.parent().expect("the ledger is in _state");
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &self.path)
            .with_context(|| format!("writing {}", self.path.display()))
    }
}

/// What a release file says about itself.
#[derive(Debug, Clone)]
pub struct Meta<'a> {
    pub site: &'a str,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub by: &'a str,
    pub count: &'a str,
}

fn meta_pairs(m: &Meta<'_>, r: &Release) -> Vec<(&'static str, String)> {
    vec![
        ("site", m.site.to_owned()),
        ("from", m.from.to_string()),
        ("to", m.to.to_string()),
        ("by", m.by.to_owned()),
        ("count", m.count.to_owned()),
        (
            "mechanism",
            "OpenDP make_laplace_threshold (discrete Laplace noise, release threshold)".to_owned(),
        ),
        ("unit_of_privacy", "one page view (event-level)".to_owned()),
        (
            "contribution_bound",
            "one view changes one key's count by one".to_owned(),
        ),
        ("epsilon", r.epsilon.to_string()),
        ("delta", r.delta.to_string()),
        ("noise_scale", r.scale.to_string()),
        ("threshold", r.threshold.to_string()),
    ]
}

/// Writes the release as CSV (parameters in leading `#` lines), JSON
/// (`{"privacy": {...}, "rows": [...]}`) or Parquet (parameters in the
/// file's key-value metadata), by `out`'s extension.
pub fn write(out: &Path, m: &Meta<'_>, r: &Release) -> Result<()> {
    let ext = out.extension().and_then(|e| e.to_str()).unwrap_or("");
    let bytes = match ext {
        "csv" => {
            let mut s = String::new();
            for (k, v) in meta_pairs(m, r) {
                let _ = writeln!(s, "# {k}: {v}");
            }
            let _ = writeln!(s, "{},{}", m.by, m.count);
            for (key, n) in &r.rows {
                let _ = writeln!(s, "{},{n}", footfall_report::csv_field(key));
            }
            s.into_bytes()
        }
        "json" => {
            let privacy: serde_json::Map<String, serde_json::Value> = meta_pairs(m, r)
                .into_iter()
                .map(|(k, v)| (k.to_owned(), serde_json::Value::String(v)))
                .collect();
            let rows: Vec<serde_json::Value> = r
                .rows
                .iter()
                .map(|(key, n)| serde_json::json!({ m.by: key, m.count: n }))
                .collect();
            let mut s = serde_json::to_string_pretty(
                &serde_json::json!({"privacy": privacy, "rows": rows}),
            )?;
            s.push('\n');
            s.into_bytes()
        }
        "parquet" => parquet_bytes(m, r)?,
        _ => bail!(
            "--out {}: the name must end in .csv, .json or .parquet",
            out.display()
        ),
    };
    std::fs::write(out, bytes).with_context(|| format!("writing {}", out.display()))
}

fn parquet_bytes(m: &Meta<'_>, r: &Release) -> Result<Vec<u8>> {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
    use arrow_schema::{DataType, Field, Schema};
    use parquet::arrow::ArrowWriter;
    use parquet::file::metadata::KeyValue;
    use parquet::file::properties::WriterProperties;

    let schema = Arc::new(Schema::new(vec![
        Field::new(m.by, DataType::Utf8, false),
        Field::new(m.count, DataType::Int64, false),
    ]));
    let keys: ArrayRef = Arc::new(StringArray::from_iter_values(
        r.rows.iter().map(|(k, _)| k.as_str()),
    ));
    let counts: ArrayRef = Arc::new(Int64Array::from_iter_values(r.rows.iter().map(|(_, n)| *n)));
    let batch = RecordBatch::try_new(Arc::clone(&schema), vec![keys, counts])?;
    let kv = meta_pairs(m, r)
        .into_iter()
        .map(|(k, v)| KeyValue::new(format!("footfall.release.{k}"), v))
        .collect();
    let props = WriterProperties::builder()
        .set_key_value_metadata(Some(kv))
        .build();
    let mut buf = Vec::new();
    let mut w = ArrowWriter::try_new(&mut buf, schema, Some(props))?;
    w.write(&batch)?;
    w.close()?;
    Ok(buf)
}

/// The report's rows as the counts to release: a null key is the empty
/// string, and the overflow row `(other)` is a key like any other.
pub fn counts_of(rows: &[footfall_report::Row]) -> Counts {
    let mut c = Counts::new();
    for r in rows {
        *c.entry(r.key.clone().unwrap_or_default()).or_insert(0) += r.count;
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_threshold_is_the_smallest_within_delta() {
        let (scale, t) = calibrate(1.0, 1e-6).unwrap();
        assert_eq!(scale, 1.0);
        let d = |t| measurement(scale, t).unwrap().map(&(1, 1, 1)).unwrap().1;
        assert!(d(t) <= 1e-6, "{}", d(t));
        assert!(d(t - 1) > 1e-6, "{}", d(t - 1));
        // Less ε, more noise: a higher threshold for the same δ.
        assert!(calibrate(0.1, 1e-6).unwrap().1 > t);
        assert!(calibrate(0.0, 1e-6).is_err());
        assert!(calibrate(1.0, 0.0).is_err());
    }

    /// The noise is discrete Laplace with the stated scale: over many
    /// releases of one large count, the mean, the variance and the share
    /// within ±1 of the truth match the distribution. OpenDP draws from the
    /// operating system's secure generator, which takes no seed, so the
    /// bounds are wide (about six standard errors) rather than the draws
    /// fixed.
    #[test]
    fn the_noise_follows_the_stated_distribution() {
        let eps = 0.5; // scale 2
        let truth = 100_000;
        let counts = Counts::from([("/".to_owned(), truth)]);
        let n = 4_000;
        let noise: Vec<f64> = (0..n)
            .map(|_| {
                let r = release(&counts, eps, 1e-6).unwrap();
                (r.rows[0].1 - truth) as f64
            })
            .collect();
        let scale: f64 = 1.0 / eps;
        // Discrete Laplace with parameter t = scale: P(x) ∝ exp(-|x|/t).
        let a = (-1.0 / scale).exp();
        let variance = 2.0 * a / (1.0 - a).powi(2);
        let mean = noise.iter().sum::<f64>() / n as f64;
        let var = noise.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        assert!(
            mean.abs() < 6.0 * (variance / n as f64).sqrt(),
            "mean {mean}"
        );
        // The variance of a sample variance, for a Laplace-like tail, is
        // under 6 σ⁴ / n.
        assert!(
            (var - variance).abs() < 6.0 * (6.0 * variance.powi(2) / n as f64).sqrt(),
            "var {var} vs {variance}"
        );
        let p1 = (1.0 - a) / (1.0 + a) * (1.0 + 2.0 * a); // P(|x| ≤ 1)
        let share = noise.iter().filter(|x| x.abs() <= 1.0).count() as f64 / n as f64;
        assert!(
            (share - p1).abs() < 6.0 * (p1 * (1.0 - p1) / n as f64).sqrt(),
            "{share} vs {p1}"
        );
    }

    /// Keys of one or no views do not appear: at δ = 1e-9 not once in
    /// 20 releases of 5,000 such keys (the chance of any is under 1e-4).
    #[test]
    fn rare_keys_are_not_released() {
        let mut counts = Counts::new();
        for i in 0..5_000 {
            counts.insert(format!("/rare-{i}"), i64::from(i % 2));
        }
        counts.insert("/busy".into(), 10_000);
        for _ in 0..20 {
            let r = release(&counts, 1.0, 1e-9).unwrap();
            assert_eq!(r.rows.len(), 1, "{:?}", &r.rows[..r.rows.len().min(3)]);
            assert_eq!(r.rows[0].0, "/busy");
            assert!(r.rows.iter().all(|(_, n)| *n >= r.threshold));
            assert!(r.delta <= 1e-9 && r.epsilon <= 1.0 + 1e-12);
        }
    }

    #[test]
    fn the_ledger_refuses_an_overspent_day() {
        let tmp = tempfile::tempdir().unwrap();
        let d = |n| NaiveDate::from_ymd_opt(2026, 12, n).unwrap();
        let mut l = Ledger::open(tmp.path()).unwrap();
        l.check("a.com", d(1), d(3), 0.6, 1.0).unwrap();
        l.record("a.com", d(1), d(3), 0.6).unwrap();
        let l = Ledger::open(tmp.path()).unwrap();
        assert!((l.spent("a.com", d(2)) - 0.6).abs() < 1e-12);
        let e = l.check("a.com", d(3), d(4), 0.5, 1.0).unwrap_err();
        assert!(e.to_string().contains("a.com 2026-12-03"), "{e}");
        l.check("a.com", d(4), d(5), 1.0, 1.0).unwrap();
        l.check("b.org", d(1), d(3), 1.0, 1.0).unwrap();
        let text = std::fs::read_to_string(tmp.path().join("privacy-budget")).unwrap();
        assert_eq!(text.lines().count(), 3, "{text}");
    }
}
