// The top row: the six headline numbers, each a button that puts its
// metric on the graph, with its change against the compared period.

const TOP_METRICS = [
  { id: "visitors", label: "Unique visitors" },
  { id: "visits", label: "Total visits" },
  { id: "pageviews", label: "Total pageviews" },
  { id: "views_per_visit", label: "Views per visit" },
  // A rise in bounces is bad news: its change is coloured the other way.
  { id: "bounce_rate", label: "Bounce rate", lowerIsBetter: true, points: true },
  { id: "visit_duration", label: "Visit duration" },
];

function aggregateValues(results, metrics) {
  // An aggregate answers one row; no row at all means nothing was counted.
  const row = results[0];
  const out = {};
  metrics.forEach((m, i) => (out[m] = row ? Number(row.metrics[i]) : 0));
  return out;
}

// Asks for all six metrics at once. A server that cannot answer one of
// them (visits switched off, say) refuses the whole query with a 400; then
// each metric is asked alone and those it refuses are left out of the row.
// When every one is refused, the first refusal is the row's message.
async function loadAggregate(state, range, metrics, signal) {
  try {
    const q = buildQuery(state, { metrics, range });
    return { values: aggregateValues(await runQuery(q, signal), metrics), available: metrics };
  } catch (e) {
    if (!(e instanceof ApiError) || e.status !== 400 || metrics.length === 1) throw e;
  }
  const answers = await Promise.all(
    metrics.map((m) =>
      runQuery(buildQuery(state, { metrics: [m], range }), signal).then(
        (results) => ({ m, value: aggregateValues(results, [m])[m] }),
        (error) => {
          if (error instanceof ApiError && error.status === 400) return { m, error };
          throw error;
        },
      ),
    ),
  );
  const ok = answers.filter((a) => !a.error);
  if (!ok.length) throw answers[0].error;
  const values = {};
  for (const a of ok) values[a.m] = a.value;
  return { values, available: ok.map((a) => a.m) };
}

async function loadTopRow(ctx) {
  const now = await loadAggregate(ctx.state, ctx.range, METRIC_IDS, ctx.signal);
  let previous = null;
  if (ctx.prevRange) {
    try {
      previous = (await loadAggregate(ctx.state, ctx.prevRange, now.available, ctx.signal)).values;
    } catch (e) {
      // The numbers stand without their change; only an abort is passed on.
      if (e.name === "AbortError") throw e;
    }
  }
  return { ...now, previous };
}

// The change from `before` to `now`: a relative change in per cent, or a
// difference in percentage points for a rate (as Plausible shows them).
function change(metric, now, before) {
  if (before == null || now == null) return null;
  if (metric.points) return Math.round(now - before);
  if (before === 0) return now === 0 ? 0 : null;
  return Math.round(((now - before) / before) * 100);
}

function renderChange(metric, now, before) {
  const c = change(metric, now, before);
  if (c == null) return h("span", { class: "change none", text: "—", title: "No change to show: nothing in the previous period" });
  const good = metric.lowerIsBetter ? c < 0 : c > 0;
  const cls = c === 0 ? "flat" : good ? "good" : "bad";
  const arrow = c > 0 ? "↑" : c < 0 ? "↓" : "";
  const unit = metric.points ? " pp" : "%";
  return h("span", { class: `change ${cls}`, text: `${arrow}${Math.abs(c)}${unit}` });
}

function renderTopRow(el, data, state, onPick) {
  const buttons = TOP_METRICS.filter((m) => data.available.includes(m.id)).map((m) => {
    const value = data.values[m.id];
    const before = data.previous ? data.previous[m.id] : null;
    return h(
      "button",
      {
        type: "button",
        class: "stat",
        "data-metric": m.id,
        "aria-pressed": String(state.metric === m.id),
        title: `${m.label}: ${fmtMetricExact(m.id, value)}${
          before != null ? ` (previous period: ${fmtMetricExact(m.id, before)})` : ""
        }. Click to show it on the graph.`,
        onclick: () => onPick(m.id),
      },
      h("span", { class: "stat-label", text: m.label }),
      h(
        "span",
        { class: "stat-line" },
        h("span", { class: "stat-value", text: fmtMetric(m.id, value) }),
        data.previous ? renderChange(m, value, before) : null,
      ),
      data.previous ? h("span", { class: "stat-prev", text: `vs ${fmtMetric(m.id, before)}` }) : null,
    );
  });
  fill(el, buttons);
}
