// @ts-check
/** Numbers, durations, sizes, times and progress as the page writes them. No DOM here. */

/** @typedef {import("./types.js").ProgressState} ProgressState */

/** Integers with thousands separators, large numbers to 0.1, small ones to 4 digits. */
/** @param {unknown} v */
export function fmtNumber(v) {
  if (typeof v !== "number") return String(v ?? "");
  if (Number.isInteger(v)) return v.toLocaleString("en");
  return Math.abs(v) >= 100 ? v.toFixed(1) : v.toPrecision(4);
}

/** "4.20 s", "3m05s", "2h07m"; "" for anything that is not a finite number. */
/** @param {unknown} s */
export function fmtSeconds(s) {
  if (typeof s !== "number" || !Number.isFinite(s)) return "";
  if (s < 60) {
    return `${s.toFixed(s < 10 ? 2 : 1)} s`.replace(/^0\.00 s$/, "< 0.01 s");
  }
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(Math.round(s % 60)).padStart(2, "0")}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, "0")}m`;
}

/** @param {number} n bytes */
export function fmtBytes(n) {
  if (n >= 1 << 30) return `${(n / (1 << 30)).toFixed(2)} GiB`;
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(1)} MiB`;
  if (n >= 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${n} B`;
}

/**
 * A date and how long ago it was: "4 Dec 2026, 03:05 (12 min ago)"; a text that is no date
 * comes back as it is.
 * @param {string | undefined} iso
 * @param {number} now milliseconds since the epoch
 */
export function fmtWhen(iso, now = Date.now()) {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const ago = (now - d.getTime()) / 1000;
  const rel = ago < 90
    ? `${Math.round(ago)} s ago`
    : ago < 5400
    ? `${Math.round(ago / 60)} min ago`
    : ago < 129600
    ? `${Math.round(ago / 3600)} h ago`
    : `${Math.round(ago / 86400)} d ago`;
  return `${d.toLocaleString("en-GB", { dateStyle: "medium", timeStyle: "short" })} (${rel})`;
}

/** "loss 3.512 · tokens 4,096" */
/** @param {Record<string, unknown> | undefined} metrics */
export function metricsText(metrics) {
  return Object.entries(metrics ?? {}).map(([k, v]) => `${k} ${fmtNumber(v)}`)
    .join(" · ");
}

/** How far along, 0 to 100 (0 while the total is unknown). */
/** @param {ProgressState | undefined} p */
export function progressPercent(p) {
  return p && p.total > 0 ? Math.min(100, (100 * p.done) / p.total) : 0;
}

/** "training 40% (20/50 steps) · ETA 12.0 s · loss 4.123" */
/** @param {ProgressState | undefined} p */
export function progressText(p) {
  if (!p) return "";
  const values = metricsText(p.values);
  const eta = p.etaSeconds === null ? "?" : fmtSeconds(p.etaSeconds);
  return `${p.label} ${
    progressPercent(p).toFixed(0)
  }% (${p.done}/${p.total} ${p.unit}) · ETA ${eta}${values ? " · " + values : ""}`;
}
