/**
 * Stage `responses` (book ch07, "Extracting and saving responses"): answer a split of an
 * `instructions` artifact with one or more models, greedily by default, and save the book's
 * `responses.json`: the split's entries, each with one field per model (e.g. `response_before`
 * from the base model and `response_after` from the fine-tuned one), which `judge` scores.
 *
 * Each model formats prompts with its own template (the template.json a fine-tune stores),
 * else, for an open model that ships one, in its chat template (the instruction, and its input
 * after a blank line, as the user message; the answer is the model's turn), else with the
 * instructions artifact's; `template:` sets one for every model. Generation stops at any of a
 * model's end ids (a chat's end of turn too). Answers are appended to `responses.jsonl` in the
 * progress folder as they finish, so an interrupted run continues with the entries not yet
 * answered.
 *
 * Artifact: responses.json, stats.json (per field: new tokens, how many stopped at
 * end-of-text, tokens per second).
 */
import { join } from "node:path";
import { z } from "zod";
import type { InstructionEntry, PromptTemplate } from "../llm/data/instructions.ts";
import { generateResponses } from "../llm/infer/responses.ts";
import { hasModel } from "../llm/artifacts/model.ts";
import { type OpenedModelFolder, openModelFolder } from "../llm/infer/open_model.ts";
import {
  answerOf,
  formatPrompt,
  type InstructionFields,
  type PromptFormat,
  promptFormatFor,
  stopIdsFor,
} from "../llm/infer/prompt_format.ts";
import { defineStage, type StageContext, type StageDefinition } from "../runner/stage.ts";
import { inputOfType, modelInput } from "./common.ts";
import { useEngine } from "./engine.ts";
import { openInstructionsArtifact } from "./instructions.ts";
import { writeResponses } from "../llm/artifacts/responses.ts";
import { quantizationOf, QUANTIZE_NEUTRAL, quantizeParam } from "./quantize.ts";

export const ResponsesParams = z.strictObject({
  split: z.enum(["test", "val", "train"]).default("test").describe(
    "Which split of the instructions artifact to answer (the book: test).",
  ),
  models: z.record(
    z.string().regex(/^[A-Za-z_][\w-]*$/, "a field name (letters, digits, _ and -)"),
    z.string().min(1),
  ).optional().describe(
    "Field name → the stage whose model answers into it, e.g. `{response_before: gpt2-medium, " +
      "response_after: lora-finetune}`. Default: `model_response` from the only model upstream.",
  ),
  max_new_tokens: z.number().int().min(1).default(256).describe(
    "New tokens per answer at most (the book: 256); end-of-text stops earlier.",
  ),
  batch_size: z.number().int().min(1).default(8).describe("Entries decoded together."),
  temperature: z.number().min(0).default(0).describe("0: greedy decoding (the book)."),
  top_k: z.number().int().min(1).optional().describe(
    "Sample only from the k most likely tokens (with a temperature).",
  ),
  seed: z.number().int().min(0).default(123).describe("Sampling seed (unused when greedy)."),
  limit: z.number().int().min(1).optional().describe("Answer only the first `limit` entries."),
  template: z.enum(["auto", "chat", "alpaca", "phi3"]).optional().describe(
    "How every model gets its prompts: `auto` (default) each model's own: a fine-tune's " +
      "template.json, else an open model's chat template, else the instructions' template; " +
      "`chat`: each model's chat template (the instruction as the user message); `alpaca`; " +
      "`phi3`.",
  ),
  enable_thinking: z.boolean().optional().describe(
    "Qwen3's `enable_thinking` for chat templates that read it: true lets the model think in a " +
      "`<think>` block first (removed from the answer); default false, an answer at once.",
  ),
  quantize: quantizeParam,
});
export type ResponsesParams = z.infer<typeof ResponsesParams>;

/** One line of responses.jsonl: a finished answer. */
interface ProgressLine {
  field: string;
  index: number;
  response: string;
  new_tokens: number;
  stopped: boolean;
}

const PROGRESS_FILE = "responses.jsonl";

/** The answers already in the progress file; a last line cut by a crash is dropped. */
async function readProgress(path: string, warn: (line: string) => void) {
  const done = new Map<string, Map<number, ProgressLine>>();
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return done;
    throw error;
  }
  const lines = text.split("\n").filter((line) => line.trim() !== "");
  lines.forEach((line, i) => {
    let record: ProgressLine;
    try {
      record = JSON.parse(line);
    } catch {
      warn(`${path}: line ${i + 1} is incomplete (an interrupted write); answering it again`);
      return;
    }
    if (!done.has(record.field)) done.set(record.field, new Map());
    done.get(record.field)!.set(record.index, record);
  });
  return done;
}

/** Field → upstream stage name. */
function modelsOf(ctx: StageContext<ResponsesParams>): [string, string][] {
  if (ctx.params.models) {
    const entries = Object.entries(ctx.params.models);
    if (entries.length === 0) throw new Error(`${ctx.name}: \`models\` is empty`);
    for (const [field, stage] of entries) {
      if (!ctx.inputs[stage]) {
        throw new Error(
          `${ctx.name}: models.${field}: "${stage}" is not among this stage's needs (${
            Object.keys(ctx.inputs).join(", ")
          })`,
        );
      }
      modelInput(ctx, stage); // checks that it holds a model
    }
    return entries;
  }
  const withModels = Object.values(ctx.inputs).filter((a) => hasModel(a.dir));
  if (withModels.length > 1) {
    throw new Error(
      `${ctx.name}: several models upstream (${withModels.map((a) => a.stage).join(", ")}): ` +
        "name a field for each with `models:`, e.g. {response_before: ..., response_after: ...}",
    );
  }
  return [["model_response", modelInput(ctx).stage]];
}

/**
 * How `opened` gets its prompts: `template:` when given, else its own (a fine-tune's
 * template.json, an open model's chat template), else the instructions artifact's.
 */
async function formatOf(
  opened: OpenedModelFolder,
  choice: ResponsesParams["template"],
  dataTemplate: PromptTemplate,
): Promise<PromptFormat> {
  if (choice !== undefined && choice !== "auto") return await promptFormatFor(opened, choice);
  const own = await promptFormatFor(opened, "auto");
  if (own.kind === "chat" || own.kind === "template") return own;
  return { kind: "template", name: dataTemplate.name, template: dataTemplate };
}

/** Stage `responses`: the book's responses.json, one answer field per model. */
export const responsesStage: StageDefinition = defineStage({
  type: "responses",
  version: "1",
  neutralParams: QUANTIZE_NEUTRAL,
  description: "Answer a split of the instruction data with one or more models (responses.json)",
  params: ResponsesParams,
  outputs: ["responses"],
  inherits: ["seed"],
  requires: ["instructions"],
  headline: ["entries", "fields", "tokens_per_second"],
  // Which models answer is known before anything runs: a wrong `models:` fails validation.
  checkUpstream: (p, upstream) => {
    const direct = upstream.filter((s) => s.direct);
    const needs = direct.map((s) => s.name).join(", ") || "none";
    const models = direct.filter((s) => s.producesModel).map((s) => s.name);
    if (!p.models) {
      if (models.length === 1) return [];
      return [{
        message: models.length === 0
          ? `no stage among this stage's needs (${needs}) produces a model: add one to \`needs\``
          : `several models among this stage's needs (${models.join(", ")}): name a field for ` +
            "each with `models:`, e.g. {response_before: ..., response_after: ...}",
      }];
    }
    if (Object.keys(p.models).length === 0) return [{ key: "models", message: "is empty" }];
    return Object.entries(p.models).flatMap(([field, stage]) => {
      const key = `models.${field}`;
      const found = direct.find((s) => s.name === stage);
      if (!found) {
        return [{ key, message: `"${stage}" is not among this stage's needs (${needs})` }];
      }
      if (!found.producesModel) {
        return [{
          key,
          message: `stage "${stage}" (${found.type}) produces no model; stages here that do: ${
            models.join(", ") || "none"
          }`,
        }];
      }
      return [];
    });
  },
  async run(ctx) {
    const p = ctx.params;
    const data = await openInstructionsArtifact(inputOfType(ctx, "instructions").dir);
    let entries: InstructionEntry[] = await data.entries(p.split);
    if (p.limit !== undefined) entries = entries.slice(0, p.limit);
    if (entries.length === 0) throw new Error(`${ctx.name}: the ${p.split} split has no entries`);
    const models = modelsOf(ctx);
    await useEngine(ctx);

    const progressPath = join(ctx.progressDir, PROGRESS_FILE);
    await Deno.mkdir(ctx.progressDir, { recursive: true });
    const done = await readProgress(progressPath, (line) => ctx.log.warn(line));
    const stats: Record<string, Record<string, number | string>> = {};
    let allTokens = 0, allSeconds = 0;
    for (const [field, stage] of models) {
      const dir = ctx.inputs[stage].dir;
      const answered = done.get(field) ?? new Map<number, ProgressLine>();
      done.set(field, answered);
      const skip = new Set([...answered.keys()].filter((i) => i < entries.length));
      if (skip.size > 0) {
        ctx.log.info(`${field}: ${skip.size} of ${entries.length} answers already done, resuming`);
      }
      const opened = await openModelFolder(dir, { quantize: quantizationOf(p) });
      const { model, tokenizer } = opened;
      const started = performance.now();
      let tokens = 0;
      let format: PromptFormat | undefined;
      try {
        format = await formatOf(opened, p.template, data.template);
        const used = format;
        ctx.log.info(
          `${field}: ${entries.length - skip.size} entries with the model of "${stage}" ` +
            `(${opened.family}${
              p.quantize && p.quantize !== "none" ? `, ${p.quantize} weights` : ""
            }), ` +
            `template ${used.name}`,
        );
        const prompt = (entry: InstructionFields) =>
          formatPrompt(opened, used, entry, { enableThinking: p.enable_thinking });
        ctx.progress.start(field, entries.length, "entries", skip.size);
        const results = generateResponses(model, tokenizer, entries, {
          maxNewTokens: p.max_new_tokens,
          batchSize: p.batch_size,
          temperature: p.temperature,
          topK: p.top_k,
          seed: p.seed,
          stopIds: stopIdsFor(opened, used),
          vocabLimit: opened.vocabLimit,
          formatPrompt: (entry) => prompt(entry).text,
          encodePrompt: (entry) => prompt(entry).ids,
          extract: answerOf(used),
          skip,
          signal: ctx.signal,
          onProgress: (progress) => {
            tokens = progress.tokens;
            ctx.progress.update(skip.size + progress.done, {
              "tok/s": Math.round(progress.tokensPerSecond),
            });
          },
        });
        for await (const result of results) {
          const line: ProgressLine = {
            field,
            index: result.index,
            response: result.response,
            new_tokens: result.newTokens,
            stopped: result.stopped,
          };
          await Deno.writeTextFile(progressPath, JSON.stringify(line) + "\n", { append: true });
          answered.set(result.index, line);
        }
        ctx.progress.finish();
      } finally {
        model.dispose();
      }
      const seconds = (performance.now() - started) / 1000;
      allTokens += tokens, allSeconds += seconds;
      const lines = entries.map((_, i) => answered.get(i)!);
      stats[field] = {
        stage,
        template: format.name,
        ...(p.quantize && p.quantize !== "none" ? { quantize: p.quantize } : {}),
        mean_new_tokens: lines.reduce((n, l) => n + l.new_tokens, 0) / lines.length,
        stopped: lines.filter((l) => l.stopped).length,
        tokens_per_second: seconds > 0 ? Math.round(tokens / seconds) : 0,
      };
    }
    const responses = entries.map((entry, i) => ({
      ...entry,
      ...Object.fromEntries(models.map(([field]) => [field, done.get(field)!.get(i)!.response])),
    }));
    await writeResponses(ctx.outDir, responses, {
      split: p.split,
      entries: entries.length,
      fields: stats,
    });
    return {
      metrics: {
        entries: entries.length,
        fields: models.map(([field]) => field).join(","),
        tokens_per_second: allSeconds > 0 ? Math.round(allTokens / allSeconds) : 0,
      },
    };
  },
});
