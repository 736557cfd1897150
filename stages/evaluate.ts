/**
 * Stage `evaluate`: MMLU as lm-evaluation-harness computes it, on a model an upstream stage
 * produced (ours, or an open model in the Hub's layout: `openModelFolder` opens both). The
 * prompts are tokenized as the harness's HFLM does with the model's own tokenizer: with the BOS
 * that tokenizer adds (Llama 3.1/3.2, Gemma 3) and none where it adds none (GPT-2, Qwen3, Phi-2);
 * the continuation " A" is what follows the context in the tokens of context + " A". The work is
 * in llm/eval/mmlu/; this stage picks
 * the model and the data source and writes the artifact:
 *   results.json   the harness's output layout (results / groups / configs / n-samples / config)
 *   samples.jsonl  one line per question: prompt, the four log-likelihoods, prediction, target
 * and the headline numbers (accuracy of each requested task) for the run summary.
 *
 * Data sources: `csv` (a folder of the original CSVs, default the mirror's `mmlu/`), `parquet`
 * (the `cais/mmlu` files the harness reads: downloaded, pinned and cached, or a local snapshot
 * in `parquet_dir`), `tar` (the original data.tar: downloaded and pinned, or `tar_file`); `auto`
 * uses the CSV folder where it has the subject and Parquet elsewhere.
 */
import { join } from "node:path";
import { z } from "zod";
import { resolvePath } from "../util/files.ts";
import { writeMmluResults } from "../llm/artifacts/mmlu.ts";
import { defineStage, type StageContext, type StageDefinition } from "../runner/stage.ts";
import {
  CAIS_MMLU_REVISION,
  csvFolderHas,
  mmluLoader,
  mmluMirrorFolder,
  parquetDirFile,
} from "../datasets/mmlu.ts";
import { originalCsvPath } from "../llm/eval/mmlu/data.ts";
import { evaluateMmlu, type MmluLoader } from "../llm/eval/mmlu/evaluate.ts";
import { harnessResults } from "../llm/eval/mmlu/results.ts";
import { expandMmluTasks, mmluTask } from "../llm/eval/mmlu/subjects.ts";
import { fetchForStage, modelInput } from "./common.ts";
import { useEngine } from "./engine.ts";
import { openModelFolder } from "../llm/infer/open_model.ts";
import { quantizationOf, QUANTIZE_NEUTRAL, quantizeParam } from "./quantize.ts";

export const EvaluateParams = z.strictObject({
  tasks: z.array(z.string()).min(1).default(["mmlu"]).describe(
    "harness task names: `mmlu` (57 subjects), `mmlu_stem`, `mmlu_humanities`, `mmlu_social_sciences`, `mmlu_other`, or `mmlu_<subject>` (e.g. `mmlu_philosophy`)",
  ).superRefine((tasks, issues) => {
    for (const [i, name] of tasks.entries()) {
      try {
        mmluTask(name);
      } catch (error) {
        issues.addIssue({ code: "custom", path: [i], message: (error as Error).message });
      }
    }
  }),
  num_fewshot: z.number().int().min(0).max(5).default(0).describe(
    "solved questions shown before each question (the first n of the `dev` split; 5 per subject)",
  ),
  limit: z.number().int().min(1).optional().describe(
    "only the first `limit` test questions of each subject (the harness's `--limit`)",
  ),
  batch_size: z.number().int().min(1).default(8).describe(
    "model inputs per forward pass (fewer when the logits would pass 256 MiB)",
  ),
  source: z.enum(["auto", "csv", "parquet", "tar"]).default("auto").describe(
    "`csv` (the original CSVs: `csv_dir` or the mirror's `mmlu/`), `parquet` (`cais/mmlu`, as the harness reads it), `tar` (the original `data.tar`); `auto`: the mirror's CSVs where it has the subject, else Parquet",
  ),
  csv_dir: z.string().min(1).optional().describe(
    "a folder of the original CSVs (`{dev,val,test}/<subject>_<split>.csv`); default the mirror's `mmlu/`",
  ),
  parquet_dir: z.string().min(1).optional().describe(
    "source parquet: a local snapshot of `cais/mmlu` (`<subject>/<split>-00000-of-00001.parquet` or `all/<split>-00000-of-00001.parquet`) read in place instead of the pinned download",
  ),
  tar_file: z.string().min(1).optional().describe(
    "source tar: a local copy of the release's `data.tar` read in place instead of the pinned download",
  ),
  from: z.string().optional().describe(
    "which upstream stage's model to evaluate when `needs` lists several",
  ),
  quantize: quantizeParam,
}).superRefine((p, issues) => {
  // A named local copy is read only by its own source; anywhere else it would be ignored.
  for (const [key, source] of [["parquet_dir", "parquet"], ["tar_file", "tar"]] as const) {
    if (p[key] !== undefined && p.source !== source) {
      issues.addIssue({
        code: "custom",
        path: [key],
        message: `${key} is read by \`source: ${source}\` only (source is ${p.source})`,
      });
    }
  }
});
export type EvaluateParams = z.infer<typeof EvaluateParams>;

function csvFolder(ctx: StageContext<EvaluateParams>): string | undefined {
  const dir = ctx.params.csv_dir;
  if (dir !== undefined) return resolvePath(dir, ctx.pipeline.baseDir);
  return mmluMirrorFolder(ctx.pipeline.mirror);
}

/** The loader for the chosen source, and a description of where each split came from. */
function dataLoader(ctx: StageContext<EvaluateParams>): { load: MmluLoader; used: Set<string> } {
  const fetch = (file: Parameters<typeof fetchForStage>[1]) => fetchForStage(ctx, file);
  const csvDir = csvFolder(ctx);
  const used = new Set<string>();
  const source = ctx.params.source;
  if (source === "csv" && !csvDir) {
    throw new Error(
      "evaluate: source csv needs `csv_dir:` or a mirror folder with mmlu/{dev,val,test}/<subject>_<split>.csv",
    );
  }
  const csv = csvDir ? mmluLoader("csv", { csvDir, fetch }) : undefined;
  const local = (path: string | undefined) =>
    path === undefined ? undefined : resolvePath(path, ctx.pipeline.baseDir);
  const parquetDir = local(ctx.params.parquet_dir), tarFile = local(ctx.params.tar_file);
  const parquet = mmluLoader("parquet", { fetch, parquetDir });
  const tar = mmluLoader("tar", { fetch, tarFile });
  const load: MmluLoader = (subject, split) => {
    if (source === "csv" || (source === "auto" && csv && csvFolderHas(csvDir!, subject, split))) {
      used.add(`csv ${join(csvDir!, originalCsvPath(subject, split))}`);
      return csv!(subject, split);
    }
    if (source === "tar") {
      used.add(`tar ${tarFile ?? "data.tar"}`);
      return tar(subject, split);
    }
    used.add(
      parquetDir
        ? `parquet ${parquetDirFile(parquetDir, subject, split)}`
        : `parquet cais/mmlu@${CAIS_MMLU_REVISION.slice(0, 8)} all/${split} ${subject}`,
    );
    return parquet(subject, split);
  };
  return { load, used };
}

const round = (value: number, digits = 4) =>
  Number.isFinite(value) ? Math.round(value * 10 ** digits) / 10 ** digits : "N/A";

/**
 * The `evaluate` stage: MMLU accuracy of a model folder as lm-evaluation-harness computes it, with
 * per-question samples.
 */
export const evaluateStage: StageDefinition = defineStage({
  type: "evaluate",
  version: "1",
  neutralParams: QUANTIZE_NEUTRAL,
  description: "MMLU as the LM Evaluation Harness computes it; write results.json + samples.jsonl",
  params: EvaluateParams,
  outputs: ["mmlu"],
  localFiles: (p, pipeline) => {
    // Files the user names are part of the inputs: a changed file means a new evaluation.
    // (Downloads are pinned by their sha256 and need no hashing.)
    const { subjects } = expandMmluTasks(p.tasks);
    const splits = p.num_fewshot > 0 ? (["test", "dev"] as const) : (["test"] as const);
    const each = (file: (subject: string, split: "test" | "dev") => string) => [
      ...new Set(subjects.flatMap((s) => splits.map((split) => file(s, split)))),
    ];
    const files: string[] = [];
    if (p.csv_dir && p.source !== "parquet" && p.source !== "tar") {
      const dir = resolvePath(p.csv_dir, pipeline.baseDir);
      files.push(...each((s, split) => join(dir, originalCsvPath(s, split))));
    }
    if (p.parquet_dir && p.source === "parquet") {
      const dir = resolvePath(p.parquet_dir, pipeline.baseDir);
      files.push(...each((s, split) => parquetDirFile(dir, s, split)));
    }
    if (p.tar_file && p.source === "tar") files.push(resolvePath(p.tar_file, pipeline.baseDir));
    return files;
  },
  headline: ["task", "acc", "acc_stderr", "questions", "questions_per_second"],
  async run(ctx) {
    const p = ctx.params;
    const source = modelInput(ctx, ctx.params.from);
    await useEngine(ctx);
    const { load, used } = dataLoader(ctx);
    const quantize = quantizationOf(p);
    const { model, tokenizer, family } = await openModelFolder(source.dir, { quantize });
    ctx.log.info(
      `model from "${source.stage}" (${family}, ${model.config.n_layers} layers, emb ${model.config.emb_dim}, ` +
        (quantize !== "none" ? `${quantize} weights, ` : "") +
        `context ${model.config.context_length}); tasks ${
          p.tasks.join(", ")
        }, ${p.num_fewshot}-shot` +
        (p.limit ? `, limit ${p.limit}` : ""),
    );
    let evaluation;
    let started = false;
    try {
      evaluation = await evaluateMmlu(model, tokenizer, {
        tasks: p.tasks,
        numFewshot: p.num_fewshot,
        limit: p.limit,
        batchSize: p.batch_size,
        load,
        signal: ctx.signal,
        onProgress: (done, total) => {
          if (started) ctx.progress.update(done);
          else ctx.progress.start("questions", total, "questions"), started = true;
        },
      });
    } finally {
      if (started) ctx.progress.finish();
      model.dispose();
    }
    const results = harnessResults(evaluation, {
      model: `groundup (stage "${source.stage}")`,
      model_args: {
        ...model.config,
        stage: source.stage,
        type: source.type,
        ...(quantize !== "none" ? { quantize } : {}),
      },
      batch_size: p.batch_size,
      limit: p.limit ?? null,
      num_fewshot: p.num_fewshot,
      data_source: [...used].join("; "),
      tokenizer: tokenizer.name,
      backend: ctx.pipeline.backend,
    });
    await writeMmluResults(ctx.outDir, results, evaluation.samples);
    for (const task of p.tasks) {
      const r = evaluation.results[task];
      ctx.log.info(
        `${task}: acc ${round(r.acc)} ± ${round(r.acc_stderr)} (${r.samples} questions)`,
      );
    }
    const first = evaluation.results[p.tasks[0]];
    const metrics: Record<string, number | string> = {
      task: p.tasks[0],
      acc: round(first.acc),
      acc_stderr: round(first.acc_stderr),
      questions: evaluation.samples.length,
      questions_per_second: round(evaluation.samples.length / evaluation.seconds, 2),
    };
    for (const task of p.tasks) metrics[`acc:${task}`] = round(evaluation.results[task].acc);
    return { metrics };
  },
});
