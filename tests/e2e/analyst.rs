//! The analyst's commands on real output: `footfall rollup` and
//! `footfall report` agree before and after a rollup, and the rollups sit
//! where the README says.

use crate::support::{
    BROWSER_UA, Conn, Server, footfall, pageview, post, utc_today, wait_if_near_midnight,
};

#[test]
fn rollup_by_hand_changes_no_number_of_any_report() {
    wait_if_near_midnight();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path();
    // Two runs, so the day has two files per table.
    for run in 0..2 {
        let mut server = Server::start(
            data,
            &["--site", "example.com", "--trusted-proxy", "127.0.0.1"],
        );
        let mut conn = Conn::open(server.addr);
        for i in 0..60 {
            let body = format!(
                r#"{{"n":"pageview","u":"https://example.com/p{}?utm_source=s{}","d":"example.com","r":"https://r{}.example/"}}"#,
                i % 4,
                i % 3,
                i % 2
            );
            let ip = format!("198.51.100.{}", i + run * 60);
            let reply = conn.raw(&post(&body, BROWSER_UA, &ip, "text/plain"));
            assert_eq!(reply.status, 202);
        }
        drop(conn);
        assert!(server.stop().success());
    }
    let today = utc_today();
    let reports = |dims: &[&str]| -> Vec<String> {
        dims.iter()
            .map(|by| {
                let mut args = vec!["report", "--site", "example.com", "--format", "json"];
                if !by.is_empty() {
                    args.extend(["--by", by]);
                }
                let (ok, out, err) = footfall(&args, data);
                assert!(ok, "report --by {by}: {err}");
                out
            })
            .collect()
    };
    let dims = [
        "",
        "page",
        "referrer",
        "utm_source",
        "browser",
        "device",
        "day",
        "hour",
    ];
    let before = reports(&dims);

    let (ok, out, err) = footfall(&["rollup", "--date", &today], data);
    assert!(ok, "{err}");
    for table in ["pages", "sources", "devices"] {
        assert!(out.contains(&format!("{today} {table}: wrote")), "{out}");
        let dir = data
            .join(format!("{table}_daily"))
            .join(format!("date={today}"));
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "{}",
            dir.display()
        );
    }
    assert_eq!(reports(&dims), before, "the same numbers from the rollups");

    let (ok, out, _) = footfall(&["rollup", "--date", &today], data);
    assert!(ok);
    assert!(out.contains(&format!("{today} pages: up to date")), "{out}");

    // Without --date: only closed days, and today is not one.
    let (ok, out, _) = footfall(&["rollup"], data);
    assert!(ok);
    assert!(out.contains("no closed day"), "{out}");

    let (ok, _, err) = footfall(&["rollup"], &data.join("missing"));
    assert!(!ok);
    assert!(err.contains("does not exist"), "{err}");
}

/// `privacy-notice` reads the same flags and variables as `serve`.
#[test]
fn the_privacy_notice_follows_the_configuration_serve_reads() {
    let notice = |env: &[(&str, &str)], args: &[&str]| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_footfall"));
        c.arg("privacy-notice").args(args);
        for var in [
            "FOOTFALL_SITE",
            "FOOTFALL_HONOR_GPC",
            "FOOTFALL_GEOIP_DB",
            "FOOTFALL_MAX_VIEWS_PER_MINUTE",
            "FOOTFALL_SESSIONS",
            "FOOTFALL_SESSION_TIMEOUT",
            "FOOTFALL_EVENT_PROPS",
        ] {
            c.env_remove(var);
        }
        c.envs(env.iter().copied());
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let plain = notice(&[], &[]);
    assert!(plain.starts_with("## Analytics"));
    assert!(
        plain.contains("visits to this site") && plain.contains("does not look up where you are")
    );
    assert!(plain.contains("at most 100 page views a minute"));
    assert!(plain.contains("until 30 minutes without activity"));
    let short = notice(&[("FOOTFALL_SESSION_TIMEOUT", "15m")], &[]);
    assert!(
        short.contains("until 15 minutes without activity"),
        "{short}"
    );
    let off = notice(&[], &["--sessions", "off"]);
    assert!(off.contains("not linked into a visit"), "{off}");
    assert!(plain.contains("No other detail sent with such an action"));
    let props = notice(&[("FOOTFALL_EVENT_PROPS", "plan,size")], &[]);
    assert!(props.contains("only plan, size are stored"), "{props}");
    let configured = notice(
        &[
            ("FOOTFALL_SITE", "Example.com,shop.example"),
            ("FOOTFALL_HONOR_GPC", "true"),
            ("FOOTFALL_GEOIP_DB", "/var/lib/GeoLite2-Country.mmdb"),
            ("FOOTFALL_MAX_VIEWS_PER_MINUTE", "30"),
        ],
        &["--format", "html"],
    );
    assert!(configured.starts_with("<h2>Analytics</h2>"));
    for said in [
        "visits to example.com, shop.example",
        "your country, looked up from your IP address",
        "not counted at all",
        "at most 30 page views a minute",
    ] {
        assert!(configured.contains(said), "{said}: {configured}");
    }
}

/// `publish` on data the real server wrote: a busy page is released with
/// noise, a page of one view is held back, the parameters are in each
/// format's file, and the day's budget refuses a release too many.
#[test]
fn publish_releases_busy_pages_and_spends_the_days_budget() {
    wait_if_near_midnight();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut server = Server::start(
        &data,
        &["--site", "example.com", "--trusted-proxy", "127.0.0.1"],
    );
    let mut conn = Conn::open(server.addr);
    let mut send = |page: &str, i: usize| {
        let url = format!("https://example.com{page}");
        let ip = format!("198.51.{}.{}", 100 + i / 250, i % 250);
        assert_eq!(conn.raw(&pageview("example.com", &url, &ip)).status, 202);
    };
    for i in 0..600 {
        send("/busy", i);
    }
    send("/lonely-reader", 0);
    drop(conn);
    assert!(server.stop().success());

    let publish = |eps: &str, out: &std::path::Path| {
        footfall(
            &[
                "publish",
                "--by",
                "page",
                "--epsilon",
                eps,
                "--out",
                out.to_str().unwrap(),
            ],
            &data,
        )
    };
    let json = tmp.path().join("release.json");
    let (ok, said, err) = publish("0.5", &json);
    assert!(ok, "{err}");
    assert!(said.contains("released 1 of 2 page values"), "{said}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{v}");
    assert_eq!(rows[0]["page"], "/busy");
    let noisy = rows[0]["views"].as_i64().unwrap();
    assert!(
        (500..700).contains(&noisy),
        "600 views, noise of scale 2: {noisy}"
    );
    let privacy = &v["privacy"];
    assert_eq!(privacy["epsilon"], "0.5");
    assert_eq!(privacy["unit_of_privacy"], "one page view (event-level)");
    let threshold: i64 = privacy["threshold"].as_str().unwrap().parse().unwrap();
    assert!(noisy >= threshold && threshold > 1);
    assert!(privacy["delta"].as_str().unwrap().parse::<f64>().unwrap() <= 1e-6);

    let csv = tmp.path().join("release.csv");
    assert!(publish("0.25", &csv).0);
    let text = std::fs::read_to_string(&csv).unwrap();
    assert!(text.starts_with("# site: example.com\n"), "{text}");
    assert!(text.contains("\npage,views\n/busy,"), "{text}");
    assert!(
        !text.contains("lonely"),
        "a page of one view is not released"
    );

    // 0.5 + 0.25 spent today; 0.3 more would pass the budget of 1.
    let parquet = tmp.path().join("release.parquet");
    let (ok, _, err) = publish("0.3", &parquet);
    assert!(!ok);
    assert!(err.contains("--epsilon-budget 1"), "{err}");
    assert!(!parquet.exists(), "nothing released past the budget");
    let (ok, _, err) = publish("0.25", &parquet);
    assert!(ok, "{err}");
    let file = std::fs::File::open(&parquet).unwrap();
    let reader = parquet::file::reader::SerializedFileReader::new(file).unwrap();
    use parquet::file::reader::FileReader as _;
    let kv = reader
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .unwrap()
        .clone();
    let get = |k: &str| kv.iter().find(|e| e.key == k).and_then(|e| e.value.clone());
    assert_eq!(get("footfall.release.epsilon").as_deref(), Some("0.25"));
    assert_eq!(reader.metadata().file_metadata().num_rows(), 1);
    // The ledger holds numbers and site ids only.
    let ledger = std::fs::read_to_string(data.join("_state/privacy-budget")).unwrap();
    assert_eq!(ledger.lines().count(), 1, "{ledger}");
    assert!(ledger.starts_with("example.com "), "{ledger}");
}
