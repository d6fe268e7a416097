// What the dashboard shows, kept in the URL's query so that a reload, the
// back button or a shared link gives the same view. Nothing is stored in
// the browser: no cookie, no localStorage.
//
//   ?site=example.com&period=7d&compare=1&metric=pageviews
//    &f=visit:source=news.ycombinator.com&f=event:page=/pricing
//   period=custom also carries &from=YYYY-MM-DD&to=YYYY-MM-DD

// Every dimension the panels show, with the words a person reads.
const DIMENSIONS = {
  "event:page": { name: "Page", column: "Page" },
  "visit:entry_page": { name: "Entry page", column: "Entry page" },
  "visit:exit_page": { name: "Exit page", column: "Exit page" },
  "visit:source": { name: "Source", column: "Source", none: "Direct / None" },
  "visit:utm_medium": { name: "UTM medium", column: "UTM medium", none: "(not set)" },
  "visit:utm_source": { name: "UTM source", column: "UTM source", none: "(not set)" },
  "visit:utm_campaign": { name: "UTM campaign", column: "UTM campaign", none: "(not set)" },
  "visit:browser": { name: "Browser", column: "Browser" },
  "visit:os": { name: "Operating system", column: "Operating system" },
  "visit:device": { name: "Device", column: "Device" },
  "visit:country": { name: "Country", column: "Country", none: "Unknown" },
  "event:goal": { name: "Goal", column: "Goal" },
  "event:name": { name: "Event", column: "Event" },
};

function dimensionInfo(dim) {
  if (DIMENSIONS[dim]) return DIMENSIONS[dim];
  if (dim.startsWith("event:props:")) {
    const key = dim.slice("event:props:".length);
    return { name: `Property ${key}`, column: key, none: "(none)" };
  }
  return { name: dim, column: dim };
}

const regionNames = new Intl.DisplayNames(["en"], { type: "region", fallback: "code" });

// A dimension's value as a person reads it: a country's name for its code,
// "Desktop" for "desktop", the dimension's word for no value.
function displayValue(dim, value) {
  if (value == null || value === "") return dimensionInfo(dim).none || "(none)";
  if (dim === "visit:country" && /^[A-Z]{2}$/.test(value)) {
    try {
      return regionNames.of(value);
    } catch {
      return value;
    }
  }
  if (dim === "visit:device") return value.charAt(0).toUpperCase() + value.slice(1);
  return String(value);
}

// A row can be turned into a filter unless it stands for "no value" or for
// footfall's overflow bucket, neither of which names a value to match.
function filterable(value) {
  return value != null && value !== "" && value !== "(other)";
}

const METRIC_IDS = ["visitors", "visits", "pageviews", "views_per_visit", "bounce_rate", "visit_duration"];

function readState(search = location.search) {
  const p = new URLSearchParams(search);
  const period = periodById(p.get("period")) ? p.get("period") : null;
  const state = {
    site: p.get("site") || null,
    period,
    from: p.get("from"),
    to: p.get("to"),
    compare: p.get("compare") === "1",
    metric: METRIC_IDS.includes(p.get("metric")) ? p.get("metric") : "visitors",
    filters: [],
  };
  if (period === "custom" && !(isDate(state.from) && isDate(state.to) && state.from <= state.to)) {
    state.period = null;
  }
  for (const f of p.getAll("f")) {
    const at = f.indexOf("=");
    if (at > 0) addFilter(state, f.slice(0, at), f.slice(at + 1));
  }
  return state;
}

function writeState(state) {
  const p = new URLSearchParams();
  if (state.site) p.set("site", state.site);
  if (state.period) p.set("period", state.period);
  if (state.period === "custom") {
    p.set("from", state.from);
    p.set("to", state.to);
  }
  if (state.compare) p.set("compare", "1");
  if (state.metric !== "visitors") p.set("metric", state.metric);
  for (const f of state.filters) p.append("f", `${f.dim}=${f.value}`);
  const s = p.toString();
  return s ? `?${s}` : location.pathname;
}

// One filter per dimension, as in Plausible: clicking another source
// replaces the source filter rather than asking for two sources at once.
function addFilter(state, dim, value) {
  state.filters = state.filters.filter((f) => f.dim !== dim).concat([{ dim, value }]);
}
