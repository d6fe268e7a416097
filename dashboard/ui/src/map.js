// The world map of the Locations card: an SVG projected from Natural
// Earth's countries at build time (scripts/build-dashboard.mjs), one
// <path data-cc="FR"> per country, fetched once from its hashed URL and
// coloured here by visitors. Markup from our own origin with no script or
// style in it, so inserting it is fine under the CSP.

const MAP_STEPS = 5;
let mapSvg = null;

async function loadMapSvg(signal) {
  if (mapSvg) return mapSvg;
  const url = document.querySelector('meta[name="footfall-map"]').content;
  const res = await fetch(url, { signal });
  if (!res.ok) throw new ApiError(`The map could not be loaded (${res.status}).`, res.status);
  const holder = h("div");
  holder.innerHTML = await res.text();
  mapSvg = holder.querySelector("svg");
  mapSvg.setAttribute("role", "img");
  return mapSvg;
}

// Colours the map: each country with visitors gets one of five shades by
// its share of the busiest country's visitors, and a title saying its
// number (the hover text). Clicking a coloured country filters by it.
function paintMap(svg, rows, onPick) {
  const byCode = new Map(rows.filter((r) => r.value).map((r) => [r.value, r.count]));
  const max = Math.max(0, ...byCode.values());
  for (const path of svg.querySelectorAll("path[data-cc]")) {
    const cc = path.getAttribute("data-cc");
    const n = byCode.get(cc) || 0;
    // By the square root of the share: traffic is so skewed that a linear
    // scale leaves every country but the first in the palest shade.
    const step = n > 0 ? Math.max(1, Math.ceil(Math.sqrt(n / max) * MAP_STEPS)) : 0;
    path.setAttribute("class", `c${step}`);
    path.replaceChildren();
    if (n > 0) {
      path.append(document.createElementNS("http://www.w3.org/2000/svg", "title"));
      path.firstChild.textContent = `${displayValue("visit:country", cc)}: ${fmtExact(n)} visitor${n === 1 ? "" : "s"}`;
    }
  }
  svg.onclick = (e) => {
    const cc = e.target.getAttribute && e.target.getAttribute("data-cc");
    if (cc && byCode.has(cc)) onPick(cc);
  };
  const named = [...byCode.keys()].slice(0, 3).map((cc) => displayValue("visit:country", cc));
  svg.setAttribute(
    "aria-label",
    byCode.size
      ? `World map of visitors by country; most from ${named.join(", ")}. The Countries tab lists them.`
      : "World map of visitors by country: none in this period.",
  );
}

function mapLegend(max) {
  return h(
    "div",
    { class: "map-legend", "aria-hidden": "true" },
    h("span", { text: "0" }),
    h("span", { class: "ramp" }, ...Array.from({ length: MAP_STEPS }, (_, i) => h("span", { class: `c${i + 1}` }))),
    h("span", { text: fmtCompact(max) }),
  );
}
