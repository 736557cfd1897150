/**
 * Stage `judge`: the book's LLM judge on a responses file, per response field (0–100 scores,
 * mean, standard error, histogram), and, for two fields, pairwise preference in both orders.
 *
 * The responses come from `responses:` (a path) or from an upstream artifact holding
 * `responses.json` (the fine-tuning stage's `responses`); the book's format either way.
 *
 * Artifact (llm/artifacts/judge.ts writes and reads it): scores.jsonl (every answer, as asked),
 * judge.json (the judge, the responses judged: an upstream artifact's by stage and cache key,
 * so a moved cache still finds them, or the `responses:` path; the per-field results with
 * every unscored reply), histogram-<field>.svg, pairwise.json (two fields).
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
 *
 * `api: local` runs the judge model in this process instead of asking a server (the
 * workshop's part 6, Llama-3-8B-Instruct through LitGPT): `model:` names a stage in `needs`
 * that produced a model (any folder `openModelFolder` opens), or a Hub repository or catalog id
 * (fetched like `load-hf-model`: the mirror folder, the download cache, the Hub, at `revision:`
 * or the catalog's pinned commit). The prompt is the user message of the model's chat template,
 * decoded greedily for at most `max_new_tokens` (50, LitGPT's default), `concurrency` prompts
 * decoded together. The same rules as a server judge: the same prompts, strict integers,
 * unscored replies kept, the same resumable ledger, pairwise in both orders. Its key: the
 * upstream model's artifact key (or the repository and revision), the prompts (the
 * responses), `max_new_tokens`; the weights' digest (their files' sha256) is recorded as
 * Ollama's is.
 */
import { dirname, join } from "node:path";
import { z } from "zod";
import { resolvePath } from "../util/files.ts";
import { ensureMemory, formatBytes } from "../util/disk.ts";
import { defineStage, type StageContext, type StageDefinition } from "../runner/stage.ts";
import { type JudgedResponses, writeJudgeScores, writePairwise } from "../llm/artifacts/judge.ts";
import { hasResponses, RESPONSES_FILE, responsesPath } from "../llm/artifacts/responses.ts";
import { readResponses, responseFields } from "../llm/eval/judge.ts";
import type { Judge } from "../llm/eval/judge_asker.ts";
import { DEFAULT_MODELS, DEFAULT_URLS, type JudgeConfig } from "../llm/eval/judge_client.ts";
import { LOCAL_JUDGE_MAX_NEW_TOKENS, LocalJudge, weightsDigest } from "../llm/eval/judge_local.ts";
import { runJudge } from "../llm/eval/judge_run.ts";
import { openModelFolder } from "../llm/infer/open_model.ts";
import { downloadHfModel, isRepoId } from "../datasets/hf_hub.ts";
import { findHfModel, hfModelIds } from "../datasets/hf_models.ts";
import { modelInput } from "./common.ts";
import { useEngine } from "./engine.ts";
import { quantizationOf, QUANTIZE_NEUTRAL, quantizeParam } from "./quantize.ts";
import { bytesPerParameter } from "../llm/model/precision.ts";

export { RESPONSES_FILE };

const JudgeParamsObject = z.strictObject({
  responses: z.string().min(1).optional().describe(
    "A responses file (book format); else an upstream artifact's responses.json.",
  ),
  from: z.string().optional().describe(
    "Which upstream stage's responses, when `needs` lists several.",
  ),
  fields: z.array(z.string().min(1)).min(1).optional().describe(
    "The response fields to score (default: every field besides instruction/input/output).",
  ),
  api: z.enum(["ollama", "openai", "local"]).default("ollama").describe(
    "the judge API: `ollama` (POST /api/chat), `openai` (any OpenAI-compatible POST /v1/chat/completions: OpenAI, vLLM, llama.cpp, LM Studio) or `local` (the `model` run in this process: no server)",
  ),
  url: z.url().optional().describe(
    "Default http://localhost:11434 (Ollama) or https://api.openai.com.",
  ),
  model: z.string().min(1).optional().describe(
    "Default llama3 (Ollama) or gpt-4o-mini. With `api: local` (required): a stage in `needs` " +
      "that produced a model, or a Hub repository (`meta-llama/Meta-Llama-3-8B-Instruct`) or " +
      "catalog id of `deno task models`.",
  ),
  revision: z.string().min(1).optional().describe(
    "`api: local` with a Hub model: the branch, tag or commit (default: the catalog's pinned " +
      "commit, else `main`).",
  ),
  max_new_tokens: z.number().int().min(1).max(4096).optional().describe(
    `\`api: local\`: new tokens per reply at most (default ${LOCAL_JUDGE_MAX_NEW_TOKENS}, LitGPT's).`,
  ),
  api_key_env: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/).optional().describe(
    "Environment variable holding the API key (the key itself never goes in a pipeline).",
  ),
  lenient: z.boolean().default(false).describe(
    'Accept replies like "Score: 85" (the book counts only a bare integer).',
  ),
  pairwise: z.boolean().optional().describe(
    "Pairwise preference between the two fields (default: on when there are exactly two).",
  ),
  concurrency: z.number().int().min(1).max(64).default(4).describe(
    "requests in flight at once (`api: local`: prompts decoded together)",
  ),
  timeout_s: z.number().positive().default(120).describe(
    "seconds before a request is abandoned (then retried)",
  ),
  retries: z.number().int().min(0).max(10).default(4).describe(
    "retries after a connection error, a timeout, 429 (honouring Retry-After) or 5xx, with exponential backoff",
  ),
  limit: z.number().int().min(1).optional().describe("Judge only the first `limit` entries."),
  quantize: quantizeParam.describe(
    "`api: local`: how the judge's weights are held, `none` (default, fp32), `bf16` or `int8` " +
      "(GGUF's Q8_0; Llama-3-8B: about 8.5 GB instead of 32). Part of the cache key and " +
      "recorded with the judge. See docs/scale.md.",
  ),
});

/** Keys read only by a server judge, and only by a local one. */
const SERVER_ONLY = ["url", "api_key_env"] as const;
const LOCAL_ONLY = ["revision", "max_new_tokens", "quantize"] as const;

export const JudgeParams = JudgeParamsObject.superRefine((p, issues) => {
  const local = p.api === "local";
  for (const key of local ? SERVER_ONLY : LOCAL_ONLY) {
    if (p[key] !== undefined) {
      issues.addIssue({
        code: "custom",
        path: [key],
        message: `\`${key}\` is only read with api: ${
          local ? "ollama or openai" : "local"
        } (api is ${p.api})`,
      });
    }
  }
  if (local && p.model === undefined) {
    issues.addIssue({
      code: "custom",
      path: ["model"],
      message: "api: local needs `model:`: a stage in `needs` that produced a model, or a Hub " +
        "repository (<org>/<name>) or catalog id",
    });
  }
});
export type JudgeParams = z.infer<typeof JudgeParams>;

/** Whether a local judge's `model` names a Hub model (a repository or a catalog id). */
const isHubModel = (model: string) => isRepoId(model) || findHfModel(model) !== undefined;

/**
 * The local judge's model: the upstream stage `model` names (its artifact's weights), else the
 * Hub repository or catalog id, fetched into the download cache as `load-hf-model` does.
 */
async function openLocalJudge(ctx: StageContext<JudgeParams>): Promise<LocalJudge> {
  const p = ctx.params;
  const wanted = p.model!;
  const maxNewTokens = p.max_new_tokens;
  const quantize = quantizationOf(p);
  // How the weights were held is part of which judge answered (recorded in judge.json).
  const held: Record<string, string> = quantize === "none" ? {} : { quantize };
  if (ctx.inputs[wanted] || !isHubModel(wanted)) {
    const artifact = modelInput(ctx, wanted); // an error naming the needs when it is neither
    const files = Object.entries(artifact.manifest.outputs ?? {}).map(([name, file]) => ({
      name,
      sha256: file.sha256,
    }));
    const opened = await openModelFolder(artifact.dir, { quantize });
    return new LocalJudge(opened, {
      name: wanted,
      digest: weightsDigest(files),
      source: { stage: artifact.stage, type: artifact.type, key: artifact.key, ...held },
      maxNewTokens,
    });
  }
  const entry = findHfModel(wanted);
  const repo = entry?.repo ?? wanted;
  const revision = p.revision ?? entry?.revision ?? "main";
  const fetched = await downloadHfModel(repo, revision, {
    mirror: ctx.pipeline.mirror,
    progress: ctx.progress,
    log: ctx.log,
    signal: ctx.signal,
    // What the judge will hold: the weights at `quantize`'s size (int8: about a quarter of fp32).
    checkSize: (size) =>
      ensureMemory(
        Math.round((size.fp32Bytes / 4) * bytesPerParameter(quantize)),
        `the judge ${repo} at ${quantize === "none" ? "fp32" : quantize} (${
          formatBytes(size.storedBytes)
        } of ${size.dtype} weights)`,
      ),
  });
  // Every source keeps a model's files in one folder (the mirror's, the cache's commit folder).
  const config = fetched.files.find((file) => file.name === "config.json")!;
  const opened = await openModelFolder(dirname(config.path), { quantize });
  return new LocalJudge(opened, {
    name: repo,
    digest: weightsDigest(fetched.files),
    source: { repo, revision, commit: fetched.commit, from: fetched.source, ...held },
    maxNewTokens,
  });
}

/**
 * The responses to judge: the `responses:` path, or the one upstream artifact that has a
 * responses file, recorded by stage and key (a moved cache still finds it).
 */
function responsesSource(
  ctx: StageContext<JudgeParams>,
): { path: string; recorded: JudgedResponses } {
  const { responses, from } = ctx.params;
  if (responses !== undefined) {
    const path = resolvePath(responses, ctx.pipeline.baseDir);
    return { path, recorded: path };
  }
  const candidates = Object.values(ctx.inputs).filter((a) =>
    (from === undefined || a.stage === from) && hasResponses(a.dir)
  );
  if (candidates.length === 1) {
    const [{ stage, key, dir }] = candidates;
    return { path: responsesPath(dir), recorded: { stage, key, file: RESPONSES_FILE } };
  }
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

export const judgeStage: StageDefinition = defineStage({
  type: "judge",
  version: "1",
  neutralParams: QUANTIZE_NEUTRAL,
  description:
    "Score responses 0–100 with an LLM judge (a server or in-process); pairwise preference",
  params: JudgeParams,
  outputs: ["judge", "pairwise"],
  localFiles: (p, pipeline) => (p.responses ? [resolvePath(p.responses, pipeline.baseDir)] : []),
  headline: ["judge", "mean", "scored", "win_rate"],
  // How the judge is asked, not what it answers: changing these reuses the cached scores.
  cadenceParams: ["concurrency", "timeout_s", "retries"],
  // A local judge's model: a stage in `needs` that produces one, or a Hub model.
  checkUpstream: (p, upstream) => {
    if (p.api !== "local" || p.model === undefined) return [];
    const direct = upstream.filter((s) => s.direct);
    const found = direct.find((s) => s.name === p.model);
    const models = direct.filter((s) => s.producesModel).map((s) => s.name);
    if (found) {
      if (found.producesModel) return [];
      return [{
        key: "model",
        message: `stage "${p.model}" (${found.type}) produces no model; stages in needs that ` +
          `do: ${models.join(", ") || "none"}`,
      }];
    }
    if (isHubModel(p.model)) return [];
    return [{
      key: "model",
      message: `"${p.model}" is neither a stage in needs (${
        direct.map((s) => s.name).join(", ") || "none"
      }) nor a Hub repository (<org>/<name>) nor a catalog id (${hfModelIds().join(", ")})`,
    }];
  },
  async run(ctx) {
    const p = ctx.params;
    const { path, recorded } = responsesSource(ctx);
    let entries = await readResponses(path, p.fields);
    if (p.limit) entries = entries.slice(0, p.limit);
    const fields = p.fields ?? responseFields(entries);
    if (fields.length === 0) {
      throw new Error(`${path}: the entries have no response field to judge`);
    }
    const pairwise = p.pairwise ?? fields.length === 2;
    let judge: JudgeConfig | Judge;
    let local: LocalJudge | undefined;
    if (p.api === "local") {
      await useEngine(ctx);
      judge = local = await openLocalJudge(ctx);
      ctx.log.info(
        `judging ${entries.length} entries × ${fields.join(", ")} with ${local.model} in this ` +
          `process (greedy, at most ${local.maxNewTokens} new tokens)${
            pairwise ? ", then pairwise" : ""
          }`,
      );
    } else {
      const config = {
        api: p.api,
        url: p.url ?? DEFAULT_URLS[p.api],
        model: p.model ?? DEFAULT_MODELS[p.api],
        apiKeyEnv: p.api_key_env,
        timeoutMs: p.timeout_s * 1000,
        retries: p.retries,
      };
      judge = config;
      ctx.log.info(
        `judging ${entries.length} entries × ${fields.join(", ")} with ${config.model} at ` +
          `${config.url} (${config.api} API)${pairwise ? ", then pairwise" : ""}`,
      );
    }
    const ledgerPath = join(ctx.progressDir, "scores.jsonl");
    let phase = "";
    let report;
    try {
      report = await runJudge(entries, judge, {
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
    } finally {
      local?.dispose();
    }
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

    await writeJudgeScores(ctx.outDir, {
      responses: recorded,
      judge: report.judge,
      lenient: p.lenient,
      fields: report.fields,
      scores: report.scores,
      ledger: await Deno.readTextFile(ledgerPath),
    });
    const metrics: Record<string, number | string> = { judge: report.judge.model };
    for (const summary of report.fields) {
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
      await writePairwise(ctx.outDir, report.judge, report.pairwise);
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
