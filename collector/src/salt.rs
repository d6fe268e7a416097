//! The secret salt of each uniqueness window (one UTC day).
//!
//! The salt is what makes a visitor key unlinkable once its day is over: it
//! is random, kept in memory, optionally saved to `_state/salt-YYYY-MM-DD`
//! (mode 0600, in a 0700 folder) so a restart inside the day does not count
//! everyone twice, and deleted as soon as the day is over. Without it no one,
//! the operator included, can test whether a person is in a day's sketches.
//!
//! Collectors that count one site together share each day's salt through a
//! private store (`--salt-store`): the first to need a day's salt creates
//! `salts/YYYY-MM-DD` with a create-only put, the others read the winner's.
//! They keep today's and tomorrow's in memory only, fetch tomorrow's an
//! hour before midnight, and delete each day's object once the day and a
//! grace period are over. A collector without a salt for the current day
//! does not invent one (its visitors would be counted apart from the
//! others'): beacons are then answered and dropped as `no-salt`.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, NaiveDate};
use footfall_storage::{Created, Store};

use crate::anonymise::SaltKey;

const SECONDS_PER_DAY: i64 = 86_400;
const FILE_PREFIX: &str = "salt-";
/// The shared salts' folder in the salt store.
pub const SHARED_DIR: &str = "salts";
/// How long before midnight a shared store's next salt is fetched.
const FETCH_AHEAD: i64 = 3600;
/// How long after its day a shared salt object is kept, for collectors
/// whose clocks run a little behind.
const SHARED_GRACE: i64 = 600;

/// Hands out the salt of the day a timestamp falls in, rotating at midnight
/// UTC.
#[derive(Debug)]
pub struct SaltStore {
    /// Where salts are saved; `None` keeps them in memory only.
    dir: Option<PathBuf>,
    /// The current window's day number (days since the epoch) and key. A
    /// plain mutex: it is held for a copy of 40 bytes, except once a day.
    current: Mutex<Option<(i64, SaltKey)>>,
    /// The shared store, when collectors share salts.
    shared: Option<Shared>,
}

#[derive(Debug)]
struct Shared {
    store: Store,
    /// Salts fetched, by day number: today's and, late in the day,
    /// tomorrow's. Never written anywhere.
    known: Mutex<Vec<(i64, SaltKey)>>,
    /// Why the last fetch failed, if it did.
    error: Mutex<Option<String>>,
    /// The last day whose finished days' objects were deleted.
    cleaned: Mutex<i64>,
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
            shared: None,
        }
    }

    /// Salts are shared through `store` (see the module's notes); none is
    /// known until [`SaltStore::refresh`] fetches it.
    pub fn shared(store: Store) -> Self {
        Self {
            dir: None,
            current: Mutex::new(None),
            shared: Some(Shared {
                store,
                known: Mutex::new(Vec::new()),
                error: Mutex::new(None),
                cleaned: Mutex::new(i64::MIN),
            }),
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
            shared: None,
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
        if let Some(shared) = &self.shared {
            lock(&shared.known).retain(|&(d, _)| d >= day);
        }
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

    /// The key of the window that `now` (Unix seconds) falls in; `None`
    /// when salts are shared and that day's has not been fetched.
    pub fn key_for(&self, now: i64) -> Option<SaltKey> {
        let day = now.div_euclid(SECONDS_PER_DAY);
        if let Some(shared) = &self.shared {
            // That day's only: another day's would count its visitors
            // apart from the other collectors'.
            return lock(&shared.known)
                .iter()
                .find(|&&(d, _)| d == day)
                .map(|&(_, key)| key);
        }
        Some(self.local_key_for(day))
    }

    /// Why beacons cannot be counted now, if they cannot: salts are shared
    /// and today's is not known.
    pub fn health(&self, now: i64) -> Result<(), String> {
        match &self.shared {
            Some(shared) if self.key_for(now).is_none() => Err(match &*lock(&shared.error) {
                Some(why) => format!("no salt for today: the salt store fails: {why}"),
                None => "no salt for today yet: fetching it from the salt store".to_owned(),
            }),
            _ => Ok(()),
        }
    }

    /// For shared salts: fetches (or creates) today's salt if it is not
    /// known, tomorrow's from an hour before midnight, and deletes the
    /// objects of days over for longer than the grace. Does nothing for
    /// local salts. The binary calls it at start and every few seconds.
    pub async fn refresh(&self, now: i64) -> Result<(), String> {
        let Some(shared) = &self.shared else {
            return Ok(());
        };
        let today = now.div_euclid(SECONDS_PER_DAY);
        let mut wanted = vec![today];
        if now >= (today + 1) * SECONDS_PER_DAY - FETCH_AHEAD {
            wanted.push(today + 1);
        }
        let result: Result<(), String> = async {
            for day in wanted {
                if lock(&shared.known).iter().any(|&(d, _)| d == day) {
                    continue;
                }
                let key = fetch_or_create(&shared.store, day).await?;
                let mut known = lock(&shared.known);
                known.retain(|&(d, _)| d >= today && d != day);
                known.push((day, key));
            }
            if now >= today * SECONDS_PER_DAY + SHARED_GRACE && *lock(&shared.cleaned) < today {
                delete_finished(&shared.store, today).await?;
                *lock(&shared.cleaned) = today;
            }
            Ok(())
        }
        .await;
        let mut error = lock(&shared.error);
        match (&result, error.is_some()) {
            (Err(why), false) => tracing::error!(error = %why, "the salt store fails; retrying"),
            (Ok(()), true) => tracing::info!("the salt store answers again"),
            _ => {}
        }
        *error = result.as_ref().err().cloned();
        result
    }

    fn local_key_for(&self, day: i64) -> SaltKey {
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The shared salt of `day`: the one in the store, or a new one put there
/// create-only. A put that loses the race reads the winner's, retrying a
/// few times (a store may not show a new object at once).
async fn fetch_or_create(store: &Store, day: i64) -> Result<SaltKey, String> {
    let key = format!("{SHARED_DIR}/{}", date_of(day));
    let read = |bytes: Bytes| {
        std::str::from_utf8(&bytes)
            .ok()
            .and_then(|s| parse_hex(s.trim()))
            .ok_or_else(|| format!("{} is not a salt footfall wrote", store.show(&key)))
    };
    if let Some(bytes) = store.get_async(&key).await.map_err(|e| e.to_string())? {
        return read(bytes);
    }
    let new = random_key();
    match store
        .create_async(&key, Bytes::from(to_hex(new)))
        .await
        .map_err(|e| e.to_string())?
    {
        Created::New => {
            tracing::info!(day = %date_of(day), "created the day's shared salt");
            Ok(new)
        }
        Created::Existed => {
            let mut wait = Duration::from_millis(100);
            for _ in 0..5 {
                if let Some(bytes) = store.get_async(&key).await.map_err(|e| e.to_string())? {
                    tracing::info!(day = %date_of(day), "another collector created the day's shared salt; using it");
                    return read(bytes);
                }
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
            Err(format!(
                "{} exists but cannot be read yet",
                store.show(&key)
            ))
        }
    }
}

/// Deletes the shared salts of days before `today`.
async fn delete_finished(store: &Store, today: i64) -> Result<(), String> {
    let listing = store
        .list_async(SHARED_DIR)
        .await
        .map_err(|e| e.to_string())?;
    let today = date_of(today);
    for name in listing.files {
        let Ok(day) = NaiveDate::parse_from_str(&name, "%Y-%m-%d") else {
            continue;
        };
        if day < today {
            store
                .delete_async(&format!("{SHARED_DIR}/{name}"))
                .await
                .map_err(|e| e.to_string())?;
            tracing::info!(day = %name, "destroyed a finished day's shared salt");
        }
    }
    Ok(())
}

fn date_of(day: i64) -> NaiveDate {
    DateTime::from_timestamp(day * SECONDS_PER_DAY, 0)
        .map(|t| t.date_naive())
        .unwrap_or(NaiveDate::MIN)
}

fn random_key() -> SaltKey {
    let mut bytes = [0u8; 16];
    // The OS random source failing is not something to limp on from: a
    // predictable salt would make visitor keys guessable.
    getrandom::fill(&mut bytes).expect("the operating system's random source failed");
    SaltKey::from_bytes(bytes)
}

fn file_name(day: i64) -> String {
    format!("{FILE_PREFIX}{}", date_of(day).format("%Y-%m-%d"))
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
        let a = store.key_for(DAY1 + 5).unwrap();
        assert_eq!(a, store.key_for(DAY1 + SECONDS_PER_DAY - 1).unwrap());
        let b = store.key_for(DAY1 + SECONDS_PER_DAY).unwrap();
        assert_ne!(a, b);
        // Time going backwards never brings an old salt back.
        assert_eq!(store.key_for(DAY1 + 10), Some(b));
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
        let key = store.key_for(DAY1 + 60).unwrap();
        store.expire(DAY1 + 3600);
        assert!(dir.join("salt-2025-11-25").exists(), "still its day");
        assert_eq!(store.key_for(DAY1 + 7200), Some(key));

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
        let key = store.key_for(DAY1).unwrap();
        let saved = fs::read_to_string(dir.join("salt-2025-11-25")).unwrap();
        assert_eq!(parse_hex(&saved), Some(key));
    }

    fn shared_pair() -> (Store, SaltStore, SaltStore) {
        let store = Store::in_memory();
        (
            store.clone(),
            SaltStore::shared(store.clone()),
            SaltStore::shared(store),
        )
    }

    #[tokio::test]
    async fn collectors_sharing_a_store_share_each_days_salt() {
        let (store, a, b) = shared_pair();
        let now = DAY1 + 3600;
        assert_eq!(a.key_for(now), None, "nothing is invented");
        assert!(a.health(now).is_err());
        a.refresh(now).await.unwrap();
        b.refresh(now).await.unwrap();
        let key = a.key_for(now).unwrap();
        assert_eq!(b.key_for(now), Some(key));
        assert!(a.health(now).is_ok());
        assert_eq!(store.list(SHARED_DIR).unwrap().files, ["2025-11-25"]);
        // Nothing on a local disk: shared salts live in memory only.
        assert!(a.dir.is_none());

        // An hour before midnight the next day's is fetched, so the
        // change of day needs no store.
        let late = DAY1 + SECONDS_PER_DAY - 1800;
        a.refresh(late).await.unwrap();
        b.refresh(late).await.unwrap();
        let next = DAY1 + SECONDS_PER_DAY + 5;
        a.expire(next);
        assert_eq!(a.key_for(next), b.key_for(next));
        assert_ne!(a.key_for(next), Some(key));
        assert_eq!(
            a.key_for(DAY1 + 3600),
            None,
            "yesterday's is gone from memory"
        );

        // After the grace, the finished day's object is deleted.
        a.refresh(next).await.unwrap();
        assert_eq!(store.list(SHARED_DIR).unwrap().files.len(), 2);
        a.refresh(DAY1 + SECONDS_PER_DAY + SHARED_GRACE)
            .await
            .unwrap();
        assert_eq!(store.list(SHARED_DIR).unwrap().files, ["2025-11-26"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn racing_collectors_agree_on_one_salt() {
        let store = Store::in_memory();
        let now = DAY1 + 60;
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let salts = std::sync::Arc::new(SaltStore::shared(store.clone()));
                tokio::spawn(async move {
                    salts.refresh(now).await.unwrap();
                    salts.key_for(now).unwrap()
                })
            })
            .collect();
        let mut keys = Vec::new();
        for t in tasks {
            keys.push(t.await.unwrap());
        }
        assert!(keys.iter().all(|k| *k == keys[0]), "one salt for all");
    }

    #[tokio::test]
    async fn a_salt_object_that_is_not_one_is_an_error_and_left_alone() {
        let store = Store::in_memory();
        store
            .create("salts/2025-11-25", Bytes::from_static(b"garbage-text"))
            .unwrap();
        let a = SaltStore::shared(store.clone());
        let e = a.refresh(DAY1 + 60).await.unwrap_err();
        assert!(
            e.contains("salts/2025-11-25") && !e.contains("garbage"),
            "{e}"
        );
        assert_eq!(a.key_for(DAY1 + 60), None);
        assert!(
            a.health(DAY1 + 60)
                .unwrap_err()
                .contains("salt store fails")
        );
        assert_eq!(
            store.get("salts/2025-11-25").unwrap().as_deref(),
            Some(&b"garbage-text"[..])
        );
    }

    #[test]
    fn hex_round_trips() {
        let key = SaltKey::from_bytes(*b"0123456789abcdef");
        assert_eq!(parse_hex(&to_hex(key)), Some(key));
        assert_eq!(parse_hex("zz"), None);
    }
}
