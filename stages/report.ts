/**
 * Stage `report`: one self-contained HTML page a person opens in a browser after a run — the
 * loss curves of the training stages, the MMLU table, the judge's scores and histograms, the
 * pairwise preference and a side-by-side sample of the responses.
 *
 * It reads what its `needs` wrote through the artifact readers (llm/artifacts: training
 * histories, MMLU results, judge scores, pairwise preferences, responses), so list every stage
 * whose results belong in the report. Artifact: report.html, report.json (the data drawn).
 */
import { z } from "zod";
import { writeReport } from "../llm/artifacts/report.ts";
import { gatherReport } from "../llm/report/gather.ts";
import { renderReport } from "../llm/report/html.ts";
import { defineStage, type StageDefinition } from "../runner/stage.ts";

export const ReportParams = z.strictObject({
  title: z.string().min(1).optional().describe(
    "The page's title (default: the pipeline's name and “report”).",
  ),
  responses_shown: z.number().int().min(1).default(20).describe(
    "How many responses to show side by side (the first n entries).",
  ),
});
export type ReportParams = z.infer<typeof ReportParams>;

export const reportStage: StageDefinition = defineStage({
  type: "report",
  version: "1",
  description:
    "One self-contained HTML report: loss curves, MMLU, judge scores, pairwise, responses",
  params: ReportParams,
  outputs: ["report"],
  headline: ["sections"],
  async run(ctx) {
    const sources = Object.values(ctx.inputs).map((a) => ({
      stage: a.stage,
      dir: a.dir,
      params: a.manifest.params,
      inputs: a.manifest.inputs,
    }));
    if (sources.length === 0) {
      throw new Error(
        `stage "${ctx.name}": nothing to report: list the stages to gather under \`needs\``,
      );
    }
    const data = await gatherReport(sources, ctx.params.title ?? `${ctx.pipeline.name} report`, {
      cacheDir: ctx.pipeline.cacheDir,
    });
    await writeReport(
      ctx.outDir,
      data,
      renderReport(data, { responsesShown: ctx.params.responses_shown }),
    );
    const counts = {
      loss_curves: data.lossCurves.length,
      mmlu_rows: data.mmlu.length,
      judge_fields: data.judge.length,
      pairwise: data.pairwise.length,
      responses: data.responses?.entries.length ?? 0,
    };
    const sections = Object.entries(counts).filter(([, n]) => n > 0).map(([k]) => k);
    ctx.log.info(
      `report.html: ${
        Object.entries(counts).map(([k, n]) => `${n} ${k.replace("_", " ")}`).join(", ")
      }`,
    );
    return { metrics: { ...counts, sections: sections.join(" ") || "none" } };
  },
});
