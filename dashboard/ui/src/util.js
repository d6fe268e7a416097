// Small DOM and formatting helpers shared by every module.
//
// The page runs under a Content-Security-Policy without 'unsafe-inline', so
// nothing here writes a `style` attribute, inline handler or <style> block:
// elements are made with h() and styled by class names. The few sizes that
// depend on data (bar widths, the tooltip's place) are set through CSSOM
// (`el.style.width = …`), which that policy allows.

const $ = (selector, root = document) => root.querySelector(selector);

// h("button", { class: "x", onclick: f, "aria-label": "…" }, child, …)
// Attributes whose value is null, undefined or false are left out; `text`
// sets textContent; `on…` adds a listener (never an inline handler).
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [key, value] of Object.entries(attrs)) {
      if (value == null || value === false) continue;
      if (key === "class") el.className = value;
      else if (key === "text") el.textContent = value;
      else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
      else el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  for (const child of children.flat()) {
    if (child != null && child !== false) el.append(child);
  }
  return el;
}

// Empties an element and puts the given children in it.
function fill(el, ...children) {
  el.replaceChildren(...children.flat().filter((c) => c != null && c !== false));
  return el;
}

const exactFormat = new Intl.NumberFormat("en");
const compactFormat = new Intl.NumberFormat("en", { notation: "compact", maximumFractionDigits: 1 });

// 950, 1.2k, 12k, 3.4M: what fits on a card; the exact number goes in a title.
function fmtCompact(n) {
  if (n == null || Number.isNaN(n)) return "–";
  if (Math.abs(n) < 1000) return exactFormat.format(Math.round(n));
  return compactFormat.format(n).replace("K", "k");
}

function fmtExact(n) {
  return n == null ? "–" : exactFormat.format(n);
}

// Seconds as Plausible shows a visit duration: 45s, 2m 05s, 1h 03m.
function fmtDuration(seconds) {
  if (seconds == null || Number.isNaN(seconds)) return "–";
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  const pad = (x) => String(x).padStart(2, "0");
  if (s < 3600) return `${Math.floor(s / 60)}m ${pad(s % 60)}s`;
  return `${Math.floor(s / 3600)}h ${pad(Math.floor((s % 3600) / 60))}m`;
}

// A metric's value as shown on a card, a bar or an axis.
function fmtMetric(metric, value) {
  if (value == null || Number.isNaN(value)) return "–";
  switch (metric) {
    case "bounce_rate":
    case "conversion_rate":
    case "percentage":
    case "exit_rate":
      return `${Math.round(value * 10) / 10}%`;
    case "visit_duration":
    case "time_on_page":
      return fmtDuration(value);
    case "views_per_visit":
      return (Math.round(value * 100) / 100).toFixed(2);
    default:
      return fmtCompact(value);
  }
}

// The same value written out in full, for titles and tooltips.
function fmtMetricExact(metric, value) {
  if (["visitors", "visits", "pageviews", "events"].includes(metric)) return fmtExact(value);
  return fmtMetric(metric, value);
}
