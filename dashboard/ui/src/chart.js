// The main graph: one metric over the range, hour by hour for a day and
// day by day beyond, drawn by uPlot (vendored: see dashboard/ui/README.md).
//
// The bucket still filling (this hour, or today) is drawn as a dashed
// segment from the last complete point, since its low number is not a
// drop; buckets after it are the future and have no point at all. The
// compared period is a second, faint line, laid point for point under
// this one (its first day under this first day).

const COUNT_INCRS = [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500];
for (let i = 3; i <= 9; i++) COUNT_INCRS.push(10 ** i, 2 * 10 ** i, 2.5 * 10 ** i, 5 * 10 ** i);
// The x axis's steps: whole hours for a day, whole days beyond (uPlot
// would otherwise label a daily graph at noon too).
const HOUR_INCRS = [1, 2, 3, 4, 6, 12].map((n) => n * 3600);
// A duration's axis steps in whole seconds, minutes and hours (not 50 s).
const DURATION_INCRS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200];
const DAY_INCRS = [1, 2, 3, 7, 14, 28, 56, 91, 182].map((n) => n * 86400);

// The series of one range: the API answers only the buckets that have
// something in them, so the others are filled with zero here, and those
// after the open bucket are left empty.
function seriesValues(results, range, open) {
  const hourly = isHourly(range);
  const byKey = new Map(results.map((r) => [bucketKey(r.dimensions[0], hourly), Number(r.metrics[0])]));
  return buckets(range).map((b, i) => (open >= 0 && i > open ? null : byKey.get(b.key) ?? 0));
}

async function loadGraph(ctx, metric) {
  const dimension = isHourly(ctx.range) ? "time:hour" : "time:day";
  const ask = (range) => runQuery(buildQuery(ctx.state, { metrics: [metric], range, dimension }), ctx.signal);
  const [now, before] = await Promise.all([
    ask(ctx.range),
    ctx.prevRange
      ? ask(ctx.prevRange).catch((e) => {
          // The graph stands without its comparison; only an abort is passed on.
          if (e.name === "AbortError") throw e;
          return null;
        })
      : null,
  ]);
  const open = openBucket(ctx.range);
  return {
    metric,
    range: ctx.range,
    prevRange: before ? ctx.prevRange : null,
    buckets: buckets(ctx.range),
    prevBuckets: before ? buckets(ctx.prevRange) : null,
    values: seriesValues(now, ctx.range, open),
    prevValues: before ? seriesValues(before, ctx.prevRange, -1) : null,
    open,
  };
}

const hourFormat = new Intl.DateTimeFormat("en-GB", { timeZone: "UTC", hour: "2-digit", minute: "2-digit" });
const dayFormat = new Intl.DateTimeFormat("en-GB", { timeZone: "UTC", day: "numeric", month: "short" });
const tipDayFormat = new Intl.DateTimeFormat("en-GB", {
  timeZone: "UTC",
  weekday: "short",
  day: "numeric",
  month: "short",
  year: "numeric",
});

function bucketLabel(ts, hourly) {
  const d = new Date(ts * 1000);
  return hourly ? `${tipDayFormat.format(d)}, ${hourFormat.format(d)}` : tipDayFormat.format(d);
}

// Colours come from the stylesheet's custom properties, so the graph
// follows the light or dark theme; it is redrawn when the theme changes.
function themeColors() {
  const css = getComputedStyle(document.documentElement);
  const v = (name) => css.getPropertyValue(name).trim();
  return { accentRgb: v("--accent-rgb"), muted: v("--muted"), grid: v("--grid"), prev: v("--prev-line"), card: v("--card") };
}

function gradientFill(rgb, alpha) {
  return (u) => {
    const g = u.ctx.createLinearGradient(0, u.bbox.top, 0, u.bbox.top + u.bbox.height);
    g.addColorStop(0, `rgba(${rgb}, ${alpha})`);
    g.addColorStop(1, `rgba(${rgb}, 0)`);
    return g;
  };
}

// The graph's one uPlot, its container and its tooltip. Rebuilt for each
// new answer (cheap at these sizes, and simpler than diffing options).
const graph = { chart: null, el: null, tip: null, data: null, observer: null };

function drawGraph(el, data) {
  graph.el = el;
  graph.data = data;
  if (graph.chart) graph.chart.destroy();
  if (!graph.tip) graph.tip = h("div", { class: "tip", role: "status", hidden: true });
  if (!graph.observer) {
    // The graph follows its container's width (a phone turned, a window
    // resized); its height is the stylesheet's.
    graph.observer = new ResizeObserver(() => {
      if (graph.chart) graph.chart.setSize({ width: el.clientWidth, height: el.clientHeight });
    });
    graph.observer.observe(el);
  }
  const c = themeColors();
  const hourly = isHourly(data.range);
  const { open, values } = data;
  const complete = values.map((v, i) => (open >= 0 && i >= open ? null : v));
  // The dashed segment: the last complete bucket to the open one.
  const partial = values.map((v, i) => (open >= 0 && (i === open || i === open - 1) ? v : null));
  const counts = ["visitors", "visits", "pageviews", "events"].includes(data.metric);

  const series = [
    {},
    { label: "This period", stroke: `rgb(${c.accentRgb})`, width: 2, fill: gradientFill(c.accentRgb, 0.22), points: { show: false } },
    {
      label: "Incomplete",
      stroke: `rgb(${c.accentRgb})`,
      width: 2,
      dash: [5, 5],
      fill: gradientFill(c.accentRgb, 0.1),
      points: { show: true, size: 7, width: 2, fill: c.card },
    },
  ];
  const columns = [data.buckets.map((b) => b.ts), complete, partial];
  if (data.prevValues) {
    series.push({ label: "Previous period", stroke: c.prev, width: 1.5, points: { show: false } });
    columns.push(data.buckets.map((_, i) => (i < data.prevValues.length ? data.prevValues[i] : null)));
  }

  const axisFont = "12px system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif";
  const opts = {
    width: el.clientWidth,
    height: el.clientHeight,
    series,
    legend: { show: false },
    // footfall's hours are UTC hours: the axis says so rather than moving
    // every point by the browser's offset.
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
    scales: {
      x: { time: true },
      y: { range: (u, min, max) => uPlot.rangeNum(0, Math.max(max, counts ? 4 : 1), 0.1, true) },
    },
    axes: [
      {
        stroke: c.muted,
        font: axisFont,
        grid: { show: false },
        ticks: { show: false },
        space: hourly ? 48 : 64,
        size: 28,
        incrs: hourly ? HOUR_INCRS : DAY_INCRS,
        values: (u, splits) => splits.map((ts) => (hourly ? hourFormat : dayFormat).format(new Date(ts * 1000))),
      },
      {
        stroke: c.muted,
        font: axisFont,
        grid: { stroke: c.grid, width: 1 },
        ticks: { show: false },
        size: 56,
        incrs: counts ? COUNT_INCRS : data.metric === "visit_duration" ? DURATION_INCRS : undefined,
        values: (u, splits) => splits.map((v) => fmtMetric(data.metric, v)),
      },
    ],
    cursor: {
      y: false,
      drag: { x: false, y: false, setScale: false },
      points: { size: 8, width: 2, fill: c.card },
    },
    hooks: { setCursor: [showTip] },
  };
  graph.chart = new uPlot(opts, columns, el);
  el.append(graph.tip);
  el.setAttribute("aria-label", graphSummary(data));
}

// A sentence a screen reader can use in place of the picture.
function graphSummary(data) {
  const total = data.values.reduce((a, v) => a + (v || 0), 0);
  const peak = Math.max(0, ...data.values.map((v) => v || 0));
  const what = METRIC_LABELS[data.metric] || data.metric;
  return `Graph of ${what}, ${rangeLabel(data.range)}, ${data.values.length} ${
    isHourly(data.range) ? "hours" : "days"
  }; highest ${fmtMetricExact(data.metric, peak)}${
    ["visitors", "visits", "pageviews"].includes(data.metric) ? `, sum ${fmtExact(total)}` : ""
  }.`;
}

const METRIC_LABELS = Object.fromEntries(TOP_METRICS.map((m) => [m.id, m.label]));

function showTip(u) {
  const { tip, data, el } = graph;
  const i = u.cursor.idx;
  if (i == null || u.cursor.left < 0 || data.values[i] == null) {
    tip.hidden = true;
    return;
  }
  const hourly = isHourly(data.range);
  const label = METRIC_LABELS[data.metric] || data.metric;
  const rows = [
    h(
      "div",
      { class: "tip-row" },
      h("span", { class: "swatch now" }),
      h("span", { text: i === data.open ? `${label} (so far)` : label }),
      h("b", { text: fmtMetricExact(data.metric, data.values[i]) }),
    ),
  ];
  if (data.prevValues && i < data.prevValues.length) {
    rows.push(
      h("div", { class: "tip-sub", text: bucketLabel(data.prevBuckets[i].ts, hourly) }),
      h(
        "div",
        { class: "tip-row" },
        h("span", { class: "swatch prev" }),
        h("span", { text: label }),
        h("b", { text: fmtMetricExact(data.metric, data.prevValues[i]) }),
      ),
    );
  }
  fill(tip, h("div", { class: "tip-title", text: bucketLabel(data.buckets[i].ts, hourly) }), rows);
  tip.hidden = false;
  // Beside the cursor, flipped to its left past the middle so it stays
  // inside the card. Placed through CSSOM, which the CSP allows.
  const over = u.over.getBoundingClientRect();
  const box = el.getBoundingClientRect();
  const x = over.left - box.left + u.cursor.left;
  const left = x > box.width / 2 ? x - tip.offsetWidth - 12 : x + 12;
  tip.style.transform = `translate(${Math.round(left)}px, ${Math.round(over.top - box.top + 8)}px)`;
}

// The legend under the graph: what each line is, and the dashed segment.
function renderGraphLegend(el, data) {
  fill(
    el,
    h("span", { class: "legend-item" }, h("span", { class: "swatch now" }), "This period"),
    data.prevRange ? h("span", { class: "legend-item" }, h("span", { class: "swatch prev" }), "Previous period") : null,
    data.open >= 0
      ? h("span", { class: "legend-item" }, h("span", { class: "swatch open" }), isHourly(data.range) ? "This hour, still counting" : "Today, still counting")
      : null,
    h("span", { class: "legend-item", text: "Times in UTC" }),
  );
}
