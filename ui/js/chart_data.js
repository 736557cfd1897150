// @ts-check
/**
 * What the charts draw, as data: uPlot's tables (an x column, then one column per line) and
 * the lines' options. charts.js hands them to uPlot. No DOM here.
 */

/** @typedef {import("./types.js").HistorySeries} HistorySeries */
/** @typedef {import("./types.js").JudgedField} JudgedField */
/** @typedef {(number | null)[]} Column */

/** Line colours, in order; more series than colours reuse them. */
export const COLORS = [
  "#2563eb",
  "#dc2626",
  "#059669",
  "#d97706",
  "#7c3aed",
  "#db2777",
  "#0891b2",
];

/** Histories with this many points or fewer show each point. */
const MAX_MARKED_POINTS = 60;

/**
 * A line's options (a subset of uPlot's Series).
 * @typedef {object} Line
 * @property {string} label
 * @property {string} [stroke]
 * @property {string} [fill]
 * @property {number} [width]
 * @property {number[]} [dash]
 * @property {boolean} [spanGaps]
 * @property {{show: boolean}} [points]
 */

/** The x axis' name: "tokens_seen" → "tokens seen". */
/** @param {string} key */
export const axisLabel = (key) => key.replace("_", " ");

/**
 * One table per history: x (the chosen column; where it has no value, the step, else the
 * row's index), train_<column>, val_<column>.
 * @param {HistorySeries[]} seriesList
 * @param {string} xKey "step", "epoch" or "tokens_seen"
 * @param {string} column "loss" or "reward_margin"
 * @returns {[number[], Column, Column][]}
 */
export function lossTables(seriesList, xKey, column) {
  return seriesList.map((s) => {
    const step = s.columns.step;
    const xs = (s.columns[xKey] ?? []).map((x, i) => x ?? step[i] ?? i);
    return [
      xs,
      s.columns[`train_${column}`] ?? [],
      s.columns[`val_${column}`] ?? [],
    ];
  });
}

/**
 * The x series, then a solid train line and a dashed val line per history, one colour per
 * history, named after it when there are several.
 * @param {HistorySeries[]} seriesList
 * @param {string} xKey
 * @returns {Line[]}
 */
export function lossLines(seriesList, xKey) {
  /** @type {Line[]} */
  const lines = [{ label: axisLabel(xKey) }];
  seriesList.forEach((s, i) => {
    const color = COLORS[i % COLORS.length];
    const prefix = seriesList.length > 1 ? `${s.label} ` : "";
    const show = s.columns.step.length <= MAX_MARKED_POINTS;
    lines.push(
      {
        label: `${prefix}train`,
        stroke: color,
        width: 2,
        spanGaps: true,
        points: { show },
      },
      {
        label: `${prefix}val`,
        stroke: color,
        width: 2,
        dash: [6, 4],
        spanGaps: true,
        points: { show },
      },
    );
  });
  return lines;
}

/** A chart as wide as its container allows, between 360 and 900 pixels (800 if unknown). */
/** @param {number | undefined} containerWidth */
export const chartWidth = (containerWidth) =>
  Math.max(360, Math.min(900, (containerWidth || 800) - 10));

/** DPO's histories: those with reward margins (chosen − rejected reward), a second chart. */
/** @param {HistorySeries[]} seriesList */
export const withRewardMargins = (seriesList) =>
  seriesList.filter((s) => s.columns.train_reward_margin);

/** "<label>: 12,000 evaluations drawn as 1000" for each downsampled history, or "". */
/** @param {HistorySeries[]} seriesList */
export function downsampleNote(seriesList) {
  return seriesList.filter((s) => s.total > s.columns.step.length).map((s) =>
    `${s.label}: ${s.total.toLocaleString("en")} evaluations drawn as ${s.columns.step.length}`
  ).join("; ");
}

/** The judge's score bins: ten of ten points, each drawn at its middle (5, 15, ... 95). */
export const SCORE_BINS = Array.from({ length: 10 }, (_, i) => i * 10 + 5);

/**
 * The judge's histogram: the bins, then each field's counts; each field's bars share a bin's
 * width (0.8 of it, over the fields).
 * @param {JudgedField[]} fields
 */
export function scoreHistogram(fields) {
  return {
    data: [SCORE_BINS, ...fields.map((m) => m.histogram)],
    barWidth: 0.8 / Math.max(1, fields.length),
    /** @type {Line[]} */
    lines: [
      { label: "score" },
      ...fields.map((m, i) => ({
        label: m.field,
        stroke: COLORS[i % COLORS.length],
        fill: COLORS[i % COLORS.length] + "99",
        points: { show: false },
      })),
    ],
  };
}

/** A score's colour class in the responses table: s0 (0–9) to s9 (90–100). */
/** @param {number} score */
export const scoreClass = (score) => `s${Math.min(9, Math.floor(score / 10))}`;
