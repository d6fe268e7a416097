// Date ranges, in UTC.
//
// footfall's days and hours are UTC ones, so every range the dashboard asks
// for is computed here, in the client, as explicit ["from", "to"] dates
// (inclusive) in UTC: "today" and "last month" then mean exactly the same
// files to the server whatever the browser's time zone, and the previous
// period is one we chose rather than one the server must guess.
// Dates are handled as "YYYY-MM-DD" strings throughout.

const DAY_MS = 86400000;

const isoDate = (ms) => new Date(ms).toISOString().slice(0, 10);
const dateMs = (date) => Date.parse(`${date}T00:00:00Z`);
const addDays = (date, n) => isoDate(dateMs(date) + n * DAY_MS);
const daysBetween = (from, to) => Math.round((dateMs(to) - dateMs(from)) / DAY_MS);
const isDate = (s) => typeof s === "string" && /^\d{4}-\d{2}-\d{2}$/.test(s) && isoDate(dateMs(s)) === s;
const todayUTC = () => isoDate(Date.now());

// The same day of the month n months away, clamped to that month's end
// (31 March minus one month is 28 or 29 February).
function addMonths(date, n) {
  const [y, m, d] = date.split("-").map(Number);
  const first = Date.UTC(y, m - 1 + n, 1);
  const last = new Date(Date.UTC(y, m + n, 0)).getUTCDate();
  return isoDate(first + (Math.min(d, last) - 1) * DAY_MS);
}

const monthStart = (date) => `${date.slice(0, 8)}01`;
const monthEnd = (date) => addDays(addMonths(monthStart(date), 1), -1);

// The period picker's choices. `range(today)` gives [from, to]; custom
// ranges come from the URL. "Last 7 days" and the like end today, so a
// visit made a second ago is on the dashboard (as in Plausible).
const PERIODS = [
  { id: "today", label: "Today", range: (t) => [t, t] },
  { id: "yesterday", label: "Yesterday", range: (t) => [addDays(t, -1), addDays(t, -1)] },
  { id: "7d", label: "Last 7 days", range: (t) => [addDays(t, -6), t] },
  { id: "30d", label: "Last 30 days", range: (t) => [addDays(t, -29), t] },
  { id: "month", label: "Month to date", range: (t) => [monthStart(t), t] },
  {
    id: "lastmonth",
    label: "Last month",
    range: (t) => {
      const start = addMonths(monthStart(t), -1);
      return [start, monthEnd(start)];
    },
  },
  { id: "12mo", label: "Last 12 months", range: (t) => [addMonths(monthStart(t), -11), t] },
  { id: "custom", label: "Custom range…" },
];

function periodById(id) {
  return PERIODS.find((p) => p.id === id);
}

// The range a state asks for.
function currentRange(state, today = todayUTC()) {
  if (state.period === "custom") return [state.from, state.to];
  return periodById(state.period).range(today);
}

// The period a range is compared with: the calendar-shaped periods are
// shifted by months (month to date against the same days of last month),
// the others by their own length, so the two have the same number of days
// and line up point for point on the graph.
function previousRange(period, [from, to]) {
  if (period === "month") return [addMonths(from, -1), addMonths(to, -1)];
  if (period === "lastmonth") {
    const start = addMonths(from, -1);
    return [start, monthEnd(start)];
  }
  if (period === "12mo") return [addMonths(from, -12), addMonths(to, -12)];
  const days = daysBetween(from, to) + 1;
  return [addDays(from, -days), addDays(from, -1)];
}

// One day is drawn hour by hour, anything longer day by day.
const isHourly = ([from, to]) => from === to;

const includesToday = ([from, to], today = todayUTC()) => from <= today && today <= to;

// The graph's buckets for a range: a key that matches the API's time
// dimension (first 13 characters of "2026-12-08 14:00:00" for hours,
// "2026-12-08" for days) and the bucket's start in Unix seconds for uPlot.
function buckets([from, to]) {
  const out = [];
  if (isHourly([from, to])) {
    for (let hour = 0; hour < 24; hour++) {
      out.push({ key: `${from} ${String(hour).padStart(2, "0")}`, ts: dateMs(from) / 1000 + hour * 3600 });
    }
  } else {
    for (let d = from; d <= to; d = addDays(d, 1)) out.push({ key: d, ts: dateMs(d) / 1000 });
  }
  return out;
}

// A time dimension's value as a bucket key: "2026-12-08 14:00:00" (or an
// ISO "2026-12-08T14:00:00Z") → "2026-12-08 14"; "2026-12-08" stays.
function bucketKey(value, hourly) {
  const s = String(value).replace("T", " ");
  return hourly ? s.slice(0, 13) : s.slice(0, 10);
}

// The index of the bucket that is still filling (this hour, or today), or
// -1 when the range is wholly in the past. Buckets after it are the future.
function openBucket(range, now = Date.now()) {
  const today = isoDate(now);
  if (!includesToday(range, today)) return -1;
  if (isHourly(range)) return new Date(now).getUTCHours();
  return daysBetween(range[0], today);
}

const shortDate = new Intl.DateTimeFormat("en-GB", { timeZone: "UTC", day: "numeric", month: "short" });
const longDate = new Intl.DateTimeFormat("en-GB", {
  timeZone: "UTC",
  weekday: "short",
  day: "numeric",
  month: "short",
  year: "numeric",
});

const yearDate = new Intl.DateTimeFormat("en-GB", { timeZone: "UTC", day: "numeric", month: "short", year: "numeric" });

// "1 Dec – 7 Dec 2026", or "Tue, 8 Dec 2026" for one day: the graph's caption.
function rangeLabel([from, to]) {
  const a = new Date(dateMs(from));
  const b = new Date(dateMs(to));
  if (from === to) return longDate.format(a);
  const sameYear = from.slice(0, 4) === to.slice(0, 4);
  return `${(sameYear ? shortDate : yearDate).format(a)} – ${yearDate.format(b)}`;
}
