/**
 * Stage `judge`: the book's LLM judge on a responses file, per response field (0–100 scores,
 * mean, standard error, histogram), and, for two fields, pairwise preference in both orders.
 *
 * The responses come from `responses:` (a path) or from an upstream artifact holding
 * `responses.json` (the fine-tuning stage's `responses`); the book's format either way.
 *
 * Artifact: scores.jsonl (every answer, as asked), judge.json (the judge and the per-field
 * results with every unscored reply), histogram-<field>.svg, pairwise.json (two fields).
 * Answers are appended to the progress folder as they arrive, so a run that stops (Ctrl-C,
 * the judge went away) resumes without asking again.
 *
 * Cache key: the parameters (API, URL, model name) and the responses; how the judge is asked
 * (`concurrency`, `timeout_s`, `retries`) is left out, so changing it reuses a finished artifact
 * and a partial run's answers. The key needs no server: a finished artifact is reused while the
 * judge is down. For Ollama the digest of the weights the model name points to is looked up
 * when judging and recorded (judge.json, the manifest's `environment.judge`, each answer in
 * the ledger, so answers of other weights under the same name are asked again); when it could
 * not be looked up the run says so and records why (`digest_unchecked`). OpenAI-compatible
 * servers report no digest: there the model name alone identifies the judge.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { resolvePath, writeFileAtomic } from "../llm/files.ts";
import { defineStage, type StageContext, type StageDefinition } from "../runner/stage.ts";
import { scoreHistogramSvg } from "../llm/eval/histogram_svg.ts";
import { readResponses, responseFields } from "../llm/eval/judge.ts";
import { DEFAULT_MODELS, DEFAULT_URLS } from "../llm/eval/judge_client.ts";
import { runJudge } from "../llm/eval/judge_run.ts";

export const RESPONSES_FILE = "responses.json";

export const JudgeParams = z.strictObject({
  responses: z.string().min(1).optional().describe(
    "A responses file (book format); else an upstream artifact's responses.json.",
  ),
  from: z.string().optional().describe(
    "Which upstream stage's responses, when `needs` lists several.",
  ),
  fields: z.array(z.string().min(1)).min(1).optional().describe(
    "The response fields to score (default: every field besides instruction/input/output).",
  ),
  api: z.enum(["ollama", "openai"]).default("ollama").describe(
    "the judge API: `ollama` (POST /api/chat) or `openai` (any OpenAI-compatible POST /v1/chat/completions: OpenAI, vLLM, llama.cpp, LM Studio)",
  ),
  url: z.url().optional().describe(
    "Default http://localhost:11434 (Ollama) or https://api.openai.com.",
  ),
  model: z.string().min(1).optional().describe("Default llama3 (Ollama) or gpt-4o-mini."),
  api_key_env: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/).optional().describe(
    "Environment variable holding the API key (the key itself never goes in a pipeline).",
  ),
  lenient: z.boolean().default(false).describe(
    'Accept replies like "Score: 85" (the book counts only a bare integer).',
  ),
  pairwise: z.boolean().optional().describe(
    "Pairwise preference between the two fields (default: on when there are exactly two).",
  ),
  concurrency: z.number().int().min(1).max(64).default(4).describe("requests in flight at once"),
  timeout_s: z.number().positive().default(120).describe(
    "seconds before a request is abandoned (then retried)",
  ),
  retries: z.number().int().min(0).max(10).default(4).describe(
    "retries after a connection error, a timeout, 429 (honouring Retry-After) or 5xx, with exponential backoff",
  ),
  limit: z.number().int().min(1).optional().describe("Judge only the first `limit` entries."),
});
export type JudgeParams = z.infer<typeof JudgeParams>;

/** The responses file: the `responses:` path, or the one upstream artifact that has one. */
function responsesPath(ctx: StageContext<JudgeParams>): string {
  const { responses, from } = ctx.params;
  if (responses !== undefined) return resolvePath(responses, ctx.pipeline.baseDir);
  const candidates = Object.values(ctx.inputs).filter((a) =>
    (from === undefined || a.stage === from) && existsSync(join(a.dir, RESPONSES_FILE))
  );
  if (candidates.length === 1) return join(candidates[0].dir, RESPONSES_FILE);
  const needs = Object.keys(ctx.inputs).join(", ") || "none";
  if (candidates.length === 0) {
    throw new Error(
      `stage "${ctx.name}": no responses: give \`responses: <file>\` or need a stage whose ` +
        `artifact has ${RESPONSES_FILE}${from ? ` (from: ${from})` : ""}; needs: ${needs}`,
    );
  }
  throw new Error(
    `stage "${ctx.name}": several upstream stages have ${RESPONSES_FILE} (${
      candidates.map((c) => c.stage).join(", ")
    }): say which with \`from:\``,
  );
}

/** A field name as a file name part. */
const fileSafe = (field: string) => field.replace(/[^A-Za-z0-9_.-]+/g, "_");

export const judgeStage: StageDefinition = defineStage({
  type: "judge",
  version: "1",
  description: "Score responses 0–100 with an LLM judge (Ollama/OpenAI API); pairwise preference",
  params: JudgeParams,
  localFiles: (p, pipeline) => (p.responses ? [resolvePath(p.responses, pipeline.baseDir)] : []),
  headline: ["judge", "mean", "scored", "win_rate"],
  // How the judge is asked, not what it answers: changing these reuses the cached scores.
  cadenceParams: ["concurrency", "timeout_s", "retries"],
  async run(ctx) {
    const p = ctx.params;
    const path = responsesPath(ctx);
    let entries = await readResponses(path, p.fields);
    if (p.limit) entries = entries.slice(0, p.limit);
    const fields = p.fields ?? responseFields(entries);
    if (fields.length === 0) {
      throw new Error(`${path}: the entries have no response field to judge`);
    }
    const pairwise = p.pairwise ?? fields.length === 2;
    const config = {
      api: p.api,
      url: p.url ?? DEFAULT_URLS[p.api],
      model: p.model ?? DEFAULT_MODELS[p.api],
      apiKeyEnv: p.api_key_env,
      timeoutMs: p.timeout_s * 1000,
      retries: p.retries,
    };
    ctx.log.info(
      `judging ${entries.length} entries × ${fields.join(", ")} with ${config.model} at ` +
        `${config.url} (${config.api} API)${pairwise ? ", then pairwise" : ""}`,
    );
    const ledgerPath = join(ctx.progressDir, "scores.jsonl");
    let phase = "";
    const report = await runJudge(entries, config, {
      fields,
      pairwise,
      ledgerPath,
      concurrency: p.concurrency,
      lenient: p.lenient,
      signal: ctx.signal,
      onProgress: (what, done, total) => {
        if (what !== phase) {
          if (phase) ctx.progress.finish();
          ctx.progress.start(what === "scores" ? "scores" : "pairwise", total, "answers");
          phase = what;
        }
        ctx.progress.update(done);
      },
    });
    if (phase) ctx.progress.finish();
    ctx.recordEnvironment({ judge: report.judge });
    if (report.judge.digest) ctx.log.info(`judge weights: ${report.judge.digest}`);
    else if (report.judge.digest_unchecked) {
      ctx.log.warn(
        `the judge's weights could not be identified (${report.judge.digest_unchecked}): ` +
          `the scores are recorded under the model name "${report.judge.model}" alone`,
      );
    }
    if (report.reused > 0) ctx.log.info(`${report.reused} answer(s) reused from an earlier run`);

    await writeFileAtomic(join(ctx.outDir, "scores.jsonl"), await Deno.readTextFile(ledgerPath));
    await writeFileAtomic(
      join(ctx.outDir, "judge.json"),
      JSON.stringify(
        {
          responses: path,
          judge: report.judge,
          lenient: p.lenient,
          fields: report.fields,
          scores: report.scores,
        },
        null,
        2,
      ) + "\n",
    );
    const metrics: Record<string, number | string> = { judge: report.judge.model };
    for (const summary of report.fields) {
      await writeFileAtomic(
        join(ctx.outDir, `histogram-${fileSafe(summary.field)}.svg`),
        scoreHistogramSvg(summary),
      );
      const suffix = fields.length > 1 ? `_${summary.field}` : "";
      metrics[`mean${suffix}`] = summary.mean === null
        ? "n/a"
        : Math.round(summary.mean * 100) / 100;
      metrics[`scored${suffix}`] = `${summary.scored}/${summary.total}`;
      ctx.log.info(
        `${summary.field}: ${summary.scored}/${summary.total} scored, mean ${
          summary.mean?.toFixed(2) ?? "n/a"
        }${summary.stderr === null ? "" : ` ± ${summary.stderr.toFixed(2)}`}`,
      );
    }
    if (report.pairwise) {
      await writeFileAtomic(
        join(ctx.outDir, "pairwise.json"),
        JSON.stringify({ judge: report.judge, ...report.pairwise }, null, 2) + "\n",
      );
      const w = report.pairwise;
      metrics.win_rate = w.win_rate === null ? "n/a" : Math.round(w.win_rate * 10000) / 10000;
      metrics.contradiction_rate = w.contradiction_rate === null
        ? "n/a"
        : Math.round(w.contradiction_rate * 10000) / 10000;
      const replies = w.judgments.flatMap((j) => j.verdicts);
      const unparsed = replies.filter((v) => v === null).length;
      if (w.judged === 0) {
        const example = w.unparsed[0]?.replies[0];
        ctx.log.warn(
          `pairwise ${w.first} vs ${w.second}: no win rate: ${
            unparsed === replies.length ? "all" : unparsed
          } of the judge's ${replies.length} replies were unparseable (it must answer "A", ` +
            `"B" or "tie"${
              example === undefined ? "" : `; it said ${JSON.stringify(example.slice(0, 40))}`
            })`,
        );
      } else {
        ctx.log.info(
          `pairwise ${w.first} vs ${w.second}: win rate ${w.win_rate?.toFixed(3) ?? "n/a"} ` +
            `(${w.wins} wins, ${w.ties} ties, ${w.losses} losses; ${w.contradictions} ` +
            `contradiction(s) when the order flips)${
              unparsed ? `; ${unparsed} of ${replies.length} replies unparseable` : ""
            }`,
        );
      }
    }
    return { metrics };
  },
});
