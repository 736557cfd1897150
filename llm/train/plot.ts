/**
 * The book's loss figure (ch05 `plot_losses`) as a standalone SVG: training and validation
 * loss against epochs on the bottom axis, with tokens seen on a second axis at the top. As the
 * book's, it plots any pair of curves under another `label` (DPO's "reward margins").
 */
import { escapeXml } from "../../util/markup.ts";

export interface LossCurve {
  /** Epochs elapsed at each evaluation (fractional). */
  epochs: number[];
  tokensSeen: number[];
  train: number[];
  val: number[];
  title?: string;
  /** What the curves are (the book's `label`); default "loss". */
  label?: string;
}

function niceTicks(min: number, max: number, count = 5): number[] {
  if (!(max > min)) return [min];
  const raw = (max - min) / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((s) => s >= raw)!;
  const ticks: number[] = [];
  for (let t = Math.ceil(min / step) * step; t <= max + step * 1e-9; t += step) {
    ticks.push(Number(t.toPrecision(12)));
  }
  return ticks;
}

function formatTick(value: number): string {
  if (Math.abs(value) >= 1e6) return `${(value / 1e6).toPrecision(3)}M`;
  if (Math.abs(value) >= 1e3) return `${(value / 1e3).toPrecision(3)}k`;
  return String(Number(value.toPrecision(4)));
}

export function lossPlotSvg(curve: LossCurve, width = 640, height = 400): string {
  const n = curve.epochs.length;
  if (n === 0) throw new Error("lossPlotSvg: no points to plot");
  const label = curve.label ?? "loss";
  const capitalized = label[0].toUpperCase() + label.slice(1);
  const margin = { left: 60, right: 20, top: curve.title ? 70 : 56, bottom: 50 };
  const plotW = width - margin.left - margin.right, plotH = height - margin.top - margin.bottom;
  const xMax = Math.max(...curve.epochs, 1e-9);
  const values = [...curve.train, ...curve.val].filter(Number.isFinite);
  const yMin = Math.min(0, ...values), yMax = Math.max(0, ...values) * 1.05 || 1;
  const x = (e: number) => margin.left + (e / xMax) * plotW;
  const y = (v: number) => margin.top + plotH - ((v - yMin) / (yMax - yMin)) * plotH;
  const path = (ys: number[]) =>
    ys.map((v, i) => `${i === 0 ? "M" : "L"}${x(curve.epochs[i]).toFixed(1)},${y(v).toFixed(1)}`)
      .join(" ");
  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<rect x="${margin.left}" y="${margin.top}" width="${plotW}" height="${plotH}" fill="none" stroke="#333"/>`,
  );
  for (const t of niceTicks(yMin, yMax)) {
    parts.push(
      `<line x1="${margin.left - 4}" x2="${margin.left}" y1="${y(t)}" y2="${y(t)}" stroke="#333"/>`,
      `<text x="${margin.left - 8}" y="${y(t) + 4}" text-anchor="end">${formatTick(t)}</text>`,
    );
  }
  for (const t of niceTicks(0, xMax)) {
    parts.push(
      `<line x1="${x(t)}" x2="${x(t)}" y1="${margin.top + plotH}" y2="${
        margin.top + plotH + 4
      }" stroke="#333"/>`,
      `<text x="${x(t)}" y="${margin.top + plotH + 18}" text-anchor="middle">${
        formatTick(t)
      }</text>`,
    );
  }
  // Tokens seen grow linearly with epochs, so the top axis labels the same positions.
  const tokensMax = Math.max(...curve.tokensSeen);
  for (const t of niceTicks(0, tokensMax)) {
    const e = tokensMax > 0
      ? (t / tokensMax) * curve.epochs[curve.tokensSeen.indexOf(tokensMax)]
      : 0;
    if (e > xMax * 1.0001) continue;
    parts.push(
      `<line x1="${x(e)}" x2="${x(e)}" y1="${margin.top - 4}" y2="${margin.top}" stroke="#333"/>`,
      `<text x="${x(e)}" y="${margin.top - 8}" text-anchor="middle">${formatTick(t)}</text>`,
    );
  }
  parts.push(
    `<text x="${margin.left + plotW / 2}" y="${height - 12}" text-anchor="middle">Epochs</text>`,
    `<text x="${margin.left + plotW / 2}" y="${
      margin.top - 28
    }" text-anchor="middle">Tokens seen</text>`,
    `<text transform="translate(16 ${margin.top + plotH / 2}) rotate(-90)" text-anchor="middle">${
      escapeXml(capitalized)
    }</text>`,
    `<path d="${path(curve.train)}" fill="none" stroke="#1f77b4" stroke-width="2"/>`,
    `<path d="${
      path(curve.val)
    }" fill="none" stroke="#ff7f0e" stroke-width="2" stroke-dasharray="6 3"/>`,
    `<g transform="translate(${margin.left + plotW - 150} ${margin.top + 12})">`,
    `<rect width="140" height="44" fill="white" stroke="#999"/>`,
    `<line x1="8" x2="36" y1="14" y2="14" stroke="#1f77b4" stroke-width="2"/><text x="42" y="18">Training ${
      escapeXml(label)
    }</text>`,
    `<line x1="8" x2="36" y1="32" y2="32" stroke="#ff7f0e" stroke-width="2" stroke-dasharray="6 3"/><text x="42" y="36">Validation ${
      escapeXml(label)
    }</text>`,
    `</g>`,
  );
  if (curve.title) {
    parts.push(
      `<text x="${width / 2}" y="16" text-anchor="middle" font-weight="bold">${
        escapeXml(curve.title)
      }</text>`,
    );
  }
  parts.push(`</svg>`);
  return parts.join("\n") + "\n";
}
