//! Replays the fuzz corpus kept in git: every file under
//! `tests/fuzz_regressions/<target>/` goes through the same code and the
//! same invariant checks as the cargo-fuzz target of that name (see
//! `fuzz/README.md`). Crashes the fuzzers found are saved there, next to
//! hand-written seeds, so they stay fixed. Crashes not fixed yet are listed
//! in `tests/fuzz_regressions/known_failures.txt` and must still fail.

mod fuzz_invariants;

use std::collections::BTreeSet;
use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions")
}

/// The `<target>/<file>` names in `known_failures.txt`.
fn known_failures() -> BTreeSet<String> {
    let list = fs::read_to_string(corpus_dir().join("known_failures.txt")).unwrap_or_default();
    list.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

/// Runs `check` on every file of one target's folder and returns how many
/// there were. Fails naming every input that broke an invariant without
/// being a known failure, and every known failure that no longer fails.
fn replay(target: &str, check: fn(&[u8])) -> usize {
    let dir = corpus_dir().join(target);
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("readable directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();

    let known = known_failures();
    let mut broken = Vec::new();
    let mut fixed = Vec::new();
    for path in &files {
        let name = format!("{target}/{}", path.file_name().unwrap().to_string_lossy());
        let data = fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let failed = panic::catch_unwind(AssertUnwindSafe(|| check(&data))).is_err();
        match (failed, known.contains(&name)) {
            (true, false) => broken.push(name),
            (false, true) => fixed.push(name),
            _ => {}
        }
    }
    let missing: Vec<&String> = known
        .iter()
        .filter(|name| name.starts_with(&format!("{target}/")))
        .filter(|name| !files.iter().any(|f| f.ends_with(name.as_str())))
        .collect();
    assert!(
        broken.is_empty() && fixed.is_empty() && missing.is_empty(),
        "invariants broken by {broken:#?}\n\
         known failures that now pass (delete from known_failures.txt): {fixed:#?}\n\
         known failures with no such file: {missing:#?}"
    );
    files.len()
}

#[test]
fn decode_json_corpus() {
    let n = replay("decode_json", fuzz_invariants::check_json);
    assert!(n >= 25, "only {n} decode_json cases read");
}

#[test]
fn decode_query_corpus() {
    let n = replay("decode_query", fuzz_invariants::check_query);
    assert!(n >= 12, "only {n} decode_query cases read");
}

#[test]
fn normalise_corpus() {
    let n = replay("normalise", fuzz_invariants::check_normalise);
    assert!(n >= 20, "only {n} normalise cases read");
}
