// The cards of top lists below the graph. Each card has tabs (a dimension
// each); only the open tab is asked for. A list shows the top 10 rows as
// bars behind their labels with the count on the right; "Details" opens a
// dialog with up to 100. Clicking a row filters the whole dashboard by it.
// When footfall refuses a query (a combination its aggregates cannot
// answer) the panel shows footfall's sentence instead of numbers.

const LIST_ROWS = 10;
const DETAIL_ROWS = 100;
// The map colours every country, so the Locations card asks for them all.
const COUNTRY_ROWS = 300;

const METRIC_COLUMNS = {
  visitors: "Visitors",
  visits: "Visits",
  pageviews: "Pageviews",
  bounce_rate: "Bounce rate",
  visit_duration: "Duration",
  events: "Events",
  conversion_rate: "CR",
  exit_rate: "Exit rate",
};

const VISITORS = [{ metric: "visitors", label: "Visitors" }];

const CARDS = [
  {
    id: "sources",
    tabs: [
      { label: "Sources", title: "Top sources", dim: "visit:source", details: ["visitors", "visits", "bounce_rate", "visit_duration"] },
      { label: "Medium", title: "UTM mediums", dim: "visit:utm_medium", details: ["visitors", "visits", "bounce_rate", "visit_duration"] },
      { label: "Source", title: "UTM sources", dim: "visit:utm_source", details: ["visitors", "visits", "bounce_rate", "visit_duration"] },
      { label: "Campaign", title: "UTM campaigns", dim: "visit:utm_campaign", details: ["visitors", "visits", "bounce_rate", "visit_duration"] },
    ],
  },
  {
    id: "pages",
    tabs: [
      { label: "Top pages", title: "Top pages", dim: "event:page", details: ["visitors", "pageviews"] },
      { label: "Entry pages", title: "Entry pages", dim: "visit:entry_page", details: ["visitors", "visits"] },
      // footfall counts exits, not exiting visitors: an exit page's sketch
      // is of the page's viewers (the API refuses visitors here).
      {
        label: "Exit pages",
        title: "Exit pages",
        dim: "visit:exit_page",
        cols: [{ metric: "visits", label: "Exits" }],
        details: ["visits", "exit_rate"],
      },
    ],
  },
  {
    id: "locations",
    tabs: [
      { label: "Map", title: "Locations", dim: "visit:country", map: true, limit: COUNTRY_ROWS },
      { label: "Countries", title: "Countries", dim: "visit:country", limit: COUNTRY_ROWS },
    ],
  },
  {
    id: "devices",
    tabs: [
      { label: "Browser", title: "Browsers", dim: "visit:browser" },
      { label: "OS", title: "Operating systems", dim: "visit:os" },
      { label: "Device", title: "Devices", dim: "visit:device" },
    ],
  },
  {
    id: "goals",
    wide: true,
    tabs: [
      {
        label: "Goals",
        title: "Goal conversions",
        dim: "event:goal",
        cols: [
          { metric: "visitors", label: "Uniques" },
          { metric: "events", label: "Total" },
          { metric: "conversion_rate", label: "CR" },
        ],
      },
      {
        label: "Events",
        title: "Custom events",
        dim: "event:name",
        cols: [
          { metric: "visitors", label: "Visitors" },
          { metric: "events", label: "Events" },
        ],
      },
      {
        label: "Properties",
        title: "Custom properties",
        props: true,
        cols: [
          { metric: "visitors", label: "Visitors" },
          { metric: "events", label: "Events" },
        ],
      },
    ],
  },
];

// The property key the Properties tab breaks down by: the first the site
// lists (when footfall's sites answer names them), or one typed in.
const propsState = { key: null, known: [] };

const tabDim = (tab) => (tab.props ? `event:props:${propsState.key}` : tab.dim);
const tabCols = (tab) => tab.cols || VISITORS;

function buildCard(spec, grid, onPick, onDetails) {
  const card = { spec, active: spec.tabs[0], rows: null, ctx: null };
  const title = h("h2", { class: "card-title", id: `${spec.id}-title`, text: card.active.title });
  const tabs = spec.tabs.map((tab) =>
    h("button", {
      type: "button",
      class: "tab",
      role: "tab",
      "aria-selected": String(tab === card.active),
      text: tab.label,
      onclick: () => {
        if (card.active === tab) return;
        card.active = tab;
        for (const [i, b] of tabs.entries()) b.setAttribute("aria-selected", String(spec.tabs[i] === tab));
        title.textContent = tab.title;
        // Map and Countries are one answer shown two ways: no new query.
        if (card.rows && card.rowsDim === tabDim(tab)) renderCardBody(card, onPick);
        else if (card.ctx) loadCard(card, card.ctx, onPick, true);
      },
    }),
  );
  card.body = h("div", { class: "card-body", "aria-live": "polite" });
  card.more = h("button", { type: "button", class: "more", hidden: true, text: "Details", onclick: () => onDetails(card.active) });
  card.el = h(
    "section",
    { class: `card panel${spec.wide ? " wide" : ""}`, "aria-labelledby": title.id },
    h("header", { class: "card-head" }, title, h("div", { class: "tabs", role: "tablist", "aria-label": "Show" }, tabs)),
    card.body,
    h("footer", { class: "card-foot" }, card.more),
  );
  grid.append(card.el);
  return card;
}

function message(text, cls = "msg") {
  return h("p", { class: cls, text });
}

// Loads the open tab of a card. `fresh` is true when the view changed (a
// new site, period or filter): then the old numbers are taken away at once
// rather than left standing under new labels; a timed refresh keeps them
// until the new ones arrive.
async function loadCard(card, ctx, onPick, fresh) {
  card.ctx = ctx;
  const tab = card.active;
  card.more.hidden = true;
  if (tab.props && !propsState.key) {
    card.rows = null;
    fill(card.body, propsPicker(card, onPick), message("Choose a property key to see its values."));
    return;
  }
  if (fresh || !card.rows) fill(card.body, tab.props ? propsPicker(card, onPick) : null, message("Loading…", "msg loading"));
  const dim = tabDim(tab);
  const query = buildQuery(ctx.state, {
    metrics: tabCols(tab).map((c) => c.metric),
    range: ctx.range,
    dimension: dim,
    limit: tab.limit || LIST_ROWS + 1,
  });
  try {
    const { results, metrics } = await runQueryFallback(query, ctx.signal);
    if (ctx.signal.aborted || card.active !== tab || dim !== tabDim(tab)) return;
    card.rows = results.map((r) => ({ value: r.dimensions[0], count: Number(r.metrics[0]), metrics: r.metrics.map(Number) }));
    card.rowsDim = dim;
    card.metrics = metrics;
    card.error = null;
  } catch (e) {
    if (e.name === "AbortError" || ctx.signal.aborted) return;
    card.rows = [];
    card.rowsDim = null;
    card.error = e.message;
  }
  renderCardBody(card, onPick);
}

function renderCardBody(card, onPick) {
  const tab = card.active;
  const dim = tabDim(tab);
  const picker = tab.props ? propsPicker(card, onPick) : null;
  card.more.hidden = true;
  if (card.error) {
    fill(card.body, picker, message(card.error, "msg refused"));
    return;
  }
  if (!card.rows.length && !tab.map) {
    fill(card.body, picker, message("Nothing counted in this period."));
    return;
  }
  if (tab.map) {
    renderMap(card, onPick, card.rows.length ? null : "Nothing counted in this period.");
  } else {
    const cols = tabCols(tab).filter((c) => card.metrics.includes(c.metric));
    const active = card.ctx.state.filters.find((f) => f.dim === dim);
    fill(card.body, picker, renderList(card.rows.slice(0, LIST_ROWS), dim, cols, onPick, active && active.value));
  }
  card.more.hidden = card.rows.length <= LIST_ROWS;
}

function renderMap(card, onPick, note) {
  const holder = h("div", { class: "map" }, message("Loading the map…", "msg loading"));
  const max = Math.max(0, ...card.rows.map((r) => r.count));
  fill(card.body, holder, note ? message(note, "msg small") : mapLegend(max));
  loadMapSvg(card.ctx.signal).then(
    (svg) => {
      if (!holder.isConnected) return;
      paintMap(svg, card.rows, (cc) => onPick("visit:country", cc));
      fill(holder, svg);
    },
    (e) => {
      if (e.name !== "AbortError") fill(holder, message(e.message, "msg refused"));
    },
  );
}

// A list of rows: the first metric's bar behind each label, the metrics'
// values on the right. `cols` are the metrics the answer holds, in order.
function renderList(rows, dim, cols, onPick, activeValue) {
  const max = Math.max(1, ...rows.map((r) => r.count));
  const head = h(
    "div",
    { class: "list-head" },
    h("span", { text: dimensionInfo(dim).column }),
    h("span", { class: "nums" }, cols.map((c) => h("span", { class: "num", text: c.label }))),
  );
  const items = rows.map((row) => {
    const label = displayValue(dim, row.value);
    const bar = h("span", { class: "bar" });
    bar.style.width = `${Math.max(0.5, (row.count / max) * 100)}%`;
    const nums = h(
      "span",
      { class: "nums" },
      cols.map((c, i) =>
        h("span", { class: "num", title: fmtMetricExact(c.metric, row.metrics[i]), text: fmtMetric(c.metric, row.metrics[i]) }),
      ),
    );
    // The bar spans the label's part of the row, so no number sits on it.
    const content = [h("span", { class: "row-main" }, bar, h("span", { class: "label", title: label, text: label })), nums];
    const cls = `row${activeValue != null && row.value === activeValue ? " current" : ""}`;
    if (!filterable(row.value)) return h("li", null, h("div", { class: cls }, content));
    return h(
      "li",
      null,
      h(
        "button",
        {
          type: "button",
          class: cls,
          "aria-label": `${label}: ${fmtMetricExact(cols[0].metric, row.count)} ${cols[0].label.toLowerCase()}. Filter by this ${dimensionInfo(dim).name.toLowerCase()}`,
          onclick: () => onPick(dim, row.value),
        },
        content,
      ),
    );
  });
  return h("div", { class: "list" }, head, h("ul", null, items));
}

function propsPicker(card, onPick) {
  const input = h("input", {
    type: "text",
    id: "prop-key",
    list: "prop-keys",
    value: propsState.key || "",
    placeholder: "e.g. plan",
    autocomplete: "off",
    spellcheck: "false",
  });
  const form = h(
    "form",
    {
      class: "prop-picker",
      onsubmit: (e) => {
        e.preventDefault();
        const key = input.value.trim();
        if (!key || key === propsState.key) return;
        propsState.key = key;
        card.rows = null;
        loadCard(card, card.ctx, onPick, true);
      },
    },
    h("label", { for: "prop-key", text: "Property" }),
    input,
    h("datalist", { id: "prop-keys" }, propsState.known.map((k) => h("option", { value: k }))),
    h("button", { type: "submit", class: "small", text: "Show" }),
  );
  return form;
}

// The details dialog: up to 100 rows of one tab, with more metrics. Its
// request has its own AbortController: a timed refresh of the cards behind
// the dialog must not cancel it.
let detailsRequest = null;

async function openDetails(tab, ctx, onPick) {
  if (detailsRequest) detailsRequest.abort();
  const request = (detailsRequest = new AbortController());
  const dialog = $("#details");
  const body = $("#details-body");
  const dim = tabDim(tab);
  $("#details-title").textContent = tab.title;
  fill(body, message("Loading…", "msg loading"));
  if (!dialog.open) dialog.showModal();
  const wanted = tab.details || tabCols(tab).map((c) => c.metric);
  try {
    const { results, metrics } = await runQueryFallback(
      buildQuery(ctx.state, { metrics: wanted, range: ctx.range, dimension: dim, limit: DETAIL_ROWS }),
      request.signal,
    );
    if (request !== detailsRequest) return;
    const rows = results.map((r) => ({ value: r.dimensions[0], count: Number(r.metrics[0]), metrics: r.metrics.map(Number) }));
    const cols = metrics.map((m) => ({ metric: m, label: (tab.cols || []).find((c) => c.metric === m)?.label || METRIC_COLUMNS[m] || m }));
    fill(
      body,
      rows.length
        ? renderList(rows, dim, cols, (d, v) => {
            dialog.close();
            onPick(d, v);
          })
        : message("Nothing counted in this period."),
      rows.length === DETAIL_ROWS ? message(`The first ${DETAIL_ROWS} rows.`, "msg small") : null,
    );
  } catch (e) {
    if (e.name !== "AbortError") fill(body, message(e.message, "msg refused"));
  }
}
