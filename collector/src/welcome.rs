//! The page at `/` of the beacon listener: says footfall is running, shows
//! the tag to paste for the address it was opened at, and, when any site
//! is counted, carries the tracker itself under site `localhost`, so the
//! first thing a newcomer opens is the first view counted.
//!
//! Pure: the request's `Host` header comes in, HTML goes out. It shows no
//! counts: the beacon listener is public, and a site's traffic is its
//! owner's.

use std::fmt::Write as _;

/// The site the page counts its own visit under.
pub const OWN_SITE: &str = "localhost";

/// What the page needs to know about the server.
#[derive(Debug, Clone, Copy)]
pub struct Welcome<'a> {
    /// The request's `Host` header, if it is a plain `host[:port]` (see
    /// [`plain_host`]); anything else is not echoed.
    pub host: Option<&'a str>,
    /// No `--site` allow-list: the page counts its own visit under
    /// [`OWN_SITE`]. With an allow-list, `localhost` would be dropped as
    /// an unknown site, so the page does not try.
    pub counts_own_visit: bool,
}

/// `host`, if it is a host name, IPv4 or bracketed IPv6 address with an
/// optional port, and nothing else: it is written into the page, so no
/// character that HTML or a URL would read differently may pass.
pub fn plain_host(host: &str) -> Option<&str> {
    let ok = !host.is_empty()
        && host.len() <= 260
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    ok.then_some(host)
}

/// A plain `host[:port]` as its name and its port, if any: `[::1]:80` is
/// `::1` and `80`.
fn split_host_port(host: &str) -> (&str, Option<&str>) {
    let (name, rest) = match host.strip_prefix('[') {
        Some(v6) => v6.split_once(']').unwrap_or((v6, "")),
        None => host.split_once(':').map_or((host, ""), |(h, p)| (h, p)),
    };
    let port = rest.trim_start_matches(':');
    let port = (!port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())).then_some(port);
    (name, port)
}

/// `localhost` or a name under it, which browsers resolve to this machine.
fn is_localhost(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    name == OWN_SITE || name.ends_with(".localhost")
}

/// A name or address only this machine reaches.
fn is_local(name: &str) -> bool {
    is_localhost(name)
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The page.
pub fn render(w: Welcome<'_>) -> String {
    let host = w.host.unwrap_or("stats.example.com");
    let (name, port) = split_host_port(host);
    // A browser on this machine speaks plain HTTP to the collector; one
    // elsewhere reaches it through a TLS proxy, as it should.
    let scheme = if is_local(name) { "http" } else { "https" };
    let origin = format!("{scheme}://{host}");
    let port = port.map_or(String::new(), |p| format!(":{p}"));
    // Only then is the page's own view on site `localhost`: opened by an
    // address it would be dropped (and logged), so it does not try.
    let counts_itself = w.counts_own_visit && is_localhost(name);

    let mut page = String::with_capacity(3000);
    page.push_str(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>footfall is running</title>\n",
    );
    if counts_itself {
        // The same tag a site owner pastes, loaded from this collector.
        let _ = writeln!(
            page,
            "<script defer data-domain=\"{OWN_SITE}\" src=\"/script.js\"></script>"
        );
    }
    page.push_str(
        "<style>body{font:16px/1.5 system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem}\
         code,pre{font-family:ui-monospace,monospace;font-size:.9em}\
         pre{background:#8881;padding:.75rem;overflow-x:auto;border-radius:4px}\
         @media(prefers-color-scheme:dark){body{background:#111;color:#ddd}a{color:#8bf}}</style>\n\
         </head>\n<body>\n<h1>footfall is running</h1>\n\
         <p>This is footfall's collector: it takes page-view beacons and writes hourly \
         aggregates, never who sent them. This page shows no numbers; they are in the \
         data dir, for <code>footfall report</code> and the tools you query Parquet with.</p>\n",
    );
    if counts_itself {
        let _ = writeln!(
            page,
            "<h2>Your first view</h2>\n<p>Opening this page counted a view of page \
             <code>/</code> under site <code>{OWN_SITE}</code>. The files are written when \
             the hour closes and when footfall stops (Ctrl-C); then:</p>\n\
             <pre>footfall report --site {OWN_SITE}</pre>"
        );
    } else if w.counts_own_visit {
        let _ = writeln!(
            page,
            "<h2>Your first view</h2>\n<p>Open this page as \
             <a href=\"http://localhost{port}/\">http://localhost{port}/</a> to see it count \
             its own visit under site <code>{OWN_SITE}</code>. Opened as \
             <code>{host}</code> it counts nothing: a view counts for a site only when the \
             page's address is on that site's domain.</p>"
        );
    } else {
        page.push_str(
            "<p>Only the sites on the <code>--site</code> allow-list are counted, so this \
             page counts no visit of its own.</p>\n",
        );
    }
    let _ = writeln!(
        page,
        "<h2>Count your site</h2>\n<p>Put this tag in your pages' <code>&lt;head&gt;</code>, \
         with your site's domain as <code>data-domain</code>:</p>\n\
         <pre>&lt;script defer data-domain=\"example.com\" src=\"{origin}/script.js\"&gt;&lt;/script&gt;</pre>\n\
         <p>The page's address must be on that domain or a subdomain of it: a page on \
         <code>http://localhost:3000/</code> counts as <code>data-domain=\"localhost\"</code>. \
         A beacon for another host is answered with \
         <code>X-Footfall-Dropped: url-not-on-site</code>, and footfall's log says so once an \
         hour.</p>\n\
         <p>Then see the numbers with <code>footfall report --site example.com</code>, \
         <code>footfall sites</code>, or DuckDB, Polars, pandas and Spark over \
         <code>footfall-data/pages/**/*.parquet</code>.</p>\n</body>\n</html>"
    );
    page
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_hosts_are_echoed() {
        for ok in [
            "localhost:8080",
            "127.0.0.1:8080",
            "[::1]:8080",
            "stats.example.com",
        ] {
            assert_eq!(plain_host(ok), Some(ok));
        }
        for bad in ["", "a\"b", "<script>", "a b", "x/y", "a%20", "h?q"] {
            assert_eq!(plain_host(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_page_fits_where_it_was_opened() {
        let on = |host| {
            render(Welcome {
                host: Some(host),
                counts_own_visit: true,
            })
        };
        let local = on("localhost:8080");
        assert!(local.contains("<script defer data-domain=\"localhost\" src=\"/script.js\">"));
        assert!(local.contains("counted a view"));
        assert!(local.contains("src=\"http://localhost:8080/script.js\""));

        let by_address = on("127.0.0.1:8080");
        assert!(
            by_address.contains("href=\"http://localhost:8080/\""),
            "{by_address}"
        );
        assert!(!by_address.contains("counted a view"));
        assert!(!by_address.contains("src=\"/script.js\""), "{by_address}");
        assert!(by_address.contains("src=\"http://127.0.0.1:8080/script.js\""));

        let sub = on("app.localhost:8080");
        assert!(sub.contains("counted a view") && sub.contains("src=\"/script.js\""));
        // A name that merely starts like an address is not this machine.
        assert!(on("127.evil.example").contains("https://127.evil.example/"));

        let v6 = on("[::1]:9000");
        assert!(v6.contains("href=\"http://localhost:9000/\""), "{v6}");

        let public = on("stats.example.com");
        assert!(public.contains("src=\"https://stats.example.com/script.js\""));
        assert!(public.contains("href=\"http://localhost/\""));
        assert!(
            !public.contains("src=\"/script.js\""),
            "no tracker on a public host"
        );

        let allow_list = render(Welcome {
            host: Some("localhost:8080"),
            counts_own_visit: false,
        });
        assert!(!allow_list.contains("data-domain=\"localhost\" src=\"/script.js\""));
        assert!(allow_list.contains("allow-list"));

        let no_host = render(Welcome {
            host: None,
            counts_own_visit: true,
        });
        assert!(no_host.contains("https://stats.example.com/script.js"));
    }
}
