//! `footfall privacy-notice`: the paragraph a site puts in its privacy
//! policy, made from the configuration `serve` runs with, so the policy
//! says what the code does.
//!
//! Every sentence that can differ comes from a setting, and the tests
//! below change each setting and check that its sentence changes with it.
//! The rest states what no setting changes: what is never stored, and how
//! the day's secret works.

use std::fmt::Write as _;

/// The settings the notice depends on, as `serve` would run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `--site`: the sites counted (empty: any site).
    pub sites: Vec<String>,
    /// `--geoip-db` is set: a country is derived from the address.
    pub countries: bool,
    /// `--honor-gpc`: browsers sending Global Privacy Control are not
    /// counted at all.
    pub honor_gpc: bool,
    /// `--max-views-per-minute` (None: off).
    pub rate_cap: Option<u32>,
    /// `--session-timeout` when `--sessions on` (None: off).
    pub session_timeout: Option<std::time::Duration>,
    /// `--event-prop`: the custom-event property keys stored.
    pub event_props: Vec<String>,
    /// `--salt-store`: several collectors share the daily secret.
    pub shared_salt: bool,
}

/// How the notice is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Markdown,
    Html,
}

/// The notice: a heading and paragraphs.
pub fn render(s: &Settings, format: Format) -> String {
    let paragraphs = paragraphs(s);
    let mut out = String::new();
    match format {
        Format::Markdown => {
            out.push_str("## Analytics\n\n");
            for p in &paragraphs {
                let _ = writeln!(out, "{p}\n");
            }
        }
        Format::Html => {
            out.push_str("<h2>Analytics</h2>\n");
            for p in &paragraphs {
                let _ = writeln!(out, "<p>{}</p>", html_escape(p));
            }
        }
    }
    out
}

fn paragraphs(s: &Settings) -> Vec<String> {
    let mut ps = Vec::new();
    let whose = match s.sites.as_slice() {
        [] => "this site".to_owned(),
        [one] => one.clone(),
        many => many.join(", "),
    };
    ps.push(format!(
        "We count visits to {whose} with footfall, an analytics tool that stores \
         only totals (how many views each page had, and from how many distinct \
         visitors), never anything about an individual visitor."
    ));

    let mut collected = String::from(
        "For each page view it uses the page's address without its query string or \
         fragment, the host name of the page that linked to it (such as google.com, \
         never the full address), the values of utm_source, utm_medium and \
         utm_campaign in the address of the page you arrived on, and the family of \
         your browser and operating system and your device class (desktop, tablet or \
         mobile), worked out from your browser's User-Agent and screen width",
    );
    if s.countries {
        collected.push_str(", and your country, looked up from your IP address");
    }
    collected.push('.');
    if !s.countries {
        collected.push_str(" It does not look up where you are.");
    }
    ps.push(collected);

    let secret = if s.shared_salt {
        "a random secret that changes every day (UTC), shared by the servers that \
         count visits through one private store and held in their memory only, and \
         destroyed within minutes after the day ends"
    } else {
        "a random secret that changes every day (UTC) and is destroyed within \
         seconds after the day ends"
    };
    ps.push(format!(
        "It never stores your IP address, your browser's User-Agent, a cookie or any \
         identifier, and it sets no cookie. To count distinct visitors, your IP \
         address and User-Agent are combined with {secret}; the result is \
         kept only inside a HyperLogLog sketch, a summary that holds no address, \
         User-Agent or identifier. Once a day's secret is gone, no one, the site's operator included, \
         can tell whether you were among that day's visitors. Visits on different \
         days cannot be linked to each other."
    ));

    ps.push(match s.session_timeout {
        Some(timeout) => format!(
            "To count visits, bounces and the time spent, the pages you view while you \
             browse the site are linked into one visit, in the server's memory only, \
             until {} without activity or the end of the day (UTC); the visit is never \
             written down, and when it ends all that is kept of it is added to the \
             totals (how many visits began on each page and from which site, how many \
             ended on each page, how long they lasted, how far pages were read).",
            timeout_words(timeout)
        ),
        None => "Pages you view are not linked into a visit or a path: no page view is \
                 remembered once it is counted."
            .to_owned(),
    });

    ps.push(match s.event_props.as_slice() {
        [] => "When the site counts actions such as a sign-up, a download or a click \
               on a link to another site, it counts them like page views: how many, \
               from how many distinct visitors, on which page. Of a link you follow to \
               another site or a file you download, only its host and path are kept. \
               No other detail sent with such an action is stored."
            .to_owned(),
        keys => format!(
            "When the site counts actions such as a sign-up, a download or a click on \
             a link to another site, it counts them like page views: how many, from \
             how many distinct visitors, on which page. Of a link you follow to \
             another site or a file you download, only its host and path are kept. Of \
             the details sent with an action, only {} {} stored, each at most 100 \
             characters and never an e-mail address; every other detail is dropped \
             before anything is stored.",
            keys.join(", "),
            if keys.len() == 1 { "is" } else { "are" }
        ),
    });

    match s.rate_cap {
        Some(n) => ps.push(format!(
            "So that no one can inflate the numbers, at most {n} page views a minute \
             from one browser on one address are counted; the counters for that are \
             held in memory only, under the same daily secret, and cleared every minute."
        )),
        None => ps.push(
            "There is no limit on the page views counted from one browser, so no \
             counter of them is kept."
                .to_owned(),
        ),
    }

    ps.push(if s.honor_gpc {
        "If your browser sends the Global Privacy Control signal, your visits are not \
         counted at all."
            .to_owned()
    } else {
        "Visits are counted in the same way when your browser sends the Global Privacy \
         Control signal: what is stored is not personal data, and nothing is sold or \
         shared."
            .to_owned()
    });

    ps.push(
        "You can stop this site from counting your visits in this browser: open the \
         browser's console on one of its pages and run \
         localStorage.footfall_ignore = \"true\". The totals stay with the site's \
         operator, in files on their own server; footfall sends them nowhere."
            .to_owned(),
    );
    ps
}

/// `30m` as people say it: "30 minutes".
fn timeout_words(d: std::time::Duration) -> String {
    let secs = d.as_secs().max(1);
    let (n, unit) = if secs.is_multiple_of(3600) {
        (secs / 3600, "hour")
    } else if secs.is_multiple_of(60) {
        (secs / 60, "minute")
    } else {
        (secs, "second")
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Settings {
        Settings {
            sites: vec![],
            countries: false,
            honor_gpc: false,
            rate_cap: Some(100),
            session_timeout: Some(std::time::Duration::from_secs(1800)),
            event_props: vec![],
            shared_salt: false,
        }
    }

    /// The sentences of `a` that are not in `b`.
    fn only_in(a: &Settings, b: &Settings) -> Vec<String> {
        let theirs = paragraphs(b);
        paragraphs(a)
            .into_iter()
            .filter(|p| !theirs.contains(p))
            .collect()
    }

    #[test]
    fn each_setting_changes_its_sentence() {
        let b = base();
        let sites = Settings {
            sites: vec!["example.com".into(), "shop.example".into()],
            ..base()
        };
        assert!(only_in(&sites, &b)[0].contains("example.com, shop.example"));
        assert!(paragraphs(&b)[0].contains("visits to this site"));

        let countries = Settings {
            countries: true,
            ..base()
        };
        let changed = only_in(&countries, &b);
        assert_eq!(changed.len(), 1);
        assert!(changed[0].contains("your country, looked up from your IP address"));
        assert!(only_in(&b, &countries)[0].contains("does not look up where you are"));

        let gpc = Settings {
            honor_gpc: true,
            ..base()
        };
        assert!(only_in(&gpc, &b)[0].contains("not counted at all"));
        assert!(only_in(&b, &gpc)[0].contains("counted in the same way"));

        let cap = Settings {
            rate_cap: Some(7),
            ..base()
        };
        assert!(only_in(&cap, &b)[0].contains("at most 7 page views a minute"));
        let off = Settings {
            rate_cap: None,
            ..base()
        };
        assert!(only_in(&off, &b)[0].contains("no limit"));

        assert!(
            paragraphs(&b)
                .iter()
                .any(|p| p.contains("until 30 minutes without activity"))
        );
        let short = Settings {
            session_timeout: Some(std::time::Duration::from_secs(600)),
            ..base()
        };
        assert!(only_in(&short, &b)[0].contains("until 10 minutes without activity"));
        let no_visits = Settings {
            session_timeout: None,
            ..base()
        };
        assert!(only_in(&no_visits, &b)[0].contains("not linked into a visit"));

        let props = Settings {
            event_props: vec!["plan".into(), "size".into()],
            ..base()
        };
        let changed = only_in(&props, &b);
        assert_eq!(changed.len(), 1);
        assert!(
            changed[0].contains("only plan, size are stored"),
            "{changed:?}"
        );
        assert!(only_in(&b, &props)[0].contains("No other detail sent with such an action"));

        let shared = Settings {
            shared_salt: true,
            ..base()
        };
        let changed = only_in(&shared, &b);
        assert_eq!(changed.len(), 1);
        assert!(changed[0].contains("shared by the servers"), "{changed:?}");
        assert!(changed[0].contains("destroyed within minutes"));
        assert!(only_in(&b, &shared)[0].contains("destroyed within seconds"));
    }

    #[test]
    fn what_no_setting_changes_is_always_said() {
        for s in [
            base(),
            Settings {
                countries: true,
                honor_gpc: true,
                rate_cap: None,
                sites: vec!["a.org".into()],
                session_timeout: None,
                event_props: vec!["plan".into()],
                shared_salt: true,
            },
        ] {
            let text = render(&s, Format::Markdown);
            for must in [
                "never stores your IP address",
                "sets no cookie",
                "after the day ends",
                "localStorage.footfall_ignore",
            ] {
                assert!(text.contains(must), "{must}: {text}");
            }
        }
    }

    #[test]
    fn html_is_escaped_paragraphs() {
        let html = render(&base(), Format::Html);
        assert!(html.starts_with("<h2>Analytics</h2>\n<p>"));
        assert!(html.contains("footfall_ignore = &quot;true&quot;"));
        assert_eq!(html.matches("<p>").count(), paragraphs(&base()).len());
        assert!(render(&base(), Format::Markdown).starts_with("## Analytics\n\nWe count"));
    }
}
