//! Turning a decoded beacon into anonymous visits: the one place where the
//! client's IP address and User-Agent are used, and where they end.

use std::borrow::Cow;
use std::fmt;
use std::hash::Hasher;
use std::net::IpAddr;

use footfall_schemas::{Campaign, CustomEvent, Device, Engagement, Visit, VisitorKey};
use siphasher::sip::{SipHasher13, SipHasher24};

use crate::agent::classify;
use crate::beacon::Beacon;
use crate::error::{BeaconError, DropReason};
use crate::events::{self, EventProps, PropDrop};
use crate::geo::GeoDb;
use crate::normalise::{
    CampaignValues, campaign, is_ip_host, on_site, page_url, referrer_host, site_id,
};
use crate::shields::Shields;

/// What a beacon is, by its name.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    View,
    Engagement,
    Custom,
}

/// How many sites one beacon may count for (`d` is a comma-separated list).
/// Bounds the work and the rows a single request can cause.
pub const MAX_SITES_PER_BEACON: usize = 8;

/// What identifies the sender, for hashing only. Borrowed from the request:
/// nothing here is copied into a visit.
#[derive(Clone, Copy)]
pub struct Client<'a> {
    /// The client address: the socket peer, or the first `X-Forwarded-For`
    /// address when the peer is a trusted proxy.
    pub ip: IpAddr,
    /// The raw User-Agent header, empty when absent.
    pub user_agent: &'a [u8],
    /// The browser sent `Sec-GPC: 1` (Global Privacy Control).
    pub gpc: bool,
}

impl fmt::Debug for Client<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Client(<redacted>)")
    }
}

/// The secret of one uniqueness window: the 128-bit SipHash key of the
/// visitor keys (the salt as stored), and a key derived from it for the
/// User-Agent memo, so that no two hashes ever share a key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SaltKey {
    pub(crate) secret: [u8; 16],
    memo: [u8; 16],
}

impl SaltKey {
    /// Builds a key from 16 secret random bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        // The labels hold no 0xFF byte, which every visitor-key input does,
        // so they are never the input of a visitor key.
        let half = |label: &[u8]| {
            let mut h = SipHasher24::new_with_key(&bytes);
            h.write(label);
            h.finish().to_le_bytes()
        };
        let mut memo = [0; 16];
        memo[..8].copy_from_slice(&half(b"footfall: User-Agent memo key, part 1"));
        memo[8..].copy_from_slice(&half(b"footfall: User-Agent memo key, part 2"));
        Self {
            secret: bytes,
            memo,
        }
    }
}

impl fmt::Debug for SaltKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SaltKey(<redacted>)")
    }
}

/// Which sites are accepted: all, or those on the `--site` allow-list.
#[derive(Debug, Clone, Default)]
pub struct SiteFilter {
    allowed: Option<Vec<String>>,
}

impl SiteFilter {
    /// Accept any site.
    pub fn any() -> Self {
        Self { allowed: None }
    }

    /// Accept only these sites (normalised as beacons' `d` is).
    pub fn only<I: IntoIterator<Item = S>, S: AsRef<str>>(sites: I) -> Result<Self, BeaconError> {
        let mut allowed = sites
            .into_iter()
            .map(|s| site_id(s.as_ref()).map(Cow::into_owned))
            .collect::<Result<Vec<_>, _>>()?;
        allowed.sort();
        allowed.dedup();
        Ok(Self {
            allowed: Some(allowed),
        })
    }

    /// True when no allow-list is set.
    pub fn accepts_any(&self) -> bool {
        self.allowed.is_none()
    }

    fn allows(&self, site: &str) -> bool {
        match &self.allowed {
            None => true,
            Some(list) => list.binary_search_by(|s| s.as_str().cmp(site)).is_ok(),
        }
    }
}

/// What `anonymise` needs besides the beacon and its sender.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The key of the uniqueness window `now` falls in.
    pub salt: SaltKey,
    /// Arrival time, Unix seconds.
    pub now: i64,
    /// Which sites count.
    pub sites: &'a SiteFilter,
    /// Where countries come from, if anywhere.
    pub geo: Option<&'a GeoDb>,
    /// Drop beacons whose browser sent `Sec-GPC: 1`.
    pub honor_gpc: bool,
    /// Excluded addresses and pages, and the cap on views a minute.
    pub shields: &'a Shields,
    /// The custom-event property keys that may be kept.
    pub event_props: &'a EventProps,
}

/// Where `anonymise` hands what it made: a closure taking visits is one
/// (engagement reports then count for nothing); the server's counts both.
pub trait Record {
    /// One anonymous page view; copy whatever is kept.
    fn visit(&mut self, visit: &Visit<'_>);

    /// One anonymous engagement report: false when it counted for nothing
    /// (no open visit).
    fn engage(&mut self, _engagement: &Engagement<'_>) -> bool {
        false
    }

    /// One anonymous custom event, its properties already reduced to the
    /// allowed ones.
    fn event(&mut self, _event: &CustomEvent<'_>) {}

    /// A property of a counted event that was not kept, and why.
    fn prop_dropped(&mut self, _reason: PropDrop) {}
}

impl<F: FnMut(&Visit<'_>)> Record for F {
    fn visit(&mut self, visit: &Visit<'_>) {
        self(visit)
    }
}

/// Turns a beacon into one visit per site it counts for, each handed to
/// `record` (which must copy whatever it keeps: the visit borrows from the
/// beacon and from this call). An `engagement` beacon becomes one
/// engagement report per site instead, for the visit its key has open.
///
/// `dropped_for` hears of each site that did not count the view because
/// of the site itself (not on the allow-list, or the URL not on it), with
/// the reason, so the shell can tell the owner in its log.
///
/// Returns `Ok(None)` when the beacon counted for every site it names,
/// `Ok(Some(reason))` when it is well-formed but some site (or every site)
/// did not count it, saying why for the first such site, and an error when
/// it is malformed (bad URL or site id), in which case nothing was recorded.
///
/// The User-Agent is reduced to a browser family, OS family and device
/// class (or marks a bot), and the address to a country; both are hashed
/// into the visitor key, and neither goes further.
///
/// A beacon whose URL, site and referrer are already in normal form (nearly
/// every one) is anonymised without a heap allocation.
pub fn anonymise(
    beacon: &Beacon<'_>,
    client: Client<'_>,
    cx: &Context<'_>,
    mut record: impl Record,
    mut dropped_for: impl FnMut(&str, DropReason),
) -> Result<Option<DropReason>, BeaconError> {
    let page = page_url(&beacon.url, beacon.hash_mode)?;
    let kind = match &*beacon.name {
        "pageview" => Kind::View,
        "engagement" => Kind::Engagement,
        _ => Kind::Custom,
    };
    // A custom event's name is stored as sent: never an address, nor a
    // character that would rewrite a terminal's or a table's text.
    if kind == Kind::Custom
        && (events::looks_like_email(&beacon.name) || events::has_misleading(&beacon.name))
    {
        return Err(BeaconError::InvalidName);
    }
    // Bound the work before doing any: a 64 KiB pixel query could otherwise
    // list thousands of sites, each needing an IDNA pass.
    if beacon.domain.len() > MAX_SITES_PER_BEACON * 256 {
        return Err(BeaconError::InvalidDomain);
    }
    // Every site is checked before any is recorded, so a malformed one
    // refuses the whole beacon. On the stack: this is every beacon's path.
    let mut site_ids: [Option<Cow<'_, str>>; MAX_SITES_PER_BEACON] = Default::default();
    let mut n = 0;
    for raw in beacon.domain.split(',') {
        let site = site_id(raw)?;
        if !site_ids[..n].iter().flatten().any(|seen| *seen == site) {
            if n == MAX_SITES_PER_BEACON {
                return Err(BeaconError::InvalidDomain);
            }
            site_ids[n] = Some(site);
            n += 1;
        }
    }
    // The owner's own addresses are refused before anything is hashed.
    if cx.shields.excludes_ip(client.ip) {
        return Ok(Some(DropReason::Excluded));
    }
    let Some(agent) = classify(client.user_agent, agent_digest(cx.salt, client.user_agent)) else {
        return Ok(Some(DropReason::Bot));
    };
    if cx.honor_gpc && client.gpc {
        return Ok(Some(DropReason::Gpc));
    }
    if cx.shields.excludes_page(&page.page) {
        return Ok(Some(DropReason::Excluded));
    }

    let referrer = beacon.referrer.as_deref().and_then(referrer_host);
    // An address decides whether the view is a landing like any host, but
    // is not kept as its source: it may be someone's own machine.
    let source_host = referrer.as_deref().filter(|h| !is_ip_host(h));
    // A width of 0 (a hidden frame) says nothing: the User-Agent decides.
    let device = beacon
        .screen_width
        .filter(|&w| w > 0)
        .map_or(agent.device, Device::from_screen_width);
    let country = cx.geo.and_then(|geo| geo.country(client.ip));
    // Read only when some site counts the view as a landing.
    let mut landing_campaign: Option<CampaignValues> = None;
    let mut dropped = None;
    for site in site_ids[..n].iter().flatten() {
        let refused = if !cx.sites.allows(site) {
            Some(DropReason::UnknownSite)
        } else if !on_site(&page.host, site) {
            Some(DropReason::UrlNotOnSite)
        } else {
            None
        };
        if let Some(reason) = refused {
            dropped.get_or_insert(reason);
            dropped_for(site, reason);
            continue;
        }
        // Views and engagement reports share the visitor's budget of the
        // minute: one open visit cannot be fed reports without end.
        let visitor = visitor_key(cx.salt, site, client);
        if cx.shields.over_cap(visitor.sketch_input(), cx.now) {
            dropped.get_or_insert(DropReason::RateLimit);
            continue;
        }
        if kind == Kind::Custom {
            let kept = events::keep(beacon.props(), &beacon.name, site, cx.event_props, |why| {
                record.prop_dropped(why)
            });
            // Lent as plain pairs from the stack: `keep` returns at most
            // MAX_PROPS of them.
            let mut pairs = [("", ""); events::MAX_PROPS];
            for (slot, (k, v)) in pairs.iter_mut().zip(&kept) {
                *slot = (k, v);
            }
            record.event(&CustomEvent {
                site,
                time: cx.now,
                name: &beacon.name,
                page: &page.page,
                props: &pairs[..kept.len()],
                interactive: beacon.interactive,
                visitor,
            });
            continue;
        }
        if kind == Kind::Engagement {
            let counted = record.engage(&Engagement {
                site,
                time: cx.now,
                page: &page.page,
                engaged_ms: beacon.engaged_ms,
                scroll_depth: beacon.scroll_depth,
                visitor,
            });
            if !counted {
                dropped.get_or_insert(DropReason::NoVisit);
            }
            continue;
        }
        let entry = referrer.as_deref().is_none_or(|r| !on_site(r, site));
        let campaign = if entry {
            landing_campaign
                .get_or_insert_with(|| campaign(&beacon.url))
                .view()
        } else {
            Campaign::default()
        };
        record.visit(&Visit {
            site,
            time: cx.now,
            page: &page.page,
            // Only a landing has a source.
            referrer: source_host.filter(|_| entry),
            entry,
            campaign,
            browser: agent.browser,
            os: agent.os,
            device,
            country,
            visitor,
        });
    }
    Ok(dropped)
}

/// SipHash-2-4, a PRF, of (site, IP, User-Agent) under the window's salt.
///
/// The site is part of the input so that one person is not linkable across
/// sites that share a collector. The IP is hashed as 16 bytes (IPv4 mapped
/// into IPv6) so every address has one encoding; a 0xFF byte, which never
/// occurs in UTF-8, ends the site so no two inputs run together.
///
/// Never change what goes in: a salt outlives a restart within its day, and
/// a version hashing differently would count that day's visitors again.
/// `visitor_keys_never_change` pins a value.
pub fn visitor_key(salt: SaltKey, site: &str, client: Client<'_>) -> VisitorKey {
    let mut h = SipHasher24::new_with_key(&salt.secret);
    h.write(site.as_bytes());
    h.write_u8(0xFF);
    let ip = match client.ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    };
    h.write(&ip.octets());
    h.write(client.user_agent);
    VisitorKey::from_hash(h.finish())
}

/// The User-Agent memo's key for a header: SipHash-1-3 under the window's
/// memo key, so a day's memo entries match nothing, and mean nothing, once
/// its salt is destroyed. (Not the visitor key's hash: that one must stay
/// as it is, see [`visitor_key`].)
pub fn agent_digest(salt: SaltKey, user_agent: &[u8]) -> u64 {
    let mut h = SipHasher13::new_with_key(&salt.memo);
    h.write(user_agent);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::beacon::decode_json;
    use footfall_schemas::{Browser, Country, Os};

    fn salt() -> SaltKey {
        SaltKey::from_bytes([7; 16])
    }
    const UA: &[u8] = b"Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";

    fn client(ip: &str) -> Client<'static> {
        Client {
            ip: ip.parse().unwrap(),
            user_agent: UA,
            gpc: false,
        }
    }

    fn run(
        body: &str,
        sites: &SiteFilter,
    ) -> (Result<Option<DropReason>, BeaconError>, Vec<Visit<'static>>) {
        run_as(body, sites, client("203.0.113.9"), None, false)
    }

    fn run_as(
        body: &str,
        sites: &SiteFilter,
        client: Client<'_>,
        geo: Option<&GeoDb>,
        honor_gpc: bool,
    ) -> (Result<Option<DropReason>, BeaconError>, Vec<Visit<'static>>) {
        let beacon = decode_json(body.as_bytes()).unwrap();
        let mut out = Vec::new();
        // The visits outlive the call here; a test may leak their text.
        let keep = |s: &str| -> &'static str { Box::leak(s.into()) };
        let cx = Context {
            salt: salt(),
            now: 1_700_000_000,
            sites,
            geo,
            honor_gpc,
            shields: &crate::shields::Shields::none(),
            event_props: &EventProps::none(),
        };
        let r = anonymise(
            &beacon,
            client,
            &cx,
            |v: &Visit<'_>| {
                out.push(Visit {
                    site: keep(v.site),
                    page: keep(v.page),
                    referrer: v.referrer.map(keep),
                    campaign: Campaign {
                        source: v.campaign.source.map(keep),
                        medium: v.campaign.medium.map(keep),
                        campaign: v.campaign.campaign.map(keep),
                    },
                    ..*v
                })
            },
            |_, _| {},
        );
        (r, out)
    }

    #[test]
    fn a_visit_carries_families_device_country_and_a_landing_campaign() {
        let geo = GeoDb::open(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../tests/data/geo-geolite2.mmdb"),
        )
        .unwrap();
        let iphone = b"Mozilla/5.0 (iPhone; CPU iPhone OS 18_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/26.1 Mobile/15E148 Safari/604.1";
        let phone = Client {
            user_agent: iphone,
            ..client("203.0.113.9")
        };
        let landing = r#"{"u":"https://example.com/?utm_source=news&utm_campaign=fall&id=9","d":"example.com","r":"https://www.google.com/search?q=x"}"#;
        let (r, visits) = run_as(landing, &SiteFilter::any(), phone, Some(&geo), false);
        assert_eq!(r, Ok(None));
        let v = &visits[0];
        assert_eq!(
            (v.browser, v.os, v.device),
            (Browser::Safari, Os::Ios, Device::Mobile)
        );
        assert_eq!(v.country, Country::new("DE"));
        assert_eq!(v.campaign.source, Some("news"));
        assert_eq!(v.campaign.medium, None);
        assert_eq!(v.campaign.campaign, Some("fall"));

        // The screen width wins over the User-Agent; navigation within the
        // site has no campaign; an unknown address has no country.
        let inner = r#"{"u":"https://example.com/b?utm_source=news","d":"example.com","r":"https://example.com/a","w":1280}"#;
        let elsewhere = Client {
            ip: "10.1.2.3".parse().unwrap(),
            ..phone
        };
        let (_, visits) = run_as(inner, &SiteFilter::any(), elsewhere, Some(&geo), false);
        let v = &visits[0];
        assert_eq!(v.device, Device::Desktop);
        assert!(!v.entry);
        assert!(v.campaign.is_empty());
        assert_eq!(v.country, None);

        // No database: no country, whatever the address.
        let (_, visits) = run_as(landing, &SiteFilter::any(), phone, None, false);
        assert_eq!(visits[0].country, None);
    }

    #[test]
    fn an_address_as_referrer_is_a_landing_but_never_a_source() {
        for r in ["http://192.168.1.20:8000/share", "http://[2001:db8::7]/x"] {
            let body = format!(r#"{{"u":"https://example.com/","d":"example.com","r":"{r}"}}"#);
            let (result, visits) = run(&body, &SiteFilter::any());
            assert_eq!(result, Ok(None));
            assert!(visits[0].entry, "{r}");
            assert_eq!(visits[0].referrer, None, "{r}");
        }
    }

    #[test]
    fn bots_and_gpc_are_dropped_with_their_reason() {
        let body = r#"{"u":"https://example.com/","d":"example.com"}"#;
        for ua in [
            &b"curl/8.14.1"[..],
            b"",
            b"Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        ] {
            let bot = Client {
                user_agent: ua,
                ..client("203.0.113.9")
            };
            let (r, visits) = run_as(body, &SiteFilter::any(), bot, None, true);
            assert_eq!(r, Ok(Some(DropReason::Bot)));
            assert!(visits.is_empty());
        }
        let gpc = Client {
            gpc: true,
            ..client("203.0.113.9")
        };
        let (r, visits) = run_as(body, &SiteFilter::any(), gpc, None, true);
        assert_eq!(r, Ok(Some(DropReason::Gpc)));
        assert!(visits.is_empty());
        // Off by default: nothing personal is stored either way.
        let (r, visits) = run_as(body, &SiteFilter::any(), gpc, None, false);
        assert_eq!(r, Ok(None));
        assert_eq!(visits.len(), 1);
        // A malformed beacon is an error whoever sends it.
        let bot = Client {
            user_agent: b"curl/8.14.1",
            ..client("203.0.113.9")
        };
        let (r, _) = run_as(
            r#"{"u":"nope","d":"example.com"}"#,
            &SiteFilter::any(),
            bot,
            None,
            false,
        );
        assert_eq!(r, Err(BeaconError::InvalidUrl));
    }

    #[test]
    fn a_pageview_becomes_a_visit_without_query_or_referrer_path() {
        let (r, visits) = run(
            r#"{"u":"https://www.example.com/pricing?email=me@x.org#plans","d":"example.com","r":"https://www.google.com/search?q=me"}"#,
            &SiteFilter::any(),
        );
        assert_eq!(r, Ok(None));
        assert_eq!(visits.len(), 1);
        let v = &visits[0];
        assert_eq!(v.site, "example.com");
        assert_eq!(v.page, "/pricing");
        assert_eq!(v.referrer, Some("google.com"));
        assert!(v.entry);
        assert_eq!(v.time, 1_700_000_000);
        let shown = format!("{v:?}");
        assert!(
            !shown.contains("me@x.org") && !shown.contains("q=me"),
            "{shown}"
        );
    }

    #[test]
    fn an_engagement_goes_to_each_site_with_the_views_key_and_never_as_a_view() {
        struct Sink {
            views: usize,
            engagements: Vec<(String, String, Option<u32>, Option<u8>, VisitorKey)>,
            open: bool,
        }
        impl Record for &mut Sink {
            fn visit(&mut self, _: &Visit<'_>) {
                self.views += 1;
            }
            fn engage(&mut self, e: &Engagement<'_>) -> bool {
                self.engagements.push((
                    e.site.into(),
                    e.page.into(),
                    e.engaged_ms,
                    e.scroll_depth,
                    e.visitor,
                ));
                self.open
            }
        }
        let only = SiteFilter::any();
        let cx = Context {
            salt: salt(),
            now: 1_764_079_200,
            sites: &only,
            geo: None,
            honor_gpc: false,
            shields: &Shields::none(),
            event_props: &EventProps::none(),
        };
        let c = client("203.0.113.9");
        let body = r#"{"n":"engagement","u":"https://example.com/a?q=1#x","d":"example.com,shop.example.com","sd":40,"e":1200}"#;
        let beacon = decode_json(body.as_bytes()).unwrap();
        let mut sink = Sink {
            views: 0,
            engagements: Vec::new(),
            open: true,
        };
        let r = anonymise(&beacon, c, &cx, &mut sink, |_, _| {});
        assert_eq!(
            r,
            Ok(Some(DropReason::UrlNotOnSite)),
            "shop.example.com is not the URL's host"
        );
        assert_eq!(sink.views, 0);
        assert_eq!(
            sink.engagements,
            [(
                "example.com".into(),
                "/a".into(),
                Some(1200),
                Some(40),
                visitor_key(salt(), "example.com", c)
            )]
        );
        // Engagement reports draw on the visitor's budget of the minute.
        let capped = Shields::new(Vec::new(), &[], Some(1)).unwrap();
        let tight = Context {
            shields: &capped,
            ..cx
        };
        let view = decode_json(br#"{"u":"https://example.com/","d":"example.com"}"#).unwrap();
        assert_eq!(anonymise(&view, c, &tight, &mut sink, |_, _| {}), Ok(None));
        let again =
            decode_json(br#"{"n":"engagement","u":"https://example.com/","d":"example.com"}"#)
                .unwrap();
        let r = anonymise(&again, c, &tight, &mut sink, |_, _| {});
        assert_eq!(r, Ok(Some(DropReason::RateLimit)));
        assert_eq!(
            sink.engagements.len(),
            1,
            "the capped report reached no one"
        );

        // No open visit: said so.
        sink.open = false;
        let beacon =
            decode_json(br#"{"n":"engagement","u":"https://example.com/","d":"example.com"}"#)
                .unwrap();
        let r = anonymise(&beacon, c, &cx, &mut sink, |_, _| {});
        assert_eq!(r, Ok(Some(DropReason::NoVisit)));
    }

    #[test]
    fn a_custom_event_goes_to_each_site_with_its_allowed_props_only() {
        #[derive(Default)]
        struct Sink {
            views: usize,
            events: Vec<(
                String,
                String,
                String,
                Vec<(String, String)>,
                bool,
                VisitorKey,
            )>,
            dropped: Vec<PropDrop>,
        }
        impl Record for &mut Sink {
            fn visit(&mut self, _: &Visit<'_>) {
                self.views += 1;
            }
            fn event(&mut self, e: &CustomEvent<'_>) {
                let props = e.props.iter().map(|&(k, v)| (k.into(), v.into())).collect();
                self.events.push((
                    e.site.into(),
                    e.name.into(),
                    e.page.into(),
                    props,
                    e.interactive,
                    e.visitor,
                ));
            }
            fn prop_dropped(&mut self, reason: PropDrop) {
                self.dropped.push(reason);
            }
        }
        let any = SiteFilter::any();
        let allowed = EventProps::only(["plan"]).unwrap();
        let cx = Context {
            salt: salt(),
            now: 1_764_079_200,
            sites: &any,
            geo: None,
            honor_gpc: false,
            shields: &Shields::none(),
            event_props: &allowed,
        };
        let c = client("203.0.113.9");
        let body = r#"{"n":"Signup","u":"https://example.com/join?ref=x#f","d":"example.com,a.example.com","p":"{\"plan\":\"pro\",\"email\":\"jane@example.com\",\"token\":\"tok_123\"}","i":false}"#;
        let beacon = decode_json(body.as_bytes()).unwrap();
        let mut sink = Sink::default();
        let r = anonymise(&beacon, c, &cx, &mut sink, |_, _| {});
        assert_eq!(r, Ok(Some(DropReason::UrlNotOnSite)));
        assert_eq!(sink.views, 0, "an event is never a view");
        assert_eq!(
            sink.events,
            [(
                "example.com".into(),
                "Signup".into(),
                "/join".into(),
                vec![("plan".into(), "pro".into())],
                false,
                visitor_key(salt(), "example.com", c)
            )]
        );
        assert_eq!(sink.dropped, [PropDrop::NotAllowed, PropDrop::NotAllowed]);
        // A name that is an address, or that holds a bidirectional
        // override, is refused before anything is counted.
        for name in ["Invite jane@example.com", "Sign\u{202E}up"] {
            let body = format!(r#"{{"n":"{name}","u":"https://example.com/","d":"example.com"}}"#);
            let beacon = decode_json(body.as_bytes()).unwrap();
            let mut sink = Sink::default();
            let r = anonymise(&beacon, c, &cx, &mut sink, |_, _| {});
            assert_eq!(r, Err(BeaconError::InvalidName), "{name}");
            assert!(sink.events.is_empty());
        }
        // An excluded page or a bot counts nothing, props included.
        let bot = Client {
            user_agent: b"curl/8.0",
            ..c
        };
        let mut sink = Sink::default();
        let r = anonymise(&beacon, bot, &cx, &mut sink, |_, _| {});
        assert_eq!(r, Ok(Some(DropReason::Bot)));
        assert!(sink.events.is_empty() && sink.dropped.is_empty());
    }

    #[test]
    fn entries_are_views_without_a_same_site_referrer() {
        let cases = [
            (r#""r":null"#, true),
            (r#""r":"https://example.com/prev""#, false),
            (r#""r":"https://docs.example.com/""#, false),
            (r#""r":"https://www.example.com/""#, false),
            (r#""r":"https://notexample.com/""#, true),
            (r#""r":"garbage""#, true),
        ];
        for (r, entry) in cases {
            let body = format!(r#"{{"u":"https://example.com/x","d":"example.com",{r}}}"#);
            let (_, visits) = run(&body, &SiteFilter::any());
            assert_eq!(visits[0].entry, entry, "{r}");
        }
    }

    #[test]
    fn drops_say_why() {
        let only = SiteFilter::only(["example.com"]).unwrap();
        let cases = [
            (
                r#"{"u":"https://example.com/","d":"other.org"}"#,
                Some(DropReason::UnknownSite),
            ),
            (
                r#"{"u":"https://evil.net/","d":"example.com"}"#,
                Some(DropReason::UrlNotOnSite),
            ),
            (
                r#"{"u":"https://example.com.evil.net/","d":"example.com"}"#,
                Some(DropReason::UrlNotOnSite),
            ),
            (
                r#"{"n":"engagement","u":"https://example.com/","d":"example.com","sd":40,"e":1200}"#,
                Some(DropReason::NoVisit),
            ),
            (
                r#"{"u":"https://shop.example.com/","d":"example.com"}"#,
                None,
            ),
        ];
        for (body, want) in cases {
            let (r, visits) = run(body, &only);
            assert_eq!(r, Ok(want), "{body}");
            assert_eq!(visits.len(), usize::from(want.is_none()), "{body}");
        }
    }

    #[test]
    fn each_refusing_site_is_named_with_its_reason() {
        let only = SiteFilter::only(["example.com", "shop.example.com"]).unwrap();
        let body = r#"{"u":"https://shop.example.com/x","d":"Other.org,example.com,blog.example.com,shop.example.com"}"#;
        let beacon = decode_json(body.as_bytes()).unwrap();
        let cx = Context {
            salt: salt(),
            now: 1_700_000_000,
            sites: &only,
            geo: None,
            honor_gpc: false,
            shields: &crate::shields::Shields::none(),
            event_props: &EventProps::none(),
        };
        let mut counted = Vec::new();
        let mut refused = Vec::new();
        let r = anonymise(
            &beacon,
            client("203.0.113.9"),
            &cx,
            |v: &Visit<'_>| counted.push(v.site.to_owned()),
            |site, reason| refused.push((site.to_owned(), reason)),
        );
        assert_eq!(r, Ok(Some(DropReason::UnknownSite)));
        assert_eq!(counted, ["example.com", "shop.example.com"]);
        assert_eq!(
            refused,
            [
                ("other.org".to_owned(), DropReason::UnknownSite),
                ("blog.example.com".to_owned(), DropReason::UnknownSite),
            ]
        );
        // A bot's beacon names no site: it is refused before any is looked at.
        let mut named = 0;
        let bot = Client {
            user_agent: b"curl/8.0",
            ..client("203.0.113.9")
        };
        let r = anonymise(&beacon, bot, &cx, |_: &Visit<'_>| {}, |_, _| named += 1);
        assert_eq!((r, named), (Ok(Some(DropReason::Bot)), 0));
    }

    #[test]
    fn bad_urls_and_sites_are_errors() {
        let cases = [
            (
                r#"{"u":"data:text/html,hi","d":"example.com"}"#,
                BeaconError::InvalidUrl,
            ),
            (
                r#"{"u":"/relative","d":"example.com"}"#,
                BeaconError::InvalidUrl,
            ),
            (
                r#"{"u":"https://example.com/","d":"exa mple.com"}"#,
                BeaconError::InvalidDomain,
            ),
            (
                r#"{"u":"https://example.com/","d":"a.com,,b.com"}"#,
                BeaconError::InvalidDomain,
            ),
            (
                r#"{"u":"https://example.com/","d":"a.com,b.com,c.com,d.com,e.com,f.com,g.com,h.com,i.com"}"#,
                BeaconError::InvalidDomain,
            ),
        ];
        let many = format!(
            r#"{{"u":"https://example.com/","d":"{}"}}"#,
            "example.com,".repeat(1000)
        );
        assert_eq!(
            run(&many, &SiteFilter::any()).0,
            Err(BeaconError::InvalidDomain)
        );
        for (body, want) in cases {
            assert_eq!(run(body, &SiteFilter::any()).0, Err(want), "{body}");
        }
    }

    #[test]
    fn a_site_of_a_list_that_does_not_count_is_reported() {
        let (r, visits) = run(
            r#"{"u":"https://a.com/x","d":"a.com,example.com"}"#,
            &SiteFilter::any(),
        );
        assert_eq!(r, Ok(Some(DropReason::UrlNotOnSite)));
        assert_eq!(visits.len(), 1, "a.com still counts");
        assert_eq!(visits[0].site, "a.com");
    }

    #[test]
    fn a_domain_list_counts_once_per_site() {
        let (r, visits) = run(
            r#"{"u":"https://blog.example.com/","d":"example.com,blog.example.com,example.com"}"#,
            &SiteFilter::any(),
        );
        assert_eq!(r, Ok(None));
        let sites: Vec<&str> = visits.iter().map(|v| v.site).collect();
        assert_eq!(sites, ["example.com", "blog.example.com"]);
        // One person hashes differently on each site: sites are not linkable.
        assert_ne!(visits[0].visitor, visits[1].visitor);
    }

    #[test]
    fn visitor_keys_depend_on_every_input() {
        let base = visitor_key(salt(), "a.com", client("203.0.113.9"));
        assert_eq!(base, visitor_key(salt(), "a.com", client("203.0.113.9")));
        let other_salt = SaltKey::from_bytes([8; 16]);
        assert_ne!(
            base,
            visitor_key(other_salt, "a.com", client("203.0.113.9"))
        );
        assert_ne!(base, visitor_key(salt(), "b.com", client("203.0.113.9")));
        assert_ne!(base, visitor_key(salt(), "a.com", client("203.0.113.10")));
        let other_ua = Client {
            user_agent: b"curl/8.5.0",
            ..client("203.0.113.9")
        };
        assert_ne!(base, visitor_key(salt(), "a.com", other_ua));
        // The v4 address and its v6-mapped form are one client.
        assert_eq!(
            base,
            visitor_key(salt(), "a.com", client("::ffff:203.0.113.9"))
        );
        // The memo's digests are salted too, under a key of their own.
        assert_ne!(agent_digest(salt(), UA), agent_digest(other_salt, UA));
        assert_ne!(agent_digest(salt(), UA), base.sketch_input());
    }

    /// A salt outlives a restart within its day, so the same visitor must
    /// get the same key from every version, or an upgrade would count the
    /// day's visitors twice. This value was computed by the version of
    /// 2026-11-25; it must never change.
    /// SipHash-2-4 with key [7; 16] of `a.com`, 0xFF, ::ffff:203.0.113.9 and
    /// the test User-Agent, as a separate implementation of SipHash also
    /// computes it.
    const PINNED_KEY: u64 = 0xd8c1_fd9e_7325_30b4;

    #[test]
    fn visitor_keys_never_change() {
        let key = visitor_key(salt(), "a.com", client("203.0.113.9"));
        assert_eq!(key.sketch_input(), PINNED_KEY);
    }

    #[test]
    fn debug_output_hides_secrets() {
        assert_eq!(format!("{:?}", salt()), "SaltKey(<redacted>)");
        assert_eq!(format!("{:?}", client("203.0.113.9")), "Client(<redacted>)");
    }
}
