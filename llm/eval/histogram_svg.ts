/**
 * The judge's scores as a standalone SVG bar chart: counts per 10-point bin, in the style of
 * the loss plot (llm/train/plot.ts): white background, framed plot, sans-serif 12 px, the
 * same blue.
 */
import type { FieldSummary } from "./judge.ts";

function escapeXml(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

export function scoreHistogramSvg(summary: FieldSummary, width = 640, height = 400): string {
  const title = `${summary.field}: ${summary.scored}/${summary.total} scored` +
    (summary.mean === null ? "" : `, mean ${summary.mean.toFixed(2)}`) +
    (summary.stderr === null ? "" : ` ± ${summary.stderr.toFixed(2)}`);
  const margin = { left: 60, right: 20, top: 40, bottom: 50 };
  const plotW = width - margin.left - margin.right, plotH = height - margin.top - margin.bottom;
  const top = Math.max(1, ...summary.histogram);
  const step = top <= 5 ? 1 : Math.ceil(top / 5);
  const yMax = Math.ceil(top / step) * step;
  const y = (v: number) => margin.top + plotH - (v / yMax) * plotH;
  const barW = plotW / summary.histogram.length;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
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
  summary.histogram.forEach((count, i) => {
    const x = margin.left + i * barW;
    parts.push(
      `<rect x="${(x + 2).toFixed(1)}" y="${y(count).toFixed(1)}" width="${
        (barW - 4).toFixed(1)
      }" height="${(margin.top + plotH - y(count)).toFixed(1)}" fill="#1f77b4"><title>${i * 10}–${
        i === 9 ? 100 : i * 10 + 9
      }: ${count}</title></rect>`,
      `<text x="${x.toFixed(1)}" y="${margin.top + plotH + 18}" text-anchor="middle">${
        i * 10
      }</text>`,
    );
  });
  parts.push(
    `<text x="${margin.left + plotW}" y="${
      margin.top + plotH + 18
    }" text-anchor="middle">100</text>`,
    `<rect x="${margin.left}" y="${margin.top}" width="${plotW}" height="${plotH}" fill="none" stroke="#333"/>`,
    `<text x="${margin.left + plotW / 2}" y="${height - 12}" text-anchor="middle">Score</text>`,
    `<text transform="translate(16 ${
      margin.top + plotH / 2
    }) rotate(-90)" text-anchor="middle">Responses</text>`,
    `</svg>`,
  );
  return parts.join("\n") + "\n";
}
