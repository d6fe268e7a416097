//! The secret salt of each uniqueness window (one UTC day).
//!
//! The salt is what makes a visitor key unlinkable once its day is over: it
//! is random, kept in memory, optionally saved to `_state/salt-YYYY-MM-DD`
//! (mode 0600, in a 0700 folder) so a restart inside the day does not count
//! everyone twice, and deleted as soon as the day is over. Without it no one,
//! the operator included, can test whether a person is in a day's sketches.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, NaiveDate};

use crate::anonymise::SaltKey;

const SECONDS_PER_DAY: i64 = 86_400;
const FILE_PREFIX: &str = "salt-";

/// Hands out the salt of the day a timestamp falls in, rotating at midnight
/// UTC.
#[derive(Debug)]
pub struct SaltStore {
    /// Where salts are saved; `None` keeps them in memory only.
    dir: Option<PathBuf>,
    /// The current window's day number (days since the epoch) and key. A
    /// plain mutex: it is held for a copy of 40 bytes, except once a day.
    current: Mutex<Option<(i64, SaltKey)>>,
}

/// A state folder that cannot be prepared. Salt persistence is a
/// convenience, but a data dir whose state cannot be made private is refused.
#[derive(Debug, thiserror::Error)]
#[error("cannot prepare the state folder {}: {source}", path.display())]
pub struct SaltError {
    path: PathBuf,
    source: std::io::Error,
}

impl SaltStore {
    /// Salts live in memory only: a restart starts a new window's salt, so
    /// visitors seen before and after it are counted twice that day.
    pub fn in_memory() -> Self {
        Self {
            dir: None,
            current: Mutex::new(None),
        }
    }

    /// Salts are saved in `dir`, which is created with mode 0700 (and set to
    /// it if it exists).
    pub fn persistent(dir: &Path) -> Result<Self, SaltError> {
        let err = |source| SaltError {
            path: dir.to_owned(),
            source,
        };
        fs::create_dir_all(dir).map_err(err)?;
        set_mode(dir, 0o700).map_err(err)?;
        Ok(Self {
            dir: Some(dir.to_owned()),
            current: Mutex::new(None),
        })
    }

    /// Destroys every salt of a day before `now`'s, in memory and on disk.
    ///
    /// Rotation alone is not enough: it happens on the first beacon of a new
    /// day, and a quiet night (or a server stopped for a week) would keep
    /// yesterday's salt alive. The binary calls this at start and every
    /// minute, so a salt dies within a minute of its day's end.
    pub fn expire(&self, now: i64) {
        let day = now.div_euclid(SECONDS_PER_DAY);
        {
            let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
            if current.is_some_and(|(d, _)| d < day) {
                *current = None;
            }
        }
        if let Some(dir) = &self.dir {
            remove_other_salts(dir, &file_name(day));
        }
    }

    /// The key of the window that `now` (Unix seconds) falls in.
    pub fn key_for(&self, now: i64) -> SaltKey {
        let day = now.div_euclid(SECONDS_PER_DAY);
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        match *current {
            Some((d, key)) if d == day => key,
            // A clock that went back by a few seconds across midnight gets
            // the current salt rather than resurrecting a destroyed one.
            Some((d, key)) if d > day => key,
            _ => {
                let key = self.load_or_create(day);
                *current = Some((day, key));
                key
            }
        }
    }

    fn load_or_create(&self, day: i64) -> SaltKey {
        let Some(dir) = &self.dir else {
            return random_key();
        };
        let name = file_name(day);
        let path = dir.join(&name);
        let key = match fs::read_to_string(&path)
            .ok()
            .and_then(|s| parse_hex(s.trim()))
        {
            Some(key) => {
                tracing::info!(file = %name, "reusing today's salt from the state folder");
                key
            }
            None => {
                let key = random_key();
                if let Err(e) = write_private(&path, &to_hex(key)) {
                    tracing::error!(error = %e, path = %path.display(),
                        "cannot save the salt; a restart today will count visitors twice");
                }
                key
            }
        };
        remove_other_salts(dir, &name);
        key
    }
}

fn random_key() -> SaltKey {
    let mut bytes = [0u8; 16];
    // The OS random source failing is not something to limp on from: a
    // predictable salt would make visitor keys guessable.
    getrandom::fill(&mut bytes).expect("the operating system's random source failed");
    SaltKey::from_bytes(bytes)
}

fn file_name(day: i64) -> String {
    let date = DateTime::from_timestamp(day * SECONDS_PER_DAY, 0)
        .map(|t| t.date_naive())
        .unwrap_or(NaiveDate::MIN);
    format!("{FILE_PREFIX}{}", date.format("%Y-%m-%d"))
}

/// Destroys every salt but the current one: a finished day's salt must not
/// outlive its day.
fn remove_other_salts(dir: &Path, keep: &str) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with(FILE_PREFIX) && name != keep {
            match fs::remove_file(entry.path()) {
                Ok(()) => tracing::info!(file = %name, "destroyed a finished day's salt"),
                Err(e) => tracing::error!(error = %e, file = %name, "cannot delete an old salt"),
            }
        }
    }
}

/// Writes `contents` to `path` atomically, readable by the owner alone from
/// the moment the file exists.
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp)?;
    set_mode(&tmp, 0o600)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    fs::rename(&tmp, path)
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_: &Path, _: u32) -> std::io::Result<()> {
    Ok(())
}

fn to_hex(key: SaltKey) -> String {
    key.secret.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_hex(s: &str) -> Option<SaltKey> {
    if s.len() != 32 || !s.is_ascii() {
        return None;
    }
    let mut bytes = [0u8; 16];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(SaltKey::from_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY1: i64 = 1_764_028_800; // 2025-11-25T00:00:00Z

    #[test]
    fn one_salt_per_utc_day() {
        let store = SaltStore::in_memory();
        let a = store.key_for(DAY1 + 5);
        assert_eq!(a, store.key_for(DAY1 + SECONDS_PER_DAY - 1));
        let b = store.key_for(DAY1 + SECONDS_PER_DAY);
        assert_ne!(a, b);
        // Time going backwards never brings an old salt back.
        assert_eq!(store.key_for(DAY1 + 10), b);
    }

    #[cfg(unix)]
    #[test]
    fn saved_salts_survive_a_restart_and_die_with_their_day() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("_state");
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;

        let first = SaltStore::persistent(&dir).unwrap();
        let key = first.key_for(DAY1 + 60);
        assert_eq!(mode(&dir), 0o700);
        let file = dir.join("salt-2025-11-25");
        assert_eq!(mode(&file), 0o600);

        let restarted = SaltStore::persistent(&dir).unwrap();
        assert_eq!(restarted.key_for(DAY1 + 3600), key, "same day, same salt");

        let next = restarted.key_for(DAY1 + SECONDS_PER_DAY);
        assert_ne!(next, key);
        assert!(!file.exists(), "yesterday's salt is destroyed");
        assert!(dir.join("salt-2025-11-26").exists());
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn a_finished_days_salt_is_destroyed_even_without_traffic() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("_state");
        let store = SaltStore::persistent(&dir).unwrap();
        let key = store.key_for(DAY1 + 60);
        store.expire(DAY1 + 3600);
        assert!(dir.join("salt-2025-11-25").exists(), "still its day");
        assert_eq!(store.key_for(DAY1 + 7200), key);

        // Midnight passes and no beacon comes: the salt goes anyway.
        store.expire(DAY1 + SECONDS_PER_DAY + 30);
        assert!(!dir.join("salt-2025-11-25").exists());
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 0);
        assert!(store.current.lock().unwrap().is_none(), "and from memory");

        // A store opened days later never resurrects it.
        fs::write(dir.join("salt-2025-11-25"), to_hex(key)).unwrap();
        let later = SaltStore::persistent(&dir).unwrap();
        later.expire(DAY1 + 5 * SECONDS_PER_DAY);
        assert!(!dir.join("salt-2025-11-25").exists());
    }

    #[test]
    fn a_corrupt_salt_file_is_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("_state");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("salt-2025-11-25"), "not hex").unwrap();
        let store = SaltStore::persistent(&dir).unwrap();
        let key = store.key_for(DAY1);
        let saved = fs::read_to_string(dir.join("salt-2025-11-25")).unwrap();
        assert_eq!(parse_hex(&saved), Some(key));
    }

    #[test]
    fn hex_round_trips() {
        let key = SaltKey::from_bytes(*b"0123456789abcdef");
        assert_eq!(parse_hex(&to_hex(key)), Some(key));
        assert_eq!(parse_hex("zz"), None);
    }
}
