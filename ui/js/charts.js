// @ts-check
/**
 * The charts, drawn by uPlot (loaded by index.html as the global `uPlot`) from the tables of
 * chart_data.js.
 */
import { axisLabel, chartWidth, lossLines, lossTables, scoreHistogram } from "./chart_data.js";

/** @typedef {import("../../node_modules/uplot/dist/uPlot.d.ts")} UPlot */
/** @typedef {import("../../node_modules/uplot/dist/uPlot.d.ts").AlignedData} AlignedData */
/** @typedef {import("./types.js").HistorySeries} HistorySeries */
/** @typedef {import("./types.js").JudgedField} JudgedField */

/** The chart element, with its chart for the end-to-end test to read. */
/** @typedef {HTMLElement & {_uplot?: UPlot}} ChartElement */

const uPlot = /** @type {typeof import("../../node_modules/uplot/dist/uPlot.d.ts")} */ (
  /** @type {{uPlot?: unknown}} */ (globalThis).uPlot
);

/**
 * Train (solid) and val (dashed) lines of `column` against `xKey`, one colour per history.
 * @param {ChartElement} el
 * @param {HistorySeries[]} seriesList
 * @param {string} xKey
 */
export function drawLoss(
  el,
  seriesList,
  xKey,
  column = "loss",
  yLabel = "loss",
) {
  const tables = /** @type {AlignedData[]} */ (lossTables(seriesList, xKey, column));
  const data = tables.length === 1 ? tables[0] : uPlot.join(tables);
  const chart = new uPlot(
    {
      width: chartWidth(el.parentElement?.clientWidth),
      height: 320,
      series: lossLines(seriesList, xKey),
      scales: { x: { time: false } },
      axes: [{ label: axisLabel(xKey) }, { label: yLabel }],
      legend: { live: true },
    },
    data,
    el,
  );
  el._uplot = chart;
  el.dataset.points = String(data[0].length);
}

/**
 * The judge's scores of each response field, as bars in bins of ten points.
 * @param {HTMLElement} el
 * @param {JudgedField[]} fields
 */
export function drawScoreHistogram(el, fields) {
  const histogram = scoreHistogram(fields);
  const bars = uPlot.paths.bars?.({ size: [histogram.barWidth, 100] });
  new uPlot(
    {
      width: 520,
      height: 220,
      scales: { x: { time: false, range: [0, 100] } },
      axes: [{ label: "score (bins of 10)" }, { label: "responses" }],
      series: histogram.lines.map((
        line,
        i,
      ) => (i === 0 ? line : { ...line, paths: bars })),
    },
    /** @type {AlignedData} */ (histogram.data),
    el,
  );
}
