//! Who may use the dashboard listener: anyone on a loopback address, else
//! only a request carrying the secret, as `Authorization: Bearer <secret>`
//! (Plausible's API keys, Prometheus' `authorization`) or HTTP Basic with
//! the secret as the password (a browser's own prompt). Compared in
//! constant time, never logged, and a client that keeps failing waits
//! longer for each answer.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use http::header::{self, HeaderMap};
use subtle::ConstantTimeEq;

/// The secret a request must carry. Its `Debug` says only that there is
/// one.
#[derive(Clone)]
pub struct Secret(Arc<[u8]>);

impl Secret {
    /// A secret of at least 16 bytes (surrounding whitespace, such as a
    /// file's last newline, is not part of it).
    pub fn new(text: &str) -> Result<Self, &'static str> {
        let text = text.trim();
        if text.len() < 16 {
            return Err("the dashboard password must be at least 16 characters");
        }
        Ok(Self(Arc::from(text.as_bytes())))
    }

    /// True when `headers` carry this secret, as a bearer token or as the
    /// password of HTTP Basic (any user name).
    pub fn admits(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes()) else {
            return false;
        };
        // The scheme's name is case-insensitive (RFC 9110).
        let scheme = |name: &[u8]| {
            value.len() > name.len() + 1
                && value[..name.len()].eq_ignore_ascii_case(name)
                && value[name.len()] == b' '
        };
        let given = if scheme(b"bearer") {
            value[7..].trim_ascii().to_vec()
        } else if scheme(b"basic") {
            let Ok(decoded) =
                base64::engine::general_purpose::STANDARD.decode(value[6..].trim_ascii())
            else {
                return false;
            };
            match decoded.iter().position(|&b| b == b':') {
                Some(colon) => decoded[colon + 1..].to_vec(),
                None => return false,
            }
        } else {
            return false;
        };
        // Constant time in the content; a length mismatch is refused too,
        // in time that depends on the lengths only.
        bool::from(given.ct_eq(&self.0))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Failed attempts per client address, to slow down guessing: each answer
/// to a client with recent failures waits 250 ms doubling per failure, up
/// to 8 s; a client's record is forgotten 10 minutes after its last
/// failure. At most [`Backoff::MAX_CLIENTS`] are remembered (then the
/// oldest half is forgotten), so a flood of addresses cannot grow it.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl Backoff {
    const MAX_CLIENTS: usize = 4096;
    const FORGET: Duration = Duration::from_secs(600);

    /// How long to wait before answering `client` (zero without recent
    /// failures).
    pub fn delay(&self, client: IpAddr, now: Instant) -> Duration {
        let failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        match failures.get(&client) {
            Some(&(n, last)) if now.duration_since(last) < Self::FORGET => {
                (Duration::from_millis(250) * 2u32.saturating_pow(n.saturating_sub(1).min(5)))
                    .min(Duration::from_secs(8))
            }
            _ => Duration::ZERO,
        }
    }

    /// Records a failed attempt of `client`.
    pub fn failed(&self, client: IpAddr, now: Instant) {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        if failures.len() >= Self::MAX_CLIENTS {
            failures.retain(|_, (_, last)| now.duration_since(*last) < Self::FORGET);
            if failures.len() >= Self::MAX_CLIENTS {
                let mut ages: Vec<Instant> = failures.values().map(|(_, t)| *t).collect();
                ages.sort();
                let cut = ages[ages.len() / 2];
                failures.retain(|_, (_, last)| *last > cut);
            }
        }
        let entry = failures.entry(client).or_insert((0, now));
        if now.duration_since(entry.1) >= Self::FORGET {
            entry.0 = 0;
        }
        entry.0 = entry.0.saturating_add(1);
        entry.1 = now;
    }

    /// Forgets `client`'s failures (it showed the secret).
    pub fn succeeded(&self, client: IpAddr) {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        failures.remove(&client);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn with(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(auth).unwrap());
        h
    }

    fn basic(user_pass: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user_pass)
        )
    }

    #[test]
    fn only_the_secret_is_admitted() {
        let s = Secret::new("correct horse battery staple\n").unwrap();
        assert!(s.admits(&with("Bearer correct horse battery staple")));
        assert!(!s.admits(&with("Bearer correct horse battery stapl")));
        assert!(!s.admits(&with("Bearer correct horse battery staple!")));
        assert!(s.admits(&with("bearer correct horse battery staple")));
        assert!(!s.admits(&with("Bearer")));
        assert!(!s.admits(&with("Bearercorrect horse battery staple")));
        assert!(!s.admits(&HeaderMap::new()));
        assert!(Secret::new("short").is_err());
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
    }

    #[test]
    fn a_browser_shows_it_as_the_password_of_basic() {
        let s = Secret::new("correct horse battery staple").unwrap();
        assert!(s.admits(&with(&basic("owner:correct horse battery staple"))));
        assert!(s.admits(&with(&basic(":correct horse battery staple"))));
        assert!(!s.admits(&with(&basic("correct horse battery staple"))));
        assert!(!s.admits(&with(&basic("owner:wrong"))));
        assert!(!s.admits(&with("Basic not base64!")));
    }

    #[test]
    fn repeated_failures_wait_longer_and_are_forgotten() {
        let b = Backoff::default();
        let ip: IpAddr = "203.0.113.9".parse().unwrap();
        let t0 = Instant::now();
        assert_eq!(b.delay(ip, t0), Duration::ZERO);
        b.failed(ip, t0);
        assert_eq!(b.delay(ip, t0), Duration::from_millis(250));
        for _ in 0..3 {
            b.failed(ip, t0);
        }
        assert_eq!(b.delay(ip, t0), Duration::from_secs(2));
        for _ in 0..10 {
            b.failed(ip, t0);
        }
        assert_eq!(b.delay(ip, t0), Duration::from_secs(8));
        let other: IpAddr = "198.51.100.1".parse().unwrap();
        assert_eq!(b.delay(other, t0), Duration::ZERO, "per client");
        assert_eq!(b.delay(ip, t0 + Backoff::FORGET), Duration::ZERO);
        b.succeeded(ip);
        assert_eq!(b.delay(ip, t0), Duration::ZERO);
        // A flood of addresses does not grow it without bound.
        for i in 0..(Backoff::MAX_CLIENTS as u32 + 10) {
            b.failed(
                IpAddr::from(i.to_be_bytes()),
                t0 + Duration::from_millis(i.into()),
            );
        }
        assert!(b.failures.lock().unwrap().len() <= Backoff::MAX_CLIENTS);
    }
}
