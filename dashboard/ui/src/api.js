// Talking to footfall: the same origin's Plausible-compatible Stats API
// (POST api/v2/query), its realtime counter and footfall's list of sites.
//
// Paths are relative, so the dashboard also works behind a reverse proxy
// that serves it under a prefix. No cookie is involved: on a non-loopback
// listener the browser resends the HTTP Basic credentials it was asked for.

class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

// Every answer is JSON; an error is `{"error": "sentence"}` (Plausible's
// shape) and that sentence is what the dashboard shows. Aborted requests
// (a newer view replaced them) are re-thrown as they are, for the caller
// to ignore.
async function apiRequest(path, { body, signal } = {}) {
  let res;
  try {
    res = await fetch(path, {
      method: body ? "POST" : "GET",
      headers: body ? { "content-type": "application/json" } : { accept: "application/json" },
      body: body ? JSON.stringify(body) : undefined,
      cache: "no-store",
      signal,
    });
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiError(`Could not reach footfall (${e.message}).`, 0);
  }
  const text = await res.text();
  let data;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = undefined;
  }
  if (!res.ok) {
    const said = data && typeof data.error === "string" ? data.error : null;
    throw new ApiError(said || `footfall answered ${res.status} ${res.statusText}.`.replace(" .", "."), res.status);
  }
  if (data === undefined) throw new ApiError("footfall's answer was not JSON.", res.status);
  return data;
}

// A Stats API v2 query for the current view. Only keys with something in
// them are sent, so a strict server sees the smallest query that says it.
//   metrics    e.g. ["visitors"]
//   range      ["from", "to"], inclusive UTC dates
//   dimension  one dimension, or none for an aggregate
//   limit      rows wanted (breakdowns are ordered by their first metric)
function buildQuery(state, { metrics, range, dimension, limit }) {
  const q = { site_id: state.site, metrics, date_range: range };
  if (dimension) q.dimensions = [dimension];
  if (state.filters.length) q.filters = state.filters.map((f) => ["is", f.dim, [f.value]]);
  if (dimension && !dimension.startsWith("time:")) {
    q.order_by = [[metrics[0], "desc"]];
    q.pagination = { limit, offset: 0 };
  }
  return q;
}

async function runQuery(query, signal) {
  const data = await apiRequest("api/v2/query", { body: query, signal });
  if (!data || !Array.isArray(data.results)) throw new ApiError("footfall's answer had no results.", 200);
  return data.results;
}

// Runs a query; if footfall refuses it (400) and it asked for more than
// one metric, asks again for the first metric alone, so a panel still
// shows its visitors when, say, conversion rates cannot be answered. An
// error that the first metric alone also gets is the one shown.
async function runQueryFallback(query, signal) {
  try {
    return { results: await runQuery(query, signal), metrics: query.metrics };
  } catch (e) {
    if (!(e instanceof ApiError) || e.status !== 400 || query.metrics.length === 1) throw e;
    const metrics = query.metrics.slice(0, 1);
    return { results: await runQuery({ ...query, metrics }, signal), metrics };
  }
}

function fetchSites(signal) {
  return apiRequest("api/footfall/sites", { signal });
}

async function fetchRealtime(site, signal) {
  const n = await apiRequest(`api/v1/stats/realtime/visitors?site_id=${encodeURIComponent(site)}`, { signal });
  if (typeof n !== "number") throw new ApiError("footfall's realtime answer was not a number.", 200);
  return n;
}
