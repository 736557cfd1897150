/**
 * Stage `generate`: continue prompts with a model an upstream stage produced
 * (`load-openai-weights`, `pretrain`, `lora-finetune`, `load-hf-model`: our model folders and
 * open models in the Hub's layout alike, opened by `openModelFolder`) and stream the text to the
 * console as it comes.
 *
 * Prompts: a list, a file (text: one prompt per line; JSON: a list of strings or of
 * {instruction, input} entries), or a split of the instruction dataset (the book's in-order
 * 85/10/5 split). Instruction entries, and plain prompts when a template applies, are put in the
 * prompt template (the model's own from its template.json, Alpaca, Phi-3 or a custom one) and the
 * answer is cut as the template says (e.g. after "### Response:"); with `template: chat` (the
 * default for an open model that ships a chat template) the prompt is the user message of the
 * model's own chat template and the answer is its turn. Generation stops at any of the model's
 * end ids (a chat's end of turn too) and never picks an id the tokenizer does not have.
 *
 * Artifact: generations.json, `[{prompt, response, settings, ...}]`.
 */
import { z } from "zod";
import { DATASETS } from "../datasets/catalog.ts";
import { defineStage, type StageContext, type StageDefinition } from "../runner/stage.ts";
import {
  entryName,
  type InstructionEntry,
  promptTemplate,
  readInstructionData,
  splitInstructionData,
} from "../llm/data/instructions.ts";
import { parseJson, resolvePath } from "../util/files.ts";
import { writeGenerations } from "../llm/artifacts/generations.ts";
import { complete, type Completion, type SamplingSettings } from "../llm/infer/complete.ts";
import { openModelFolder } from "../llm/infer/open_model.ts";
import type { Quantization } from "../llm/model/precision.ts";
import {
  formatPrompt,
  type PromptFormat,
  promptFormatFor,
  stopIdsFor,
} from "../llm/infer/prompt_format.ts";
import { fetchForStage, modelInput } from "./common.ts";
import { useEngine } from "./engine.ts";
import { quantizationOf, QUANTIZE_NEUTRAL, quantizeParam } from "./quantize.ts";

// ---------------------------------------------------------------------------------------------
// parameters

export const GenerateParams = z.strictObject({
  prompts: z.array(z.string().min(1)).min(1).optional().describe(
    "Prompts given inline (give exactly one of `prompts`, `file`, `dataset`).",
  ),
  file: z.string().min(1).optional().describe(
    "A text file (one prompt per line) or a JSON file (strings or `{instruction, input}`).",
  ),
  dataset: z.enum(["instruction-data"]).optional().describe(
    "A named instruction dataset; its entries are formatted with the prompt template " +
      "(`template`; Alpaca when none applies).",
  ),
  split: z.enum(["train", "test", "val"]).default("test").describe(
    "Which part of `dataset` (the book's 85/10/5 split).",
  ),
  limit: z.number().int().min(1).optional().describe("Use only the first `limit` prompts."),
  template: z.string().min(1).default("auto").superRefine((value, issue) => {
    if (value === "auto" || value === "none" || value === "chat") return;
    try {
      promptTemplate(value);
    } catch (error) {
      issue.addIssue({ code: "custom", message: (error as Error).message });
    }
  }).describe(
    "`auto`: the template the model was instruction-finetuned with (its template.json; Alpaca " +
      "for older fine-tunes), else an open model's chat template, else its family's prompt " +
      "style (Phi-2: `Instruct: …\\nOutput:`), else none; `chat`: the model's chat template " +
      "(the prompt is the user message); `none`; `alpaca`; `phi3`; or a custom template string " +
      "with `{instruction}`, `[[...{input}...]]` and a final `{output}`. Instruction entries " +
      "always get a template (Alpaca when none applies).",
  ),
  enable_thinking: z.boolean().optional().describe(
    "Qwen3's `enable_thinking` for chat templates that read it: true lets the model think in a " +
      "`<think>` block first (removed from the response); default false, an answer at once.",
  ),
  max_new_tokens: z.number().int().min(1).default(50).describe("Tokens to generate per prompt."),
  temperature: z.number().min(0).default(0).describe("Sampling temperature; 0: greedy decoding."),
  top_k: z.number().int().min(1).optional().describe(
    "Sample only from the k most likely tokens (off by default).",
  ),
  top_p: z.number().gt(0).max(1).optional().describe(
    "Nucleus sampling: only from the most likely tokens whose probabilities sum to p (off by " +
      "default).",
  ),
  stop_token: z.number().int().min(0).nullable().optional().describe(
    "Stop at this token only (default: the model's end ids: the tokenizer's end of text, 50256 " +
      "for GPT-2, and a chat template's end of turn); `null`: never.",
  ),
  seed: z.number().int().min(0).default(123).describe("Sampling seed."),
  from: z.string().optional().describe(
    "Which upstream stage's model to use when `needs` lists several.",
  ),
  stream: z.boolean().default(true).describe(
    "Show the text on the console as it is generated.",
  ),
  quantize: quantizeParam,
}).superRefine((p, issues) => {
  const given = (["prompts", "file", "dataset"] as const).filter((k) => p[k] !== undefined);
  if (given.length !== 1) {
    issues.addIssue({
      code: "custom",
      path: given.length > 1 ? [given[1]] : [],
      message: given.length === 0
        ? "give the prompts: `prompts:` (a list), `file:` or `dataset: instruction-data`"
        : `give only one of prompts, file, dataset (got ${given.join(" and ")})`,
    });
  }
});
export type GenerateParams = z.infer<typeof GenerateParams>;

// ---------------------------------------------------------------------------------------------
// prompts

/** One prompt: plain text, or an instruction entry (always formatted with a template). */
interface PromptItem {
  text?: string;
  entry?: { instruction: string; input?: string; output?: string };
}

async function readPromptFile(path: string): Promise<PromptItem[]> {
  const text = await Deno.readTextFile(path);
  if (!path.endsWith(".json")) {
    const lines = text.split(/\r?\n/).filter((line) => line.trim().length > 0);
    if (lines.length === 0) throw new Error(`${path}: no prompts (one per non-empty line)`);
    return lines.map((line) => ({ text: line }));
  }
  const value = parseJson(text, path);
  if (!Array.isArray(value) || value.length === 0) {
    throw new Error(`${path}: expected a non-empty JSON list of prompts`);
  }
  return value.map((item, i) => {
    if (typeof item === "string" && item.length > 0) return { text: item };
    const record = item as Record<string, unknown>;
    if (typeof record === "object" && record !== null && typeof record.instruction === "string") {
      const optional = (key: string) => {
        if (record[key] !== undefined && typeof record[key] !== "string") {
          throw new Error(`${path}: ${entryName(i)}: "${key}" must be a string`);
        }
        return record[key] as string | undefined;
      };
      return {
        entry: {
          instruction: record.instruction,
          input: optional("input"),
          output: optional("output"),
        },
      };
    }
    throw new Error(
      `${path}: ${entryName(i)} is neither a non-empty string nor {instruction, input}`,
    );
  });
}

async function collectPrompts(ctx: StageContext<GenerateParams>): Promise<PromptItem[]> {
  const p = ctx.params;
  let items: PromptItem[];
  if (p.prompts) items = p.prompts.map((text) => ({ text }));
  else if (p.file) items = await readPromptFile(resolvePath(p.file, ctx.pipeline.baseDir));
  else {
    const path = await fetchForStage(ctx, DATASETS[p.dataset!]);
    const parts = splitInstructionData(await readInstructionData(path));
    items = parts[p.split].map((entry: InstructionEntry) => ({ entry }));
    ctx.log.info(`${p.dataset} ${p.split} split: ${items.length} entries`);
  }
  return p.limit ? items.slice(0, p.limit) : items;
}

/**
 * Where generated text goes while it is produced: straight to a terminal, token by token;
 * elsewhere (logs, CI) through the stage's logger, a line at a time.
 */
function consoleSink(ctx: StageContext<GenerateParams>) {
  if (!ctx.params.stream) return { write(_text: string) {}, end() {} };
  if (Deno.stderr.isTerminal()) {
    const encoder = new TextEncoder();
    return {
      write: (text: string) => Deno.stderr.writeSync(encoder.encode(text)),
      end: () => Deno.stderr.writeSync(encoder.encode("\n")),
    };
  }
  let line = "";
  return {
    write(text: string) {
      const lines = (line + text).split("\n");
      line = lines.pop()!;
      for (const done of lines) ctx.log.info(`| ${done}`);
    },
    end() {
      if (line) ctx.log.info(`| ${line}`);
      line = "";
    },
  };
}

// ---------------------------------------------------------------------------------------------
// the stage

export interface Generation {
  prompt: string;
  response: string;
  /**
   * `template`: the template's name (alpaca, phi3, custom, phi-2), "chat" for the model's chat
   * template, or "none" for plain text; `stop_ids`: every id that ended the text, when there are
   * more than `stop_token` (an open model's end ids, a chat's end of turn); `quantize`: how
   * the weights were held, when not fp32.
   */
  settings: SamplingSettings & { template: string; stop_ids?: number[]; quantize?: Quantization };
  tokens: number;
  stopped: Completion["stopped"];
  /** For instruction entries: the entry itself, so an evaluation can compare with `output`. */
  instruction?: string;
  input?: string;
  output?: string;
}

/**
 * The `generate` stage: completes prompts with a trained or loaded model (greedy or sampled) and
 * writes the texts.
 */
export const generateStage: StageDefinition = defineStage({
  type: "generate",
  // 2: `template: auto` follows the model's template.json (phi3, custom), not only Alpaca.
  version: "2",
  neutralParams: QUANTIZE_NEUTRAL,
  description: "Continue prompts with an upstream model; stream them; write generations.json",
  params: GenerateParams,
  outputs: ["generations"],
  inherits: ["seed"],
  localFiles: (p, pipeline) => (p.file ? [resolvePath(p.file, pipeline.baseDir)] : []),
  headline: ["prompts", "tokens", "tokens_per_second"],
  async run(ctx) {
    const p = ctx.params;
    const source = modelInput(ctx, ctx.params.from);
    const items = await collectPrompts(ctx);
    await useEngine(ctx);
    const quantize = quantizationOf(p);
    const opened = await openModelFolder(source.dir, { quantize });
    const { model, tokenizer } = opened;
    const sink = consoleSink(ctx);
    const generations: Generation[] = [];
    let tokens = 0, seconds = 0;
    try {
      const format = await promptFormatFor(opened, p.template);
      // Instruction entries need a template even where plain prompts get none.
      const entryFormat: PromptFormat = format.kind === "none"
        ? { kind: "template", name: "alpaca", template: promptTemplate("alpaca") }
        : format;
      const settings: Generation["settings"] = {
        max_new_tokens: p.max_new_tokens,
        temperature: p.temperature,
        ...(p.top_k !== undefined ? { top_k: p.top_k } : {}),
        ...(p.top_p !== undefined ? { top_p: p.top_p } : {}),
        stop_token: p.stop_token === undefined ? tokenizer.endOfTextId ?? null : p.stop_token,
        seed: p.seed,
        template: format.name,
        ...(quantize !== "none" ? { quantize } : {}),
      };
      ctx.log.info(
        `model from "${source.stage}" (${opened.family}, ${model.config.n_layers} layers, emb ${model.config.emb_dim}` +
          `${quantize !== "none" ? `, ${quantize} weights` : ""}), ` +
          `${items.length} prompt(s), template ${settings.template}`,
      );
      for (const [i, item] of items.entries()) {
        ctx.signal.throwIfAborted();
        const used = item.entry !== undefined ? entryFormat : format;
        const prompt = formatPrompt(opened, used, item.entry ?? { instruction: item.text! }, {
          enableThinking: p.enable_thinking,
        });
        // An explicit stop_token is the only one; by default every end id of the model (and of
        // its chat template) ends the text.
        const stopIds = p.stop_token === undefined ? stopIdsFor(opened, used) : new Set<number>();
        if (p.stream) {
          ctx.log.info(`prompt ${i + 1}/${items.length}: ${JSON.stringify(prompt.text)}`);
        }
        const done = await complete(model, {
          tokenizer,
          prompt: prompt.text,
          promptIds: prompt.ids,
          settings,
          stopIds,
          vocabLimit: opened.vocabLimit,
          onText: sink.write,
        });
        sink.end();
        tokens += done.tokens, seconds += done.seconds;
        const extraStops = [...stopIds].filter((id) => id !== settings.stop_token);
        generations.push({
          prompt: prompt.text,
          response: used.kind === "none" ? done.text : prompt.answer(done.text),
          settings: {
            ...settings,
            template: used.name,
            ...(extraStops.length > 0 ? { stop_ids: [...stopIds] } : {}),
          },
          tokens: done.tokens,
          stopped: done.stopped,
          ...(item.entry ?? {}),
        });
      }
    } finally {
      model.dispose();
    }
    await writeGenerations(ctx.outDir, generations);
    const rate = seconds > 0 ? tokens / seconds : 0;
    return {
      metrics: {
        prompts: generations.length,
        tokens,
        tokens_per_second: Math.round(rate * 100) / 100,
      },
    };
  },
});
