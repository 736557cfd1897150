/**
 * Stage `load-openai-weights` (workshop part 5): fetch OpenAI's pretrained GPT-2 and convert it
 * into our own model files, so later stages and `deno task generate` load it without knowing
 * where it came from.
 *
 * Sources:
 *   openai  OpenAI's TensorFlow checkpoint (the seven release files), read by our own
 *           TensorBundle reader: no TensorFlow needed;
 *   hf      Hugging Face's `model.safetensors` + `config.json` of the same weights;
 *   local   a folder in either layout (`path:`).
 * The size follows the pipeline's `model:` (emb_dim and n_layers), so
 * `--config configs/models/gpt2-large.yaml` switches the download; `size:` names it directly.
 *
 * Artifact: model.safetensors (the book's state_dict names, F32; the output head is tied to the
 * token embedding and stored under both names so the book's PyTorch GPTModel loads it as is),
 * config.json (context 1024, qkv_bias true), tokenizer.json (GPT-2 BPE), source.json.
 *
 * Conversion streams one checkpoint tensor at a time from the source file into the output file,
 * so memory holds about one tensor (the embedding: 147 MiB for 124M, 307 MiB for 1558M), never
 * a copy of the model.
 */
import { existsSync, readdirSync, statSync } from "node:fs";
import { basename, dirname, isAbsolute, join } from "node:path";
import { z } from "zod";
import {
  GPT2_CONTEXT_LENGTH,
  GPT2_SIZE_INFO,
  GPT2_SIZES,
  GPT2_VOCAB_SIZE,
  type Gpt2Size,
  gpt2SizeFor,
  hfGpt2Files,
  openaiGpt2Files,
} from "../datasets/gpt2.ts";
import { writeFileAtomic } from "../runner/cache.ts";
import { defineStage, type PipelineSettings, type StageContext } from "../runner/stage.ts";
import { countParameters, type GPTConfig } from "../llm/model/config.ts";
import { CONFIG_FILE, WEIGHTS_FILE } from "../llm/model/weights_io.ts";
import { OpenAiBpe } from "../llm/tokenizer/bpe.ts";
import { Gpt2Tokenizer } from "../llm/tokenizer/gpt2.ts";
import type { TokenizerSpec } from "../llm/tokenizer/mod.ts";
import {
  type CheckpointSource,
  checkpointSourceFromTensorBundle,
  convertGpt2Weights,
  type Gpt2WeightPlan,
  planGpt2Weights,
} from "../llm/weights/gpt2_mapping.ts";
import { openSafetensors, writeSafetensorsStream } from "../llm/weights/safetensors.ts";
import { openTensorBundle } from "../llm/weights/tensorbundle/reader.ts";
import { fetchForStage } from "./common.ts";

// ---------------------------------------------------------------------------------------------
// parameters

/** Only the model's width and depth matter here; its other keys (context, dropout) do not. */
const InheritedModel = z.object({
  emb_dim: z.number().int().positive().optional(),
  n_layers: z.number().int().positive().optional(),
});

const ParamsInput = z.strictObject({
  source: z.enum(["openai", "hf", "local"]).default("openai").describe(
    "`openai` (the TensorFlow checkpoint OpenAI published), `hf` (Hugging Face's " +
      "`model.safetensors`), `local` (+ `path`: a folder in either layout).",
  ),
  size: z.enum(GPT2_SIZES).optional().describe(
    "Which GPT-2; default: the size matching the pipeline's `model` (so `--config " +
      "configs/models/gpt2-large.yaml` switches the download), else 124M.",
  ),
  path: z.string().min(1).optional().describe(
    "For `source: local`: a folder with a TensorFlow checkpoint or a Hugging Face safetensors " +
      "file.",
  ),
  drop_rate: z.number().min(0).lt(1).default(0).describe(
    "Dropout written into config.json for later training; the weights do not carry one.",
  ),
  model: InheritedModel.optional().describe(
    "Inherited from the pipeline's `model:`; only `emb_dim` and `n_layers` are read, to pick " +
      "the size.",
  ),
});

/** The GPT-2 size the inherited model has, if it is one. */
function sizeOfModel(model: z.infer<typeof InheritedModel> | undefined): Gpt2Size | undefined {
  if (model?.emb_dim === undefined || model.n_layers === undefined) return undefined;
  return gpt2SizeFor({ emb_dim: model.emb_dim, n_layers: model.n_layers });
}

function describeDims(model: z.infer<typeof InheritedModel>): string {
  return `emb_dim ${model.emb_dim}, n_layers ${model.n_layers}`;
}

/**
 * Parameters after resolution: the size is decided here (from `size` or the model), so the
 * cache key depends only on what decides the output, and `--set`/`--config` mistakes are
 * reported with their location before anything runs.
 */
export const LoadOpenaiWeightsParams = ParamsInput.superRefine((p, issues) => {
  if (p.source === "local") {
    if (!p.path) {
      issues.addIssue({
        code: "custom",
        // Reported at `source` (the runner words a missing key's own issue generically).
        path: ["source"],
        message: "source: local needs `path:` (a folder with model.ckpt.* or model.safetensors)",
      });
    }
    return;
  }
  if (p.path) {
    issues.addIssue({
      code: "custom",
      path: ["path"],
      message: `\`path\` is only read with source: local (source is ${p.source})`,
    });
  }
  const fromModel = sizeOfModel(p.model);
  if (p.model?.emb_dim !== undefined && !fromModel && !p.size) {
    issues.addIssue({
      code: "custom",
      path: ["model"],
      message: `the model (${describeDims(p.model)}) is not a GPT-2 size; set \`size:\` (${
        GPT2_SIZES.join(", ")
      }) or use source: local`,
    });
  } else if (p.size && p.model?.emb_dim !== undefined && fromModel !== p.size) {
    issues.addIssue({
      code: "custom",
      path: ["size"],
      message:
        `size ${p.size} contradicts the pipeline's model (${describeDims(p.model)}${
          fromModel ? ` = GPT-2 ${fromModel}` : ""
        }); drop \`size\` to follow the model, or switch both with ` +
        `\`--config configs/models/${GPT2_SIZE_INFO[p.size].configName}.yaml\``,
    });
  }
}).transform((p) => {
  if (p.source === "local") return { source: p.source, path: p.path!, drop_rate: p.drop_rate };
  const fromModel = sizeOfModel(p.model);
  return { source: p.source, size: p.size ?? fromModel ?? "124M", drop_rate: p.drop_rate };
});
export type LoadOpenaiWeightsParams = z.infer<typeof LoadOpenaiWeightsParams>;

// ---------------------------------------------------------------------------------------------
// locating the checkpoint

type Layout = "openai" | "hf";

/** The files of one checkpoint on disk, whichever way they got there. */
interface CheckpointFiles {
  layout: Layout;
  /** openai: `<prefix>.index` + `<prefix>.data-*`; hf: the safetensors file. */
  weights: string;
  /** hparams.json (openai) or config.json (hf), when present. */
  hparams?: string;
  /** encoder.json, when present: checked against the tokenizer we use. */
  encoder?: string;
  /** Every file used, for source.json. */
  files: Record<string, string>;
}

function resolveLocal(path: string, pipeline: PipelineSettings): string {
  return isAbsolute(path) ? path : join(pipeline.baseDir, path);
}

/** `model_checkpoint_path` from TensorFlow's `checkpoint` text file, if it names one. */
function checkpointPrefixFromStateFile(path: string): string | undefined {
  const text = Deno.readTextFileSync(path);
  const match = /^model_checkpoint_path:\s*"([^"]+)"/m.exec(text);
  return match?.[1];
}

/** Finds the checkpoint inside a local folder (synchronous: the planner calls it too). */
function findLocalCheckpoint(folder: string): CheckpointFiles {
  let names: string[];
  try {
    if (!statSync(folder).isDirectory()) throw new Error("not a folder");
    names = readdirSync(folder);
  } catch (error) {
    throw new Error(`${folder}: cannot read the checkpoint folder: ${(error as Error).message}`);
  }
  const optional = (name: string) => names.includes(name) ? join(folder, name) : undefined;
  const indexFiles = names.filter((n) => n.endsWith(".index"));
  if (indexFiles.length > 0) {
    let prefix: string;
    const stateFile = optional("checkpoint");
    const named = stateFile ? checkpointPrefixFromStateFile(stateFile) : undefined;
    if (named) prefix = isAbsolute(named) ? named : join(folder, named);
    else if (indexFiles.length === 1) prefix = join(folder, indexFiles[0].slice(0, -6));
    else {
      throw new Error(
        `${folder}: ${indexFiles.length} checkpoints (${
          indexFiles.join(", ")
        }) and no \`checkpoint\` file naming one`,
      );
    }
    const shards = names.filter((n) => n.startsWith(`${basename(prefix)}.data-`));
    const files: Record<string, string> = { index: `${prefix}.index` };
    for (const shard of shards) files[shard] = join(folder, shard);
    const hparams = optional("hparams.json");
    const encoder = optional("encoder.json");
    if (hparams) files.hparams = hparams;
    if (encoder) files.encoder = encoder;
    return { layout: "openai", weights: `${prefix}.index`, hparams, encoder, files };
  }
  const safetensors = names.includes("model.safetensors")
    ? ["model.safetensors"]
    : names.filter((n) => n.endsWith(".safetensors"));
  if (safetensors.length === 1) {
    const weights = join(folder, safetensors[0]);
    const hparams = optional("config.json");
    const encoder = optional("encoder.json");
    const files: Record<string, string> = { weights };
    if (hparams) files.config = hparams;
    if (encoder) files.encoder = encoder;
    return { layout: "hf", weights, hparams, encoder, files };
  }
  throw new Error(
    `${folder}: no GPT-2 checkpoint found: expected a TensorFlow checkpoint (<prefix>.index + ` +
      `<prefix>.data-00000-of-00001, hparams.json) or one Hugging Face model.safetensors ` +
      `(+ config.json)${safetensors.length > 1 ? `; found ${safetensors.join(", ")}` : ""}`,
  );
}

/**
 * Local files that decide the output. For a TensorFlow checkpoint the index suffices: it holds
 * a CRC32C of every tensor, so it changes whenever the data does, and hashing it is instant
 * where hashing a multi-GB data file on every plan is not.
 */
function localFilesToHash(params: LoadOpenaiWeightsParams, pipeline: PipelineSettings): string[] {
  if (params.source !== "local") return [];
  const folder = resolveLocal(params.path!, pipeline);
  let found: CheckpointFiles;
  try {
    found = findLocalCheckpoint(folder);
  } catch {
    // The planner reports an unreadable path with its location; a readable folder without a
    // checkpoint is reported by `run` with what was expected.
    return existsSync(folder) ? [] : [folder];
  }
  return found.layout === "openai"
    ? [found.weights, ...(found.hparams ? [found.hparams] : [])]
    : Object.values(found.files);
}

async function fetchOpenai(
  ctx: StageContext<LoadOpenaiWeightsParams>,
  size: Gpt2Size,
): Promise<CheckpointFiles> {
  // All seven release files, as the book's download script fetches them, so a cached or
  // mirrored copy is the complete release; `checkpoint` and `model.ckpt.meta` are not read.
  const remote = openaiGpt2Files(size);
  const paths: Record<string, string> = {};
  for (const [name, file] of Object.entries(remote)) paths[name] = await fetchForStage(ctx, file);
  // The reader finds the data shard beside the index. A mirror may hold one of them and the
  // download cache the other, so bring them together under one prefix when they are apart.
  let index = paths["model.ckpt.index"];
  const data = paths["model.ckpt.data-00000-of-00001"];
  if (dirname(index) !== dirname(data)) {
    const together = join(ctx.progressDir, "checkpoint");
    await Deno.mkdir(together, { recursive: true });
    for (const path of [index, data]) {
      const link = join(together, basename(path));
      await Deno.remove(link).catch(() => {});
      await Deno.symlink(path, link);
    }
    index = join(together, "model.ckpt.index");
  }
  return {
    layout: "openai",
    weights: index,
    hparams: paths["hparams.json"],
    encoder: paths["encoder.json"],
    files: paths,
  };
}

async function fetchHf(
  ctx: StageContext<LoadOpenaiWeightsParams>,
  size: Gpt2Size,
): Promise<CheckpointFiles> {
  const remote = hfGpt2Files(size);
  const config = await fetchForStage(ctx, remote["config.json"]);
  const weights = await fetchForStage(ctx, remote["model.safetensors"]);
  return { layout: "hf", weights, hparams: config, files: { config, weights } };
}

async function readJsonObject(path: string): Promise<Record<string, unknown>> {
  let value: unknown;
  try {
    value = JSON.parse(await Deno.readTextFile(path));
  } catch (error) {
    throw new Error(`${path}: not valid JSON: ${(error as Error).message}`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new Error(`${path}: expected a JSON object`);
  }
  return value as Record<string, unknown>;
}

/** An opened checkpoint: shapes up front, tensors on demand. */
async function openCheckpoint(
  found: CheckpointFiles,
): Promise<CheckpointSource & { close(): void }> {
  if (found.layout === "openai") {
    const bundle = await openTensorBundle(found.weights);
    return { ...checkpointSourceFromTensorBundle(bundle), close() {} };
  }
  const reader = await openSafetensors(found.weights);
  return {
    shapes: new Map([...reader.header.tensors].map(([name, info]) => [name, info.shape])),
    read: async (name) => (await reader.read(name)).data,
    description: found.weights,
    close: () => reader.close(),
  };
}

// ---------------------------------------------------------------------------------------------
// checks

/** Stops a checkpoint of the wrong size before anything is converted. */
function checkIsSize(config: GPTConfig, size: Gpt2Size, where: string): void {
  const info = GPT2_SIZE_INFO[size];
  const expected: Partial<GPTConfig> = {
    vocab_size: GPT2_VOCAB_SIZE,
    context_length: GPT2_CONTEXT_LENGTH,
    emb_dim: info.emb_dim,
    n_layers: info.n_layers,
    n_heads: info.n_heads,
  };
  const wrong = Object.entries(expected)
    .filter(([key, want]) => config[key as keyof GPTConfig] !== want)
    .map(([key, want]) => `${key} ${config[key as keyof GPTConfig]} (expected ${want})`);
  if (wrong.length > 0) {
    throw new Error(`${where}: this checkpoint is not GPT-2 ${size}: ${wrong.join(", ")}`);
  }
}

/**
 * The release's encoder.json must be the vocabulary our tokenizer (js-tiktoken's "gpt2"
 * ranks) uses, token for token, or the weights would read the wrong ids.
 */
async function checkEncoderMatchesTokenizer(path: string): Promise<void> {
  const encoder = await readJsonObject(path);
  const entries = Object.entries(encoder);
  if (entries.length !== GPT2_VOCAB_SIZE) {
    throw new Error(`${path}: ${entries.length} tokens, expected ${GPT2_VOCAB_SIZE}`);
  }
  const tokenizer = new Gpt2Tokenizer();
  // OpenAI's own decoder (encoder.py's byte alphabet) reads what each id of this file means.
  const release = new OpenAiBpe(encoder as Record<string, number>, "");
  for (const [token, id] of entries) {
    if (typeof id !== "number" || !Number.isInteger(id) || id < 0 || id >= GPT2_VOCAB_SIZE) {
      throw new Error(`${path}: token ${JSON.stringify(token)} has id ${JSON.stringify(id)}`);
    }
    const expected = release.decode([id]);
    if (tokenizer.decode([id]) !== expected) {
      throw new Error(
        `${path}: token id ${id} is ${JSON.stringify(token)} here but ` +
          `${JSON.stringify(tokenizer.decode([id]))} in our GPT-2 tokenizer`,
      );
    }
  }
}

// ---------------------------------------------------------------------------------------------
// writing

/** The tokenizer GPT-2 was trained with, in the spec format of the tokenize stage. */
export const GPT2_TOKENIZER_SPEC: TokenizerSpec = {
  kind: "gpt2",
  allowedSpecial: ["<|endoftext|>"],
};

/** The safetensors metadata key `loadModel` reads to tie the output head to the embedding. */
const TIED_HEAD_METADATA = "groundup.tied_head";

/**
 * Converts the opened checkpoint tensor by tensor into `outDir`: model.safetensors,
 * config.json and tokenizer.json. Returns the plan (layout and config).
 */
export async function convertCheckpointToModelFolder(
  source: CheckpointSource,
  outDir: string,
  options: {
    hparams?: Record<string, unknown>;
    dropRate?: number;
    expectSize?: Gpt2Size;
    /** Called with 0 before the first tensor, then after each one. */
    onProgress?: (bytesWritten: number, totalBytes: number) => void;
  } = {},
): Promise<Gpt2WeightPlan> {
  const where = source.description ?? "checkpoint";
  const mapping = { hparams: options.hparams, dropRate: options.dropRate ?? 0 };
  // Every name and shape is checked (errors name the tensor and both shapes) before any data.
  const plan = planGpt2Weights(source.shapes, mapping, where);
  if (options.expectSize) checkIsSize(plan.config, options.expectSize, where);
  const total = [...plan.outputs.values()].reduce(
    (n, shape) => n + 4 * shape.reduce((a, b) => a * b, 1),
    0,
  );
  await writeSafetensorsStream(
    join(outDir, WEIGHTS_FILE),
    plan.outputs,
    convertGpt2Weights(source, mapping),
    { format: "pt", [TIED_HEAD_METADATA]: "true" },
    (done) => options.onProgress?.(done, total),
  );
  await writeFileAtomic(join(outDir, CONFIG_FILE), JSON.stringify(plan.config, null, 2) + "\n");
  await writeFileAtomic(join(outDir, "tokenizer.json"), JSON.stringify(GPT2_TOKENIZER_SPEC) + "\n");
  return plan;
}

// ---------------------------------------------------------------------------------------------
// the stage

export const loadOpenaiWeightsStage = defineStage({
  type: "load-openai-weights",
  version: "1",
  description:
    "Fetch OpenAI's GPT-2 (TensorFlow checkpoint or HF safetensors), convert to our files",
  params: LoadOpenaiWeightsParams,
  inherits: ["model"],
  localFiles: localFilesToHash,
  headline: ["size", "parameters", "layout"],
  async run(ctx) {
    const p = ctx.params;
    let found: CheckpointFiles;
    if (p.source === "openai") found = await fetchOpenai(ctx, p.size!);
    else if (p.source === "hf") found = await fetchHf(ctx, p.size!);
    else found = findLocalCheckpoint(resolveLocal(p.path!, ctx.pipeline));

    if (found.encoder) await checkEncoderMatchesTokenizer(found.encoder);
    const hparams = found.hparams ? await readJsonObject(found.hparams) : undefined;
    const source = await openCheckpoint(found);
    let plan: Gpt2WeightPlan;
    try {
      plan = await convertCheckpointToModelFolder(source, ctx.outDir, {
        hparams,
        dropRate: p.drop_rate,
        expectSize: p.size,
        onProgress: (done, total) => {
          if (done === 0) ctx.progress.start("converting", total, "B");
          else ctx.progress.update(done);
        },
      });
    } finally {
      source.close();
    }
    ctx.progress.finish();

    const size = p.size ?? gpt2SizeFor(plan.config) ?? "custom";
    const parameters = countParameters(plan.config, { tiedHead: true });
    await writeFileAtomic(
      join(ctx.outDir, "source.json"),
      JSON.stringify({ source: p.source, size, layout: plan.layout, files: found.files }, null, 2) +
        "\n",
    );
    ctx.log.info(
      `GPT-2 ${size} from ${p.source} (${plan.layout} layout): ${
        parameters.toLocaleString("en-US")
      } ` +
        `parameters, context ${plan.config.context_length}, tied output head`,
    );
    return { metrics: { size, layout: plan.layout, source: p.source, parameters } };
  },
});
