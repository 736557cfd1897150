/**
 * The run report: one self-contained HTML file (no scripts, no external files) that a person
 * opens in a browser after a workshop run. It gathers what the evaluation stages measured —
 * loss curves, MMLU accuracy, the judge's scores with their histograms, the pairwise
 * preference — and a side-by-side sample of the models' responses.
 *
 * The renderer is a pure function of plain data; the `report` stage reads the artifacts.
 */
import { escapeXml } from "../../util/markup.ts";
import { histogramSvg } from "../eval/histogram_svg.ts";
import { type LossCurve, lossPlotSvg } from "../train/plot.ts";

/** One training run's loss history, drawn as the book's figure. */
export interface ReportLossCurve {
  /** Stage name, e.g. "pretrain" or "lora-finetune". */
  name: string;
  curve: LossCurve;
}

/** MMLU (or any harness-style task) accuracy of one model. */
export interface ReportMmluRow {
  model: string;
  task: string;
  acc: number;
  stderr: number;
  samples: number;
}

/** The judge's summary for one response field. */
export interface ReportJudgeField {
  field: string;
  judge: string;
  scored: number;
  total: number;
  mean: number;
  stderr: number;
  /** Counts per 10-point bin: [0,10), [10,20), ..., [90,100]. */
  histogram: number[];
}

/** The pairwise preference between two response fields. */
export interface ReportPairwise {
  a: string;
  b: string;
  judge: string;
  /** Win rate of `a` over `b`, ties counting half. */
  winRate: number;
  wins: number;
  losses: number;
  ties: number;
  /** Share of questions where the verdict changed when the answer order flipped. */
  inconsistency: number;
}

/** Responses side by side: each entry's reference output and one text per model field. */
export interface ReportResponses {
  fields: string[];
  entries: Array<
    { instruction: string; input: string; output: string; responses: Record<string, string> }
  >;
  /** Judge scores by field, parallel to `entries` (undefined: not scored). */
  scores?: Record<string, Array<number | undefined>>;
}

export interface ReportData {
  title: string;
  /** When the report was made (ISO 8601); shown under the title. */
  createdAt: string;
  lossCurves: ReportLossCurve[];
  mmlu: ReportMmluRow[];
  judge: ReportJudgeField[];
  pairwise: ReportPairwise[];
  responses?: ReportResponses;
}

function percent(value: number, digits = 1): string {
  return Number.isFinite(value) ? `${(value * 100).toFixed(digits)}%` : "—";
}

function fixed(value: number, digits: number): string {
  return Number.isFinite(value) ? value.toFixed(digits) : "—";
}

function table(headers: string[], rows: string[][]): string {
  const head = headers.map((h) => `<th>${escapeXml(h)}</th>`).join("");
  const body = rows.map((r) => `<tr>${r.map((c) => `<td>${c}</td>`).join("")}</tr>`).join("\n");
  return `<table><thead><tr>${head}</tr></thead><tbody>\n${body}\n</tbody></table>`;
}

function lossSection(curves: ReportLossCurve[]): string {
  if (curves.length === 0) return "";
  const figures = curves.map((c) =>
    `<figure>${lossPlotSvg({ ...c.curve, title: c.name })}<figcaption>${
      escapeXml(c.name)
    }: final train ${fixed(c.curve.train.at(-1) ?? NaN, 3)}, val ${
      fixed(c.curve.val.at(-1) ?? NaN, 3)
    }</figcaption></figure>`
  );
  return `<section id="loss"><h2>Loss curves</h2>${figures.join("\n")}</section>`;
}

function mmluSection(rows: ReportMmluRow[]): string {
  if (rows.length === 0) return "";
  return `<section id="mmlu"><h2>MMLU</h2>${
    table(
      ["model", "task", "acc", "± stderr", "questions"],
      rows.map((r) => [
        escapeXml(r.model),
        escapeXml(r.task),
        fixed(r.acc, 4),
        fixed(r.stderr, 4),
        String(r.samples),
      ]),
    )
  }</section>`;
}

function judgeSection(fields: ReportJudgeField[]): string {
  if (fields.length === 0) return "";
  const rows = fields.map((f) => [
    escapeXml(f.field),
    escapeXml(f.judge),
    `${f.scored} / ${f.total}`,
    fixed(f.mean, 2),
    fixed(f.stderr, 2),
  ]);
  const charts = fields.map((f) =>
    `<figure>${histogramSvg(f.histogram, `${f.field}: judge scores`, 420, 240)}</figure>`
  );
  return `<section id="judge"><h2>LLM judge (0–100)</h2>${
    table(["responses", "judge", "scored", "mean", "± stderr"], rows)
  }<div class="row">${charts.join("")}</div></section>`;
}

function pairwiseSection(results: ReportPairwise[]): string {
  if (results.length === 0) return "";
  return `<section id="pairwise"><h2>Pairwise preference</h2>${
    table(
      ["A", "B", "judge", "A's win rate", "wins / ties / losses", "order flips the verdict"],
      results.map((r) => [
        escapeXml(r.a),
        escapeXml(r.b),
        escapeXml(r.judge),
        percent(r.winRate),
        `${r.wins} / ${r.ties} / ${r.losses}`,
        percent(r.inconsistency),
      ]),
    )
  }</section>`;
}

function responsesSection(responses: ReportResponses | undefined, limit: number): string {
  if (!responses || responses.entries.length === 0) return "";
  const shown = responses.entries.slice(0, limit);
  const headers = ["#", "instruction", "reference", ...responses.fields];
  const rows = shown.map((e, i) => {
    const prompt = escapeXml(e.instruction) +
      (e.input ? `<div class="input">${escapeXml(e.input)}</div>` : "");
    const cells = responses.fields.map((f) => {
      const score = responses.scores?.[f]?.[i];
      const badge = score === undefined ? "" : `<span class="score">${score}</span> `;
      return badge + escapeXml(e.responses[f] ?? "");
    });
    return [String(i), prompt, escapeXml(e.output), ...cells];
  });
  const note = responses.entries.length > shown.length
    ? `<p>The first ${shown.length} of ${responses.entries.length} entries.</p>`
    : "";
  return `<section id="responses"><h2>Responses side by side</h2>${note}${
    table(headers, rows)
  }</section>`;
}

const STYLE = `
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1200px; color: #222; }
h1 { margin-bottom: 0; } .when { color: #666; margin-top: .25rem; }
table { border-collapse: collapse; margin: .5rem 0 1rem; width: 100%; }
th, td { border: 1px solid #ddd; padding: .35rem .5rem; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } figure { display: inline-block; margin: .5rem; }
.row { display: flex; flex-wrap: wrap; } .input { color: #555; font-style: italic; margin-top: .25rem; }
.score { background: #1f77b4; color: white; border-radius: 3px; padding: 0 .3rem; font-size: .85em; }
`;

/** Renders the whole report as one HTML document. */
export function renderReport(data: ReportData, options: { responsesShown?: number } = {}): string {
  const sections = [
    lossSection(data.lossCurves),
    mmluSection(data.mmlu),
    judgeSection(data.judge),
    pairwiseSection(data.pairwise),
    responsesSection(data.responses, options.responsesShown ?? 20),
  ].filter((s) => s !== "");
  const body = sections.length > 0 ? sections.join("\n") : "<p>Nothing to report yet.</p>";
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeXml(data.title)}</title>
<style>${STYLE}</style></head>
<body><h1>${escapeXml(data.title)}</h1><p class="when">${escapeXml(data.createdAt)}</p>
${body}
</body></html>
`;
}
