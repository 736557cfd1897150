/**
 * The judge's scores as an SVG bar chart: counts per 10-point bin, in the style of the loss
 * plot (llm/train/plot.ts): white background, framed plot, sans-serif 12 px, the same blue.
 * The judge stage writes one per scored field as a file; the run report draws a smaller one
 * inline.
 */
import { escapeXml } from "../../util/markup.ts";
import type { FieldSummary } from "./judge.ts";

/** A field's scores as a standalone figure, its title saying how many were scored and the mean. */
export function scoreHistogramSvg(summary: FieldSummary, width = 640, height = 400): string {
  const title = `${summary.field}: ${summary.scored}/${summary.total} scored` +
    (summary.mean === null ? "" : `, mean ${summary.mean.toFixed(2)}`) +
    (summary.stderr === null ? "" : ` ± ${summary.stderr.toFixed(2)}`);
  return histogramSvg(summary.histogram, title, width, height);
}

/**
 * Counts of scores in ten bins (0–9, 10–19, ..., 90–100) as bars (class "bar", each with a
 * tooltip), the count over each non-empty bar.
 */
export function histogramSvg(counts: number[], title: string, width = 640, height = 400): string {
  const margin = { left: 56, right: 16, top: 36, bottom: 44 };
  const plotW = width - margin.left - margin.right, plotH = height - margin.top - margin.bottom;
  const top = Math.max(1, ...counts);
  const step = top <= 5 ? 1 : Math.ceil(top / 5);
  const yMax = Math.ceil(top / step) * step;
  const y = (v: number) => margin.top + plotH - (v / yMax) * plotH;
  const bottom = margin.top + plotH;
  const barW = plotW / counts.length;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12" role="img" aria-label="${
      escapeXml(title)
    }">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${width / 2}" y="20" text-anchor="middle" font-weight="bold">${
      escapeXml(title)
    }</text>`,
  ];
  for (let t = 0; t <= yMax; t += step) {
    parts.push(
      `<line x1="${margin.left - 4}" x2="${margin.left}" y1="${y(t)}" y2="${y(t)}" stroke="#333"/>`,
      `<text x="${margin.left - 8}" y="${y(t) + 4}" text-anchor="end">${t}</text>`,
    );
  }
  counts.forEach((count, i) => {
    const x = margin.left + i * barW;
    const range = `${i * 10}–${i === counts.length - 1 ? 100 : i * 10 + 9}`;
    parts.push(
      `<rect x="${(x + 2).toFixed(1)}" class="bar" y="${y(count).toFixed(1)}" width="${
        (barW - 4).toFixed(1)
      }" height="${
        (bottom - y(count)).toFixed(1)
      }" fill="#1f77b4"><title>${range}: ${count}</title></rect>`,
      `<text x="${x.toFixed(1)}" y="${bottom + 18}" text-anchor="middle">${i * 10}</text>`,
    );
    if (count > 0) {
      parts.push(
        `<text x="${(x + barW / 2).toFixed(1)}" y="${
          (y(count) - 4).toFixed(1)
        }" text-anchor="middle">${count}</text>`,
      );
    }
  });
  parts.push(
    `<text x="${margin.left + plotW}" y="${bottom + 18}" text-anchor="middle">100</text>`,
    `<rect x="${margin.left}" y="${margin.top}" width="${plotW}" height="${plotH}" fill="none" stroke="#333"/>`,
    `<text x="${margin.left + plotW / 2}" y="${height - 10}" text-anchor="middle">Score</text>`,
    `<text transform="translate(16 ${
      margin.top + plotH / 2
    }) rotate(-90)" text-anchor="middle">Responses</text>`,
    `</svg>`,
  );
  return parts.join("\n") + "\n";
}
