use super::*;

fn stores() -> (tempfile::TempDir, Vec<Store>) {
    let tmp = tempfile::tempdir().unwrap();
    let local = Store::local(tmp.path()).unwrap();
    (tmp, vec![local, Store::in_memory()])
}

#[test]
fn a_create_only_put_never_replaces_what_is_there() {
    let (_tmp, stores) = stores();
    for store in stores {
        let key = "pages/date=2026-12-08/part-1.parquet";
        assert_eq!(
            store.create(key, Bytes::from_static(b"first")).unwrap(),
            Created::New,
            "{store:?}"
        );
        assert_eq!(
            store.create(key, Bytes::from_static(b"second")).unwrap(),
            Created::Existed
        );
        assert_eq!(store.get(key).unwrap().as_deref(), Some(&b"first"[..]));
        assert_eq!(store.get("pages/none").unwrap(), None);
    }
}

#[test]
fn listings_name_files_and_folders_directly_under() {
    let (_tmp, stores) = stores();
    for store in stores {
        for key in [
            "pages/date=2026-12-07/b.parquet",
            "pages/date=2026-12-07/a.parquet",
            "pages/date=2026-12-08/c.parquet",
            "sources/date=2026-12-08/d.parquet",
        ] {
            store.create(key, Bytes::from_static(b"x")).unwrap();
        }
        let top = store.list("").unwrap();
        assert_eq!(top.dirs, ["pages", "sources"], "{store:?}");
        let pages = store.list("pages").unwrap();
        assert_eq!(pages.dirs, ["date=2026-12-07", "date=2026-12-08"]);
        assert!(pages.files.is_empty());
        let day = store.list("pages/date=2026-12-07").unwrap();
        assert_eq!(day.files, ["a.parquet", "b.parquet"]);
        assert_eq!(store.list("countries").unwrap(), Listing::default());

        store.delete("pages/date=2026-12-07/a.parquet").unwrap();
        store.delete("pages/date=2026-12-07/a.parquet").unwrap();
        assert_eq!(
            store.list("pages/date=2026-12-07").unwrap().files,
            ["b.parquet"]
        );
    }
}

#[test]
fn a_local_store_writes_plain_files_in_its_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path().to_str().unwrap()).unwrap();
    store
        .create(
            "pages/date=2026-12-08/part-1.parquet",
            Bytes::from_static(b"x"),
        )
        .unwrap();
    let file = tmp.path().join("pages/date=2026-12-08/part-1.parquet");
    assert_eq!(std::fs::read(&file).unwrap(), b"x");
    assert_eq!(
        store.local_dir(),
        Some(tmp.path().canonicalize().unwrap().as_path())
    );
    let url = format!("file://{}", tmp.path().display());
    let same = Store::open(&url).unwrap();
    assert_eq!(
        same.get("pages/date=2026-12-08/part-1.parquet")
            .unwrap()
            .as_deref(),
        Some(&b"x"[..])
    );
    std::fs::create_dir(tmp.path().join("salts")).unwrap();
    let salts = Store::local(&tmp.path().join("salts")).unwrap();
    assert!(store.contains(&salts) && !salts.contains(&store));
    assert!(matches!(
        Store::open(tmp.path().join("none").to_str().unwrap()),
        Err(Error::Missing(_))
    ));
}

#[test]
fn urls_are_checked_and_shown_without_credentials() {
    let e = Store::open("s3://key:secret@bucket/data")
        .unwrap_err()
        .to_string();
    assert!(!e.contains("secret"), "{e}");
    assert!(e.contains("environment"), "{e}");
    let e = Store::open("ftp://bucket/data").unwrap_err().to_string();
    assert!(e.contains("ftp://"), "{e}");
    assert!(Store::open("s3:///data").is_err());
    assert!(is_url("s3://b/p") && is_url("file:///tmp") && !is_url("/var/lib/footfall"));
    assert!(!is_url("./data"));
}

#[test]
fn a_location_inside_another_is_known() {
    let data = Store::open("s3://bucket/data").unwrap();
    assert!(data.contains(&Store::open("s3://bucket/data/salts").unwrap()));
    assert!(data.contains(&Store::open("s3://bucket/data").unwrap()));
    assert!(!data.contains(&Store::open("s3://bucket/private").unwrap()));
    assert!(!data.contains(&Store::open("s3://other/data").unwrap()));
    assert!(!data.contains(&Store::open("s3://bucket/database").unwrap()));
    assert!(Store::open("s3://bucket").unwrap().contains(&data));
    assert_eq!(data.show("pages/x"), "s3://bucket/data/pages/x");
}

#[test]
fn the_in_memory_store_honours_create_only_puts() {
    let store = Store::in_memory();
    assert!(block_on(store.probe_create_only("salts")).unwrap());
    assert_eq!(store.list("salts").unwrap(), Listing::default());
}

#[test]
fn racing_creators_of_one_key_see_one_winner() {
    // The race itself, against a store whose create-only put is atomic.
    let store = Store::in_memory();
    let winners: usize = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8u8)
            .map(|i| {
                let store = store.clone();
                scope.spawn(move || {
                    store
                        .create("salts/2026-12-08", Bytes::from(vec![i]))
                        .unwrap()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| usize::from(h.join().unwrap() == Created::New))
            .sum()
    });
    assert_eq!(winners, 1);
}
