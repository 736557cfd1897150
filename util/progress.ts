/**
 * Progress for long work and a plain logger. On a terminal a bar is redrawn in place with
 * rate and ETA; elsewhere (CI, a log file) one plain line is written every few seconds so
 * logs stay readable.
 */

/** Where stages write their messages (prefixed with the stage name). */
export interface Logger {
  /** A line of information. */
  info(message: string): void;
  /** Something the user should know that did not stop the work. */
  warn(message: string): void;
}

/** Progress of long work (steps, tokens, bytes), shown as a bar or as periodic lines. */
export interface ProgressReporter {
  /**
   * Begin a unit of work of `total` items (e.g. steps, tokens, bytes), of which `done` are
   * already behind (a resumed run): those count toward the total but not toward the rate.
   */
  start(label: string, total: number, unit?: string, done?: number): void;
  /** Mark the current position (absolute) with optional headline values such as the loss. */
  update(done: number, values?: Record<string, number | string>): void;
  /** Finish the current unit of work. */
  finish(): void;
}

/** Where progress and log text goes: stderr by default, a buffer in tests. */
export interface Output {
  /** Write text as is (the caller supplies newlines). */
  write(text: string): void;
  /** True when text may be redrawn in place (a terminal); else plain lines are written. */
  isTerminal: boolean;
}

const encoder = new TextEncoder();
export const stderrOutput: Output = {
  write: (text) => Deno.stderr.writeSync(encoder.encode(text)),
  isTerminal: Deno.stderr.isTerminal(),
};

/** A logger writing `[prefix] message` lines to `out` (default stderr). */
export function createLogger(prefix: string, out: Output = stderrOutput): Logger {
  return {
    info: (message) => out.write(`[${prefix}] ${message}\n`),
    warn: (message) => out.write(`[${prefix}] warning: ${message}\n`),
  };
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return "?";
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)}s`;
  const m = Math.floor(seconds / 60), s = Math.round(seconds % 60);
  if (m < 60) return `${m}m${String(s).padStart(2, "0")}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, "0")}m`;
}

function formatCount(n: number, unit = ""): string {
  const scaled = unit === "B"
    ? (n >= 1 << 30
      ? `${(n / (1 << 30)).toFixed(2)} GiB`
      : n >= 1 << 20
      ? `${(n / (1 << 20)).toFixed(1)} MiB`
      : n >= 1024
      ? `${(n / 1024).toFixed(1)} KiB`
      : `${n} B`)
    : `${Number.isInteger(n) ? n : n.toFixed(2)}${unit ? " " + unit : ""}`;
  return scaled;
}

function formatValues(values: Record<string, number | string> | undefined): string {
  if (!values) return "";
  return Object.entries(values)
    .map(([k, v]) => `${k} ${typeof v === "number" ? (Number.isInteger(v) ? v : v.toFixed(4)) : v}`)
    .join("  ");
}

/** A snapshot of a unit of work, for listeners such as the run record. */
export interface ProgressState {
  /** What is being done ("training"). */
  label: string;
  /** What is counted ("steps"). */
  unit: string;
  /** Items done so far (including those done before a resume). */
  done: number;
  /** Items in all. */
  total: number;
  /** The latest headline values, e.g. the loss. */
  values?: Record<string, number | string>;
  /** Seconds since `start`. */
  elapsedSeconds: number;
  /** Seconds left at the current rate; null while the rate is unknown. */
  etaSeconds: number | null;
}

/** Where and how often `createProgress` writes. */
export interface ProgressOptions {
  /** Default stderr. */
  out?: Output;
  /** Called on every update (the listener throttles itself). */
  onState?: (state: ProgressState) => void;
  /** Seconds between plain lines when not on a terminal. */
  plainInterval?: number;
  /** Milliseconds clock (default `performance.now`); tests pass a fake one. */
  now?: () => number;
}

/**
 * A progress reporter labelled `prefix`: a redrawn bar with rate and ETA on a terminal, else a line
 * every `plainInterval` seconds.
 */
export function createProgress(prefix: string, options: ProgressOptions = {}): ProgressReporter {
  const out = options.out ?? stderrOutput;
  const plainInterval = (options.plainInterval ?? 10) * 1000;
  const now = options.now ?? (() => performance.now());
  let label = "", unit = "", total = 0, startedAt = 0, lastDraw = -Infinity, lastDone = 0;
  let doneBefore = 0;
  let lastValues: Record<string, number | string> | undefined;
  let active = false;

  const line = (done: number) => {
    const elapsed = (now() - startedAt) / 1000;
    const rate = elapsed > 0 ? Math.max(0, done - doneBefore) / elapsed : 0;
    const eta = rate > 0 ? (total - done) / rate : Infinity;
    const fraction = total > 0 ? Math.min(1, done / total) : 0;
    const rateText = unit === "B" ? `${formatCount(rate, "B")}/s` : `${rate.toFixed(2)} ${unit}/s`;
    const stats = `${formatCount(done, unit)}/${formatCount(total, unit)}  ${rateText}  ` +
      `elapsed ${formatDuration(elapsed)}  ETA ${done >= total ? "0s" : formatDuration(eta)}`;
    const values = formatValues(lastValues);
    if (out.isTerminal) {
      const width = 24, filled = Math.round(fraction * width);
      const bar = "█".repeat(filled) + "░".repeat(width - filled);
      return `[${prefix}] ${label} ${bar} ${(fraction * 100).toFixed(0).padStart(3)}%  ${stats}${
        values ? "  " + values : ""
      }`;
    }
    return `[${prefix}] ${label} ${(fraction * 100).toFixed(0)}%  ${stats}${
      values ? "  " + values : ""
    }`;
  };

  const snapshot = (done: number, t: number): ProgressState => {
    const elapsedSeconds = (t - startedAt) / 1000;
    const rate = elapsedSeconds > 0 ? Math.max(0, done - doneBefore) / elapsedSeconds : 0;
    return {
      label,
      unit,
      done,
      total,
      values: lastValues,
      elapsedSeconds,
      etaSeconds: done >= total ? 0 : rate > 0 ? (total - done) / rate : null,
    };
  };

  return {
    start(newLabel, newTotal, newUnit = "items", done = 0) {
      label = newLabel, total = newTotal, unit = newUnit, startedAt = now(), lastDone = done;
      doneBefore = done;
      lastDraw = -Infinity, lastValues = undefined, active = true;
    },
    update(done, values) {
      if (!active) return;
      lastDone = done;
      if (values) lastValues = values;
      const t = now();
      if (options.onState) options.onState(snapshot(done, t));
      if (out.isTerminal) {
        if (t - lastDraw < 100 && done < total) return;
        out.write(`\r\x1b[2K${line(done)}`);
      } else {
        if (t - lastDraw < plainInterval && done < total) return;
        out.write(line(done) + "\n");
      }
      lastDraw = t;
    },
    finish() {
      if (!active) return;
      active = false;
      if (out.isTerminal) out.write(`\r\x1b[2K${line(lastDone)}\n`);
      else if (lastDone < total || lastDraw === -Infinity) out.write(line(lastDone) + "\n");
    },
  };
}
