// Written by scripts/build-dashboard.mjs: do not edit; run `node scripts/build-dashboard.mjs`.
// (path, content type, immutable, bytes, gzipped bytes)
&[
    ("app.d15b7dbf.css", "text/css; charset=utf-8", true, include_bytes!("app.d15b7dbf.css"), include_bytes!("app.d15b7dbf.css.gz")),
    ("app.d9f51464.js", "text/javascript; charset=utf-8", true, include_bytes!("app.d9f51464.js"), include_bytes!("app.d9f51464.js.gz")),
    ("favicon.cd7d494e.svg", "image/svg+xml", true, include_bytes!("favicon.cd7d494e.svg"), include_bytes!("favicon.cd7d494e.svg.gz")),
    ("index.html", "text/html; charset=utf-8", false, include_bytes!("index.html"), include_bytes!("index.html.gz")),
    ("licenses/natural-earth.NOTICE.txt", "text/plain; charset=utf-8", false, include_bytes!("licenses/natural-earth.NOTICE.txt"), include_bytes!("licenses/natural-earth.NOTICE.txt.gz")),
    ("licenses/NOTICES.txt", "text/plain; charset=utf-8", false, include_bytes!("licenses/NOTICES.txt"), include_bytes!("licenses/NOTICES.txt.gz")),
    ("licenses/uPlot.LICENSE.txt", "text/plain; charset=utf-8", false, include_bytes!("licenses/uPlot.LICENSE.txt"), include_bytes!("licenses/uPlot.LICENSE.txt.gz")),
    ("licenses/world-atlas.LICENSE.txt", "text/plain; charset=utf-8", false, include_bytes!("licenses/world-atlas.LICENSE.txt"), include_bytes!("licenses/world-atlas.LICENSE.txt.gz")),
    ("map.9a27c858.svg", "image/svg+xml", true, include_bytes!("map.9a27c858.svg"), include_bytes!("map.9a27c858.svg.gz")),
]
