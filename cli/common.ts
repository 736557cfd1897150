/**
 * What `deno task generate` and `deno task chat` share: turning `--model` into a model folder
 * (a GPT-2 size runs the load-openai-weights stage through the runner, so the download and the
 * conversion are cached exactly as a pipeline caches them), loading it, and the sampling flags.
 */
import { existsSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { SourceMap } from "../runner/pipeline.ts";
import type { ResolvedPipeline } from "../runner/pipeline.ts";
import { runPipeline } from "../runner/run.ts";
import {
  ArtifactCache,
  ArtifactDamagedError,
  MANIFEST_FILE,
  verifyArtifact,
} from "../runner/cache.ts";
import type { StageDefinition } from "../runner/stage.ts";
import { BACKEND_CHOICES, type BackendChoice, initEngine } from "../llm/engine/backend.ts";
import type { GPTModel } from "../llm/model/gpt.ts";
import { loadModelConfigFile } from "../llm/model/weights_io.ts";
import { countParameters } from "../llm/model/config.ts";
import { ensureMemory } from "../util/disk.ts";
import type { Tokenizer } from "../llm/tokenizer/mod.ts";
import { GPT2_SIZES, isGpt2Size } from "../llm/model/gpt2_sizes.ts";
import type { SamplingSettings } from "../llm/infer/complete.ts";
import { isModelFolder } from "../llm/infer/model_folder.ts";
import { type PromptFormat, promptFormatFor, stopIdsFor } from "../llm/infer/prompt_format.ts";
import type { PromptTemplate } from "../llm/data/instructions.ts";
import { checkHfModelFolder, loadHfModelStage, loadOpenaiWeightsStage } from "../stages/mod.ts";
import { isHfModelFolder } from "../llm/families/load.ts";
import { type OpenedModelFolder, openModelFolder } from "../llm/infer/open_model.ts";
import {
  CHAT_TEMPLATE_CHOICES,
  type ChatFormat,
  type ChatTemplateChoice,
  chooseChatFormat,
  isChatTemplateChoice,
} from "../llm/chat/mod.ts";
import { findHfModel } from "../datasets/hf_models.ts";
import { isRepoId } from "../datasets/hf_hub.ts";
import { applyAdapter } from "../llm/infer/adapter.ts";
import {
  bytesPerParameter,
  packModel,
  parseQuantization,
  type Quantization,
  QUANTIZATIONS,
} from "../llm/model/precision.ts";

/** A mistake in the command line: printed with the usage, exit status 2. */
export class UsageError extends Error {}

export const MODEL_USAGE =
  `  --model M            a model folder (model.safetensors + gpt_config.json, e.g. a stage's
                       artifact under .groundup/), a GPT-2 size: ${GPT2_SIZES.join(", ")}, or
                       an open model: a catalog id of \`deno task models\` (qwen3-0.6b) or a
                       Hub repository (Qwen/Qwen3-0.6B[@revision]); downloaded (and
                       converted) on first use, then cached
  --adapter DIR        a LoRA adapter on top of the model: PEFT's (adapter_config.json, for an
                       open model) or ours (adapter.json, for GPT-2), e.g. a lora-finetune artifact
  --source S           where a size comes from: openai (default) | hf
  --template T         auto (default: the template a model was instruction-tuned with, else an
                       open model's chat template) | chat | none | alpaca | phi3
  --quantize Q         how the weights are held: ${QUANTIZATIONS.join(" | ")} (default none:
                       fp32); bf16 (2 bytes a parameter) or int8 (GGUF's Q8_0, 34 bytes per
                       32 parameters) for matrices, norms and biases stay fp32
  --backend B          ${BACKEND_CHOICES.join(" | ")} (default auto)
  --cache-dir DIR      artifact cache (default .groundup, or GROUNDUP_CACHE_DIR)
  --mirror DIR         local folder consulted before any download (or GROUNDUP_MIRROR)`;

export const SAMPLING_USAGE = `  --max-new-tokens N   tokens to generate at most
  --temperature T      0 = greedy; higher = more random
  --top-k K            sample only among the K most likely tokens
  --top-p P            sample only among the most likely tokens whose probability sums to P
  --seed N             sampling seed (default 123)
  --stop-token ID      stop at this token id only (default: the model's end ids: end of text,
                       50256 for GPT-2, and a chat template's end of turn), or "none"`;

/** parseArgs options for the flags above. */
export const COMMON_OPTIONS = {
  model: { type: "string" },
  adapter: { type: "string" },
  source: { type: "string", default: "openai" },
  template: { type: "string", default: "auto" },
  quantize: { type: "string", default: "none" },
  backend: { type: "string", default: "auto" },
  "cache-dir": { type: "string" },
  mirror: { type: "string" },
  "max-new-tokens": { type: "string" },
  temperature: { type: "string" },
  "top-k": { type: "string" },
  "top-p": { type: "string" },
  seed: { type: "string", default: "123" },
  "stop-token": { type: "string" },
  help: { type: "boolean", short: "h", default: false },
} as const;

export type FlagValues = Partial<Record<keyof typeof COMMON_OPTIONS, string | boolean>>;

function numberFlag(
  values: FlagValues,
  name: keyof typeof COMMON_OPTIONS,
  check: { integer?: boolean; min?: number; max?: number; above?: number } = {},
): number | undefined {
  const raw = values[name];
  if (raw === undefined) return undefined;
  const value = Number(raw);
  const ok = typeof raw === "string" && raw.trim() !== "" && Number.isFinite(value) &&
    (!check.integer || Number.isInteger(value)) &&
    (check.min === undefined || value >= check.min) &&
    (check.max === undefined || value <= check.max) &&
    (check.above === undefined || value > check.above);
  if (!ok) {
    const wanted = [
      check.integer ? "an integer" : "a number",
      check.min !== undefined ? `≥ ${check.min}` : "",
      check.above !== undefined ? `> ${check.above}` : "",
      check.max !== undefined ? `≤ ${check.max}` : "",
    ].filter(Boolean).join(" ");
    throw new UsageError(`--${name} ${JSON.stringify(raw)}: expected ${wanted}`);
  }
  return value;
}

/** Sampling settings as the flags give them; `stop_token` undefined: the tokenizer's end of text. */
export type SamplingFlags = Omit<SamplingSettings, "stop_token"> & {
  stop_token: number | null | undefined;
};

/**
 * Reads and checks the sampling flags (before any model is loaded, so a typo fails at once);
 * `defaults` are the command's own defaults.
 */
export function samplingFromFlags(
  values: FlagValues,
  defaults: { max_new_tokens: number; temperature: number; top_k?: number },
): SamplingFlags {
  const topK = numberFlag(values, "top-k", { integer: true, min: 1 }) ?? defaults.top_k;
  const topP = numberFlag(values, "top-p", { above: 0, max: 1 });
  return {
    max_new_tokens: numberFlag(values, "max-new-tokens", { integer: true, min: 1 }) ??
      defaults.max_new_tokens,
    temperature: numberFlag(values, "temperature", { min: 0 }) ?? defaults.temperature,
    ...(topK !== undefined ? { top_k: topK } : {}),
    ...(topP !== undefined ? { top_p: topP } : {}),
    stop_token: values["stop-token"] === "none"
      ? null
      : numberFlag(values, "stop-token", { integer: true, min: 0 }),
    seed: numberFlag(values, "seed", { integer: true, min: 0 })!,
  };
}

/** Fills in the default stop token (the tokenizer's end of text); an id must exist. */
export function withStopToken(flags: SamplingFlags, tokenizer: Tokenizer): SamplingSettings {
  if (typeof flags.stop_token === "number" && flags.stop_token >= tokenizer.vocabSize) {
    throw new UsageError(
      `--stop-token ${flags.stop_token}: not a token of this model's vocabulary (ids 0 to ${
        tokenizer.vocabSize - 1
      })`,
    );
  }
  return {
    ...flags,
    stop_token: flags.stop_token === undefined ? tokenizer.endOfTextId ?? null : flags.stop_token,
  };
}

/** Checks the flags that need no model, before anything slow happens. */
export function checkCommonFlags(values: FlagValues): void {
  if (!values.model) throw new UsageError("--model is required");
  if (!["openai", "hf"].includes(String(values.source))) {
    throw new UsageError(`--source ${values.source}: expected openai or hf`);
  }
  if (!isChatTemplateChoice(values.template)) {
    throw new UsageError(
      `--template ${values.template}: expected ${CHAT_TEMPLATE_CHOICES.join(", ")}`,
    );
  }
  if (!(BACKEND_CHOICES as readonly string[]).includes(String(values.backend))) {
    throw new UsageError(`--backend ${values.backend}: expected ${BACKEND_CHOICES.join(", ")}`);
  }
  quantizeFlag(values);
}

/** `--quantize`, checked (a UsageError naming the flag and the choices). */
export function quantizeFlag(values: { quantize?: string | boolean }): Quantization {
  try {
    return parseQuantization(values.quantize ?? "none", "--quantize");
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}

/**
 * Runs one stage through the runner, as a one-stage pipeline named `name`, and returns its
 * artifact's folder: the command line shares the pipelines' cache (same parameters, same key).
 */
async function runOneStage(
  stage: StageDefinition<unknown>,
  params: unknown,
  name: string,
  values: FlagValues,
): Promise<{ dir: string; cached: boolean }> {
  const pipeline: ResolvedPipeline = {
    file: "(command line)",
    settings: {
      name,
      baseDir: Deno.cwd(),
      seed: 123,
      backend: String(values.backend),
      mirror: (values.mirror as string | undefined) ?? Deno.env.get("GROUNDUP_MIRROR"),
    },
    stages: [{ name: stage.type, type: stage.type, definition: stage, needs: [], params }],
    sources: new SourceMap(),
  };
  const report = await runPipeline(pipeline, { cacheDir: cacheDirOf(values) });
  if (!report.ok) throw report.error;
  return { dir: report.artifacts[stage.type].dir, cached: report.steps[0].outcome === "cached" };
}

/**
 * An open model `--model` names: a catalog id (`qwen3-0.6b`, see `deno task models`) or a Hub
 * repository (`Qwen/Qwen3-0.6B`, optionally `@<revision>`). Undefined when `spec` is neither.
 */
function hfModelSpec(spec: string): { repo: string; revision?: string } | undefined {
  const [name, revision, extra] = spec.split("@");
  if (extra !== undefined || revision === "") return undefined;
  const entry = findHfModel(name);
  if (entry) return { repo: entry.repo, revision };
  return isRepoId(name) ? { repo: name, revision } : undefined;
}

/**
 * The folder of the model `--model` names. A GPT-2 size runs the `load-openai-weights` stage,
 * an open model (catalog id or Hub repository) the `load-hf-model` stage, with the same
 * parameters a pipeline would give them, so a pipeline and this command share one cached
 * artifact. A folder is used as it is: ours (model.safetensors + gpt_config.json) or a Hugging
 * Face model folder (config.json with model_type).
 */
export async function resolveModelFolder(values: FlagValues): Promise<string> {
  const spec = String(values.model);
  if (isGpt2Size(spec)) {
    const stage = loadOpenaiWeightsStage as StageDefinition<unknown>;
    const params = loadOpenaiWeightsStage.params.parse({ source: values.source, size: spec });
    const { dir, cached } = await runOneStage(stage, params, `gpt2-${spec}`, values);
    if (cached) console.error(`GPT-2 ${spec}: cached at ${dir}`);
    return dir;
  }
  if (isModelFolder(spec)) return spec;
  if (existsSync(join(spec, "config.json"))) {
    await checkHfModelFolder(spec); // names what is wrong with a folder that is not one
    return spec;
  }
  const hf = existsSync(spec) ? undefined : hfModelSpec(spec);
  if (hf) {
    const stage = loadHfModelStage as StageDefinition<unknown>;
    const params = loadHfModelStage.params.parse({ repo: hf.repo, revision: hf.revision });
    const { dir, cached } = await runOneStage(stage, params, hf.repo, values);
    if (cached) console.error(`${hf.repo}: cached at ${dir}`);
    return dir;
  }
  throw new Error(
    `--model ${spec}: not a model folder (model.safetensors + gpt_config.json, or a Hugging ` +
      `Face folder), a GPT-2 size (${GPT2_SIZES.join(", ")}), an open model of \`deno task ` +
      `models\` (e.g. qwen3-0.6b) nor a Hub repository (<org>/<name>)`,
  );
}

/** A model `--model` named, opened with what it takes to prompt it. */
export interface OpenedModel extends OpenedModelFolder {
  /**
   * An instruction template applies (by `--template`, or because the model was
   * instruction-tuned): `template` says which.
   */
  alpaca: boolean;
  /** The prompt template (the fine-tuned model's own, or `--template`'s); none for a base model. */
  template?: PromptTemplate;
  /**
   * How a conversation becomes the prompt and which ids end a reply: the model's own chat format
   * (its Jinja chat template, its instruction template, or none), or `--template`'s.
   */
  chat: ChatFormat;
  /** `gpt2`, or the open model's family (llama, qwen3, ...). */
  family: string;
  /** Ids the model may emit: the tokenizer's, when the embedding has padding rows beyond them. */
  vocabLimit: number;
  /**
   * How prompts are formatted (`--template`; auto: a fine-tune's template, else an open model's
   * chat template, else its family's prompt style, else none).
   */
  format: PromptFormat;
  /** The ids that end an answer in `format` (end of text; a chat's end of turn). */
  stopIds: Set<number>;
  /** How the weights are held (`--quantize`). */
  quantize: Quantization;
}

/**
 * Probing WebGPU (backend auto or webgpu) makes the native Wayland client print `error:
 * XDG_RUNTIME_DIR is invalid or not set` when that variable is missing, though nothing is
 * wrong. Point it at a private empty folder first: the probe then finds no display quietly.
 */
export function ensureRuntimeDir(): void {
  const current = Deno.env.get("XDG_RUNTIME_DIR");
  try {
    if (current && Deno.statSync(current).isDirectory) return;
  } catch { /* missing: replace it */ }
  Deno.env.set("XDG_RUNTIME_DIR", Deno.makeTempDirSync({ prefix: "groundup-runtime-" }));
}

/** The artifact cache the command uses: --cache-dir, GROUNDUP_CACHE_DIR or `.groundup`. */
function cacheDirOf(values: FlagValues): string {
  return (values["cache-dir"] as string | undefined) ?? Deno.env.get("GROUNDUP_CACHE_DIR") ??
    ".groundup";
}

/** Whether `dir` is an artifact folder of the cache at `cacheDir` (`<cache>/<stage>/<key16>`). */
async function inCache(dir: string, cacheDir: string): Promise<boolean> {
  try {
    const [folder, root] = await Promise.all([Deno.realPath(dir), Deno.realPath(cacheDir)]);
    return dirname(dirname(folder)) === root && /^[0-9a-f]{16}$/.test(basename(folder));
  } catch {
    return false;
  }
}

/**
 * A model folder that is a cached artifact (its manifest lists its files) is checked against
 * the sizes and hashes the manifest recorded, and a damaged one is an error naming the file.
 * Inside the cache it is also set aside, so the next pipeline run computes it again; anywhere
 * else (a copy of an artifact, the user's own folder) nothing is touched.
 */
async function checkArtifact(dir: string, cacheDir: string): Promise<void> {
  let manifest: { outputs?: unknown };
  try {
    manifest = JSON.parse(await Deno.readTextFile(join(dir, MANIFEST_FILE)));
  } catch {
    return; // not an artifact of the cache: nothing recorded to check against
  }
  // Written before file hashes existed: nothing to check against (never set aside for that).
  if (!manifest.outputs) return;
  try {
    await verifyArtifact(dir);
  } catch (error) {
    if (!(error instanceof ArtifactDamagedError)) throw error;
    if (!(await inCache(dir, cacheDir))) {
      throw new Error(
        `${error.problem}; ${dir} is not in the artifact cache (${cacheDir}), so it is left ` +
          `as it is: copy the model again from where it came from`,
      );
    }
    const aside = await new ArtifactCache(dirname(dirname(dir))).discard(dir).catch(() =>
      undefined
    );
    throw new Error(
      `${error.problem}${
        aside ? `; moved the artifact to ${aside}: run its pipeline again to compute it anew` : ""
      }`,
    );
  }
}

/** Starts the engine and loads the model `--model` names. */
export async function openModel(values: FlagValues): Promise<OpenedModel> {
  const dir = await resolveModelFolder(values);
  await checkArtifact(dir, cacheDirOf(values));
  // Say the size, rather than fail in an allocation with no number (a Hugging Face folder's
  // loader checks its own, from config.json).
  // With --quantize the loader packs the weights as it reads them; with --adapter it reads
  // them in fp32 first (the adapter is merged, then the sum rounded).
  const quantize = quantizeFlag(values);
  if (!isHfModelFolder(dir)) {
    const config = await loadModelConfigFile(dir);
    const parameters = countParameters(config);
    const held: Quantization = values.adapter ? "none" : quantize;
    const bytes = bytesPerParameter(held);
    ensureMemory(
      Math.round(bytes * parameters),
      `the model in ${dir} (${parameters.toLocaleString("en")} parameters × ${bytes} bytes)`,
    );
  }
  if (values.backend === "auto" || values.backend === "webgpu") ensureRuntimeDir();
  await initEngine({ backend: values.backend as BackendChoice });
  // Ours or Hugging Face's: the model, its tokenizer and its own chat format. An adapter is
  // merged into the fp32 weights first and the sum packed after (as a LoRA is merged and then
  // quantized for llama.cpp): what runs is one quantized model, not a rounded base plus fp32
  // deltas that the packed weights could not hold.
  const opened = await openModelFolder(dir, { quantize: values.adapter ? "none" : quantize });
  try {
    if (values.adapter) {
      await applyAdapter(opened, String(values.adapter));
      packModel(opened.model, quantize);
    }
    const chat = chooseChatFormat(
      values.template as ChatTemplateChoice,
      opened.chat,
      opened.tokenizer,
    );
    const format = await promptFormatFor(opened, String(values.template));
    const template = format.kind === "template" ? format.template : undefined;
    return {
      ...opened,
      chat,
      alpaca: template !== undefined,
      template,
      format,
      stopIds: stopIdsFor(opened, format),
      quantize,
    };
  } catch (error) {
    opened.model.dispose();
    throw error;
  }
}

const encoder = new TextEncoder();
/** Writes text to stdout at once (streamed output must not wait for a buffer to fill). */
export function writeOut(text: string): void {
  Deno.stdout.writeSync(encoder.encode(text));
}

/** Warn (on stderr) when a prompt is longer than the context the model can see. */
export function warnIfPromptTooLong(model: GPTModel, tokenizer: Tokenizer, prompt: string): void {
  const tokens = tokenizer.encode(prompt).length;
  const context = model.config.context_length;
  if (tokens > context) {
    console.error(
      `warning: the prompt has ${tokens} tokens but the model sees at most ${context}: ` +
        `its first ${tokens - context} tokens are dropped`,
    );
  }
}

/** Runs a command's main: usage errors exit 2 with the usage, other errors exit 1. */
export async function runCommand(usage: string, main: () => Promise<void>): Promise<number> {
  try {
    await main();
    return 0;
  } catch (error) {
    if (error instanceof UsageError) {
      console.error(`error: ${error.message}\n\n${usage}`);
      return 2;
    }
    console.error(`error: ${error instanceof Error ? error.message : error}`);
    return 1;
  }
}
