//! The dashboard's page and its assets, embedded from `dashboard/ui/dist/`
//! (built at development time by `scripts/build-dashboard.mjs`, which also
//! writes the table below): served as they are, pre-compressed, with
//! content-hashed names cached for a year.

/// (path, content type, immutable, bytes, gzipped bytes)
type Asset = (
    &'static str,
    &'static str,
    bool,
    &'static [u8],
    &'static [u8],
);

const ASSETS: &[Asset] = include!("../ui/dist/assets.rs");

/// One file as served.
#[derive(Debug, Clone, Copy)]
pub struct File {
    pub content_type: &'static str,
    /// Content-hashed: may be cached for a year.
    pub immutable: bool,
    pub bytes: &'static [u8],
    pub gzipped: &'static [u8],
}

/// The file at `path` (`/` is the page), if there is one.
pub fn get(path: &str) -> Option<File> {
    let name = match path.strip_prefix('/')? {
        "" => "index.html",
        name => name,
    };
    ASSETS
        .iter()
        .find(|a| a.0 == name)
        .map(|&(_, content_type, immutable, bytes, gzipped)| File {
            content_type,
            immutable,
            bytes,
            gzipped,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_names_only_assets_that_are_served() {
        let page = std::str::from_utf8(get("/").unwrap().bytes).unwrap();
        let mut named = 0;
        for part in page.split("\"./").skip(1) {
            let name = part.split('"').next().unwrap();
            assert!(get(&format!("/{name}")).is_some(), "{name}");
            named += 1;
        }
        assert!(named >= 3, "the script, the stylesheet and the icon");
        assert!(
            !page.contains("<style") && !page.contains("style="),
            "the CSP allows no inline style"
        );
        assert!(!page.contains("<script>"), "nor an inline script");
    }

    #[test]
    fn every_asset_has_its_gzipped_copy_and_a_type() {
        for &(path, content_type, immutable, bytes, gzipped) in ASSETS {
            assert!(
                !bytes.is_empty() && gzipped.starts_with(&[0x1f, 0x8b]),
                "{path}"
            );
            assert!(content_type.contains('/'), "{path}");
            // Hashed names only are cached for good.
            assert_eq!(
                immutable,
                path.matches('.').count() >= 2 && !path.starts_with("licenses/"),
                "{path}"
            );
        }
        assert!(get("/nope.js").is_none());
        assert!(get("index.html").is_none(), "paths start with /");
    }
}
