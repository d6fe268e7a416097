//! What a User-Agent header may tell footfall: whether the sender is a bot,
//! and otherwise a browser family, an OS family and a device class. The
//! string itself goes no further.
//!
//! Two maintained lists do the work, both copied under `collector/data/`
//! (see its README for versions, licences and how to update them):
//! - bots: the patterns of the `isbot` npm package (omrilotan/isbot), the
//!   list most analytics and SSR frameworks use, ported to the `regex`
//!   crate's syntax, plus one rule of our own: every browser that can run
//!   the tracker sends `Mozilla/5.0 (`, so anything else (an empty header,
//!   `-`, curl, HTTP libraries, `node`) is not a visitor;
//! - browsers and OSes: uap-core's `regexes.yaml` (as JSON), through the
//!   official Rust engine `ua-parser`. Only its browser and OS tables are
//!   built; the device table costs 90 ms, 13 MiB and 8 µs a parse for a
//!   class two rules give (`iPad`, Android without `Mobile` are tablets).
//!
//! A parse costs 5–10 µs, several times the rest of a beacon, so verdicts
//! are remembered per User-Agent in a small table keyed by a hash of the
//! string under a key derived from the day's salt: the table holds hash
//! fragments and verdicts, never a User-Agent, and once a day's salt is
//! destroyed its entries match nothing and mean nothing.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};

use footfall_schemas::{Browser, Device, Os};

/// What a human's User-Agent says. Bots have none: they are not counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agent {
    pub browser: Browser,
    pub os: Os,
    /// From the User-Agent; a beacon's screen width takes precedence.
    pub device: Device,
}

/// The classification of a User-Agent header: `None` for a bot (or no
/// header), the families otherwise. Cheap after the first sight of a string.
///
/// `digest` is a keyed hash of `user_agent` (`anonymise::agent_digest`),
/// the memo's key: equal strings must have equal digests.
pub fn classify(user_agent: &[u8], digest: u64) -> Option<Agent> {
    let cx = &*CLASSIFIER;
    if let Some(verdict) = cx.memo.get(digest) {
        return verdict;
    }
    let verdict = cx.classify(&String::from_utf8_lossy(user_agent));
    cx.memo.put(digest, verdict);
    verdict
}

/// Builds the classifier now rather than on the first beacon (about 50 ms).
pub fn warm_up() {
    LazyLock::force(&CLASSIFIER);
}

static CLASSIFIER: LazyLock<Classifier> =
    LazyLock::new(|| Classifier::new().expect("the embedded User-Agent lists compile"));

/// Longer User-Agents are taken for bots without parsing.
pub const MAX_USER_AGENT: usize = 1024;

const UAP_REGEXES: &str = include_str!("../data/uap-core-regexes.json");
const BOT_PATTERNS: &str = include_str!("../data/isbot-patterns-rust.txt");

struct Classifier {
    browsers: ua_parser::user_agent::Extractor<'static>,
    oses: ua_parser::os::Extractor<'static>,
    bots: regex::Regex,
    /// isbot's `google` pattern, which has a look-behind the `regex` crate
    /// cannot express: it is checked on its own (see `is_google_bot`).
    google: regex::Regex,
    memo: Memo,
}

impl Classifier {
    fn new() -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let regexes: ua_parser::Regexes<'static> = serde_json::from_str(UAP_REGEXES)?;
        let browsers = ua_parser::user_agent::Builder::new()
            .push_all(regexes.user_agent_parsers)?
            .build()?;
        let oses = ua_parser::os::Builder::new()
            .push_all(regexes.os_parsers)?
            .build()?;
        let (google, others): (Vec<&str>, Vec<&str>) = BOT_PATTERNS
            .lines()
            .filter(|l| !l.is_empty())
            .partition(|l| l.starts_with("google("));
        let compile = |patterns: &[&str]| {
            regex::RegexBuilder::new(&patterns.join("|"))
                .case_insensitive(true)
                .build()
        };
        let bots = compile(&others)?;
        let google = compile(&google)?;
        Ok(Self {
            browsers,
            oses,
            bots,
            google,
            memo: Memo::new(),
        })
    }

    fn is_bot(&self, ua: &str) -> bool {
        // Real browsers' User-Agents are a few hundred bytes; a huge one is
        // not a visitor, and would cost the parsers milliseconds.
        ua.len() > MAX_USER_AGENT
            || !ua.starts_with("Mozilla/5.0 (")
            || self.bots.is_match(ua)
            || self.is_google_bot(ua)
    }

    /// isbot's `(?<! channel/|google/)google(?!…)`: the look-ahead is in
    /// the ported pattern; the look-behind is checked here, so in-app
    /// browsers that end `Channel/googleplay` are people, as in isbot.
    fn is_google_bot(&self, ua: &str) -> bool {
        self.google.find_iter(ua).any(|m| {
            let before = ua[..m.start()].to_ascii_lowercase();
            !before.ends_with(" channel/") && !before.ends_with("google/")
        })
    }

    fn classify(&self, ua: &str) -> Option<Agent> {
        if self.is_bot(ua) {
            return None;
        }
        let browser = self
            .browsers
            .extract(ua)
            .map_or(Browser::Other, |v| browser_family(&v.family));
        let os = self
            .oses
            .extract(ua)
            .map_or(Os::Other, |v| os_family(&v.os));
        let device = match os {
            Os::Ios if ua.contains("iPad") => Device::Tablet,
            Os::Ios => Device::Mobile,
            // Android tablets' browsers leave out the `Mobile` token.
            Os::Android if ua.contains("Mobile") => Device::Mobile,
            Os::Android => Device::Tablet,
            _ if ua.contains("Mobi") => Device::Mobile,
            _ => Device::Desktop,
        };
        Some(Agent {
            browser,
            os,
            device,
        })
    }
}

/// uap-core's browser families, folded into the families site owners know.
fn browser_family(family: &str) -> Browser {
    match family {
        "Chrome" | "Chrome Mobile" | "Chrome Mobile iOS" | "Chrome Mobile WebView" | "Chromium" => {
            Browser::Chrome
        }
        "Firefox" | "Firefox Mobile" | "Firefox iOS" | "Firefox Beta" | "Firefox Alpha"
        | "Firefox Nightly" | "Firefox Focus" => Browser::Firefox,
        "Safari" | "Mobile Safari" | "Mobile Safari UI/WKWebView" => Browser::Safari,
        "Edge" | "Edge Mobile" => Browser::Edge,
        "Opera" | "Opera Mobile" | "Opera Mini" | "Opera Tablet" | "Opera GX" => Browser::Opera,
        "Samsung Internet" => Browser::SamsungInternet,
        "Yandex Browser" => Browser::Yandex,
        "UC Browser" => Browser::UcBrowser,
        "Vivaldi" => Browser::Vivaldi,
        "IE" | "IE Mobile" => Browser::InternetExplorer,
        _ => Browser::Other,
    }
}

/// uap-core's OS names, folded into families.
fn os_family(os: &str) -> Os {
    match os {
        "Mac OS X" | "macOS" => Os::MacOs,
        "iOS" | "iPadOS" => Os::Ios,
        "Android" => Os::Android,
        "Chrome OS" | "ChromeOS" => Os::ChromeOs,
        "Linux" | "Ubuntu" | "Debian" | "Fedora" | "Arch Linux" | "Linux Mint" | "openSUSE"
        | "Gentoo" | "Red Hat" | "CentOS" | "Kubuntu" | "Mandriva" | "Slackware" => Os::Linux,
        name if name.starts_with("Windows") => Os::Windows,
        _ => Os::Other,
    }
}

/// A direct-mapped, lock-free memo from a User-Agent's hash to its verdict.
///
/// One word per slot: the hash's top 40 bits as a tag, then the verdict, so
/// a reader never sees half of a writer's entry. A new string evicts
/// whatever shared its slot. Two strings agreeing on slot and tag (one in
/// 2^40) would share a verdict; nothing worse can happen.
struct Memo {
    slots: Box<[AtomicU64]>,
}

impl Memo {
    /// 16,384 slots, 128 KiB: more distinct User-Agents than most sites
    /// see in a day.
    const SLOT_BITS: u32 = 14;
    const VALID: u64 = 1 << 23;
    const BOT: u64 = 1 << 22;

    fn new() -> Memo {
        Memo {
            slots: (0..1 << Self::SLOT_BITS)
                .map(|_| AtomicU64::new(0))
                .collect(),
        }
    }

    fn slot(&self, hash: u64) -> &AtomicU64 {
        &self.slots[(hash as usize) & ((1 << Self::SLOT_BITS) - 1)]
    }

    fn get(&self, hash: u64) -> Option<Option<Agent>> {
        let entry = self.slot(hash).load(Ordering::Relaxed);
        if entry & Self::VALID == 0 || entry >> 24 != hash >> 24 {
            return None;
        }
        if entry & Self::BOT != 0 {
            return Some(None);
        }
        let index = |shift: u32, bits: u32| ((entry >> shift) & ((1 << bits) - 1)) as usize;
        Some(Some(Agent {
            browser: *Browser::ALL.get(index(8, 8))?,
            os: *Os::ALL.get(index(4, 4))?,
            device: *Device::ALL.get(index(0, 4))?,
        }))
    }

    fn put(&self, hash: u64, verdict: Option<Agent>) {
        fn position<T: PartialEq>(all: &[T], x: &T) -> u64 {
            all.iter().position(|y| y == x).unwrap_or(0) as u64
        }
        let value = match verdict {
            None => Self::BOT,
            Some(a) => {
                position(Browser::ALL, &a.browser) << 8
                    | position(Os::ALL, &a.os) << 4
                    | position(Device::ALL, &a.device)
            }
        };
        let tag = hash >> 24 << 24;
        self.slot(hash)
            .store(tag | Self::VALID | value, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anonymise::{SaltKey, agent_digest};
    use Browser as B;
    use Device as D;
    use Os as O;

    /// Current browsers, as they identify themselves (2025–2026 versions).
    const BROWSERS: &[(&str, Browser, Os, Device)] = &[
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36",
            B::Chrome,
            O::Windows,
            D::Desktop,
        ),
        (
            "Mozilla/5.0 (X11; Linux x86_64; rv:145.0) Gecko/20100101 Firefox/145.0",
            B::Firefox,
            O::Linux,
            D::Desktop,
        ),
        (
            "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:145.0) Gecko/20100101 Firefox/145.0",
            B::Firefox,
            O::Linux,
            D::Desktop,
        ),
        (
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/26.1 Safari/605.1.15",
            B::Safari,
            O::MacOs,
            D::Desktop,
        ),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 18_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/26.1 Mobile/15E148 Safari/604.1",
            B::Safari,
            O::Ios,
            D::Mobile,
        ),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 18_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/142.0.7444.77 Mobile/15E148 Safari/604.1",
            B::Chrome,
            O::Ios,
            D::Mobile,
        ),
        (
            "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Mobile Safari/537.36",
            B::Chrome,
            O::Android,
            D::Mobile,
        ),
        (
            "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36",
            B::Chrome,
            O::Android,
            D::Tablet,
        ),
        (
            "Mozilla/5.0 (iPad; CPU OS 18_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/26.1 Mobile/15E148 Safari/604.1",
            B::Safari,
            O::Ios,
            D::Tablet,
        ),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36 Edg/142.0.0.0",
            B::Edge,
            O::Windows,
            D::Desktop,
        ),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/141.0.0.0 Safari/537.36 OPR/124.0.0.0",
            B::Opera,
            O::Windows,
            D::Desktop,
        ),
        (
            "Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S928B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/29.0 Chrome/136.0.0.0 Mobile Safari/537.36",
            B::SamsungInternet,
            O::Android,
            D::Mobile,
        ),
        (
            "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36",
            B::Chrome,
            O::ChromeOs,
            D::Desktop,
        ),
        (
            "Mozilla/5.0 (Android 15; Mobile; rv:145.0) Gecko/145.0 Firefox/145.0",
            B::Firefox,
            O::Android,
            D::Mobile,
        ),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/138.0.0.0 YaBrowser/25.8.0.0 Safari/537.36",
            B::Yandex,
            O::Windows,
            D::Desktop,
        ),
        (
            "Mozilla/5.0 (Linux; Android 14; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Mobile Safari/537.36 EdgA/142.0.0.0",
            B::Edge,
            O::Android,
            D::Mobile,
        ),
        // An app's in-app browser (Android WebView) from the Play store.
        (
            "Mozilla/5.0 (Linux; Android 14; SM-S918B Build/UP1A.231005.007; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/142.0.7444.102 Mobile Safari/537.36 Channel/googleplay",
            B::Chrome,
            O::Android,
            D::Mobile,
        ),
    ];

    /// Crawlers, AI bots, headless browsers, HTTP clients, link previewers.
    const BOTS: &[&str] = &[
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.7444.59 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm) Chrome/116.0.1938.76 Safari/537.36",
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)",
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; ClaudeBot/1.0; +claudebot@anthropic.com)",
        "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
        "Mozilla/5.0 (compatible; SemrushBot/7~bl; +http://www.semrush.com/bot.html)",
        "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
        "Mozilla/5.0 (compatible; Baiduspider/2.0; +http://www.baidu.com/search/spider.html)",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/13.1.1 Safari/605.1.15 (Applebot/0.1; +http://www.apple.com/go/applebot)",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/142.0.0.0 Safari/537.36",
        "Mozilla/5.0 (Linux; Android 11; moto g power (2022)) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/137.0.0.0 Mobile Safari/537.36 Chrome-Lighthouse",
        "curl/8.14.1",
        "Wget/1.25.0",
        "python-requests/2.32.5",
        "Python-urllib/3.13",
        "Go-http-client/2.0",
        "node",
        "axios/1.13.2",
        "okhttp/4.12.0",
        "Java/17.0.16",
        "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
        "Twitterbot/1.0",
        "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
        "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)",
        "WhatsApp/2.23.20.0",
        "TelegramBot (like TwitterBot)",
        "LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)",
        "-",
        "",
    ];

    /// Through the memo, as `anonymise` asks.
    fn memoised(ua: &[u8]) -> Option<Agent> {
        classify(ua, agent_digest(SaltKey::from_bytes([3; 16]), ua))
    }

    #[test]
    fn browsers_of_today_map_to_their_families() {
        for &(ua, browser, os, device) in BROWSERS {
            let want = Agent {
                browser,
                os,
                device,
            };
            assert_eq!(CLASSIFIER.classify(ua), Some(want), "{ua}");
            // Through the memo, twice: a miss, then a hit.
            assert_eq!(memoised(ua.as_bytes()), Some(want), "{ua}");
            assert_eq!(memoised(ua.as_bytes()), Some(want), "{ua}");
        }
    }

    #[test]
    fn bots_crawlers_clients_and_previewers_are_bots() {
        for ua in BOTS {
            assert_eq!(CLASSIFIER.classify(ua), None, "{ua}");
            assert_eq!(memoised(ua.as_bytes()), None, "{ua}");
            assert_eq!(memoised(ua.as_bytes()), None, "{ua}");
        }
        // Bytes that are not UTF-8 are read lossily, not trusted.
        assert_eq!(memoised(b"\xff\xfe curl"), None);
        // A browser's prefix padded past any real User-Agent's length.
        let huge = format!("{}{}", BROWSERS[0].0, " x".repeat(MAX_USER_AGENT));
        assert_eq!(memoised(huge.as_bytes()), None);
        // The google pattern's look-behind excuses only the match it precedes.
        let crawler = "Mozilla/5.0 (Linux; Android 14; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Mobile Safari/537.36 GoogleOther";
        assert!(CLASSIFIER.is_google_bot(crawler));
        assert!(
            !CLASSIFIER.bots.is_match(crawler),
            "caught by the google rule alone"
        );
        assert_eq!(memoised(crawler.as_bytes()), None);
        let webview = BROWSERS.last().unwrap().0;
        assert!(webview.ends_with("Channel/googleplay"));
        assert!(!CLASSIFIER.is_google_bot(webview));
    }

    #[test]
    fn the_memo_keeps_verdicts_apart_and_evicts_by_slot() {
        let memo = Memo::new();
        let human = Some(Agent {
            browser: B::SamsungInternet,
            os: O::ChromeOs,
            device: D::Tablet,
        });
        let h1 = 0xABCD_EF01_2345_6789;
        assert_eq!(memo.get(h1), None, "empty");
        memo.put(h1, human);
        assert_eq!(memo.get(h1), Some(human));
        // Same slot, another tag: a miss, then it takes the slot.
        let h2 = h1 ^ (1 << 40);
        assert_eq!(memo.get(h2), None);
        memo.put(h2, None);
        assert_eq!(memo.get(h2), Some(None));
        assert_eq!(memo.get(h1), None, "evicted");
        // Every family round-trips through the packing.
        for &browser in Browser::ALL {
            for &os in Os::ALL {
                for &device in Device::ALL {
                    let a = Some(Agent {
                        browser,
                        os,
                        device,
                    });
                    memo.put(h1, a);
                    assert_eq!(memo.get(h1), Some(a));
                }
            }
        }
    }
}
