// The dashboard's wiring: reads the view from the URL, asks footfall for
// it, and keeps it fresh.
//
// Every change of view (site, period, comparison, filter) aborts the
// requests still out for the old one, so a slow answer can never paint
// over a newer view. Every 30 s the current visitors are asked again, and
// the whole view too when its range includes today (older ranges do not
// change).

const REFRESH_MS = 30000;
// While footfall has no site yet, it is asked again this often, so a
// newcomer's first view shows up within seconds of being made.
const EMPTY_RETRY_MS = 5000;

const app = {
  state: null,
  sites: [],
  cards: [],
  controller: null,
  ctx: null,
  lastLoad: 0,
  realtime: null,
};

function init() {
  buildPeriodPicker();
  const grid = $("#cards");
  app.cards = CARDS.map((spec) => buildCard(spec, grid, pickFilter, (tab) => openDetails(tab, app.ctx, pickFilter)));

  $("#site").addEventListener("change", (e) => navigate({ site: e.target.value, filters: [] }));
  $("#period").addEventListener("change", (e) => {
    if (e.target.value === "custom") {
      showCustom(true);
      $("#from").focus();
    } else {
      navigate({ period: e.target.value });
    }
  });
  $("#compare").addEventListener("change", (e) => navigate({ compare: e.target.checked }));
  $("#custom").addEventListener("submit", (e) => {
    e.preventDefault();
    const from = $("#from").value;
    const to = $("#to").value;
    if (!isDate(from) || !isDate(to) || from > to) {
      $("#to").setCustomValidity("The end date must be on or after the start date.");
      $("#to").reportValidity();
      return;
    }
    navigate({ period: "custom", from, to });
  });
  $("#to").addEventListener("input", (e) => e.target.setCustomValidity(""));
  $("#custom-cancel").addEventListener("click", () => {
    showCustom(false);
    syncControls();
  });
  $("#details-close").addEventListener("click", () => $("#details").close());
  // A click on the dimmed backdrop (outside the dialog's box) closes it.
  $("#details").addEventListener("click", (e) => {
    if (e.target === e.currentTarget) e.currentTarget.close();
  });

  window.addEventListener("popstate", () => {
    app.state = readState();
    applyDefaults();
    syncControls();
    load(true);
  });
  matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => {
    if (graph.data) drawGraph(graph.el, graph.data);
  });
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && Date.now() - app.lastLoad >= REFRESH_MS) tick();
  });
  setInterval(tick, REFRESH_MS);
  start();
}

async function start() {
  app.state = readState();
  try {
    const data = await fetchSites();
    app.sites = Array.isArray(data && data.sites) ? data.sites : [];
  } catch (e) {
    showNotice("footfall could not list its sites", e.message);
    setTimeout(start, REFRESH_MS);
    return;
  }
  if (!app.sites.length) {
    showNotice(
      "No data yet",
      "footfall shows a site here as soon as it has counted a view for it. Put footfall's script tag in your pages and open one; this page checks again every few seconds.",
    );
    setTimeout(start, EMPTY_RETRY_MS);
    return;
  }
  showNotice(null);
  fillSitePicker();
  applyDefaults();
  history.replaceState(null, "", writeState(app.state));
  syncControls();
  load(true);
}

// Fills in what the URL did not say: the site with the latest data, and
// today for a site whose data began today (a newcomer's first visits),
// else the last 30 days.
function applyDefaults() {
  const s = app.state;
  let site = app.sites.find((x) => x.site === s.site);
  if (!site) {
    site = app.sites.reduce((a, b) => ((b.last || "") > (a.last || "") ? b : a));
    s.site = site.site;
  }
  if (!s.period) s.period = site.first === todayUTC() ? "today" : "30d";
  propsState.known = Array.isArray(site.props) ? site.props.map(String) : [];
  if (!propsState.known.includes(propsState.key)) propsState.key = propsState.known[0] || null;
}

function navigate(patch) {
  Object.assign(app.state, patch);
  applyDefaults();
  history.pushState(null, "", writeState(app.state));
  syncControls();
  load(true);
}

function pickFilter(dim, value) {
  const filters = app.state.filters.slice();
  const state = { filters };
  addFilter(state, dim, value);
  navigate({ filters: state.filters });
}

function pickMetric(metric) {
  if (metric === app.state.metric) return;
  app.state.metric = metric;
  history.pushState(null, "", writeState(app.state));
  for (const b of document.querySelectorAll("#toprow .stat")) {
    b.setAttribute("aria-pressed", String(b.dataset.metric === metric));
  }
  loadGraphView(app.ctx, metric, true);
}

// Loads everything the view shows. `fresh` is false for a timed refresh,
// which leaves the numbers in place until the new ones arrive.
function load(fresh) {
  if (app.controller) app.controller.abort();
  const controller = (app.controller = new AbortController());
  const state = { ...app.state, filters: app.state.filters.slice() };
  const range = currentRange(state);
  const ctx = (app.ctx = {
    state,
    range,
    prevRange: state.compare ? previousRange(state.period, range) : null,
    signal: controller.signal,
  });
  app.lastLoad = Date.now();
  document.title = `${state.site} · footfall`;
  renderFilters($("#filters"), state, (i) => navigate({ filters: state.filters.filter((_, j) => j !== i) }), () =>
    navigate({ filters: [] }),
  );
  $("#range-label").textContent = `${rangeLabel(range)}${ctx.prevRange ? ` vs ${rangeLabel(ctx.prevRange)}` : ""}`;
  loadTopAndGraph(ctx, fresh);
  for (const card of app.cards) loadCard(card, ctx, pickFilter, fresh);
  refreshRealtime();
}

async function loadTopAndGraph(ctx, fresh) {
  const top = $("#toprow");
  if (fresh) {
    top.classList.add("loading");
    $("#graph-card").classList.add("loading");
  }
  let data;
  try {
    data = await loadTopRow(ctx);
  } catch (e) {
    if (e.name === "AbortError" || ctx.signal.aborted) return;
    top.classList.remove("loading");
    fill(top, message(e.message, "msg refused"));
    showGraphMessage(e.message);
    return;
  }
  if (ctx.signal.aborted) return;
  // The graph shows a metric the row has; one the server refused (or an
  // old link's) gives way to the first it answered.
  if (!data.available.includes(app.state.metric)) {
    app.state.metric = data.available[0];
    history.replaceState(null, "", writeState(app.state));
  }
  top.classList.remove("loading");
  renderTopRow(top, data, app.state, pickMetric);
  await loadGraphView(ctx, app.state.metric, fresh);
}

async function loadGraphView(ctx, metric, fresh) {
  const card = $("#graph-card");
  if (fresh) card.classList.add("loading");
  try {
    const data = await loadGraph(ctx, metric);
    if (ctx.signal.aborted || metric !== app.state.metric) return;
    card.classList.remove("loading");
    $("#graph-msg").hidden = true;
    $("#graph").hidden = false;
    drawGraph($("#graph"), data);
    renderGraphLegend($("#graph-legend"), data);
  } catch (e) {
    if (e.name === "AbortError" || ctx.signal.aborted) return;
    showGraphMessage(e.message);
  }
}

function showGraphMessage(text) {
  $("#graph-card").classList.remove("loading");
  $("#graph").hidden = true;
  fill($("#graph-legend"));
  const msg = $("#graph-msg");
  msg.textContent = text;
  msg.hidden = false;
}

// "N current visitors": the last 5 minutes' distinct visitors. Hidden when
// footfall cannot say (`footfall dashboard` over files has no live ring).
async function refreshRealtime() {
  if (app.realtime) app.realtime.abort();
  const controller = (app.realtime = new AbortController());
  const el = $("#live");
  try {
    const n = await fetchRealtime(app.state.site, controller.signal);
    $("#live-count").textContent = fmtExact(n);
    $("#live-word").textContent = n === 1 ? "current visitor" : "current visitors";
    el.title = "Distinct visitors in the last 5 minutes";
    el.hidden = false;
  } catch (e) {
    if (e.name !== "AbortError") el.hidden = true;
  }
}

function tick() {
  if (document.hidden || !app.state) return;
  if (!app.sites.length) return;
  // A reload of the view asks for the current visitors too.
  if (includesToday(currentRange(app.state))) load(false);
  else refreshRealtime();
}

function buildPeriodPicker() {
  fill($("#period"), PERIODS.map((p) => h("option", { value: p.id, text: p.label })));
}

function fillSitePicker() {
  fill(
    $("#site"),
    app.sites.map((s) =>
      h("option", { value: s.site, text: s.site, title: s.first && s.last ? `Data from ${s.first} to ${s.last}` : null }),
    ),
  );
}

function showCustom(show) {
  $("#custom").hidden = !show;
  if (show) {
    const [from, to] = currentRange(app.state);
    const site = app.sites.find((s) => s.site === app.state.site);
    $("#from").value = from;
    $("#to").value = to;
    for (const id of ["#from", "#to"]) {
      $(id).max = todayUTC();
      if (site && site.first) $(id).min = site.first;
    }
  }
}

function syncControls() {
  $("#site").value = app.state.site;
  $("#period").value = app.state.period;
  $("#compare").checked = app.state.compare;
  showCustom(app.state.period === "custom");
}

// A whole-page notice in place of the dashboard (no sites yet, or footfall
// not answering); null takes it away.
function showNotice(title, text) {
  const notice = $("#notice");
  notice.hidden = !title;
  $("#dashboard").hidden = !!title;
  $("#controls").hidden = !!title;
  if (title) fill(notice, h("h2", { text: title }), h("p", { text }));
}

init();
