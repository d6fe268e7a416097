//! The analyst's commands on real output: `footfall rollup` and
//! `footfall report` agree before and after a rollup, and the rollups sit
//! where the README says.

use crate::support::{BROWSER_UA, Conn, Server, footfall, post, utc_today, wait_if_near_midnight};

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
