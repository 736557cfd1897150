/**
 * Importing OpenAI's GPT-2 into our model folder format: finding a checkpoint on disk (OpenAI's
 * TensorFlow release or Hugging Face's safetensors), opening it, checking that its encoder.json
 * is the vocabulary our tokenizer uses, and converting it tensor by tensor into
 * model.safetensors + gpt_config.json + tokenizer_spec.json.
 *
 * Conversion streams one checkpoint tensor at a time from the source file into the output file,
 * so memory holds about one tensor (the embedding: 147 MiB for 124M, 307 MiB for 1558M), never
 * a copy of the model.
 */
import { readdirSync, statSync } from "node:fs";
import { basename, isAbsolute, join } from "node:path";
import { readJsonObject, writeFileAtomic } from "../../util/files.ts";
import { OpenAiBpe } from "../tokenizer/bpe.ts";
import { Gpt2Tokenizer } from "../tokenizer/gpt2.ts";
import type { TokenizerSpec } from "../tokenizer/mod.ts";
import { TOKENIZER_SPEC_FILE } from "../tokenizer/files.ts";
import { openSafetensors, writeSafetensorsStream } from "../weights/safetensors.ts";
import { openTensorBundle } from "../weights/tensorbundle/reader.ts";
import type { GPTConfig } from "./config.ts";
import {
  type CheckpointSource,
  checkpointSourceFromTensorBundle,
  convertGpt2Weights,
  type Gpt2Layout,
  type Gpt2WeightPlan,
  planGpt2Weights,
} from "./gpt2_mapping.ts";
import {
  GPT2_CONTEXT_LENGTH,
  GPT2_SIZE_INFO,
  GPT2_VOCAB_SIZE,
  type Gpt2Size,
} from "./gpt2_sizes.ts";
import { CONFIG_FILE, TIED_HEAD_KEY, WEIGHTS_FILE } from "./weights_io.ts";

// ---------------------------------------------------------------------------------------------
// locating and opening a checkpoint

/** The files of one checkpoint on disk, whichever way they got there. */
export interface CheckpointFiles {
  /** Which publication's layout the files have. */
  layout: Gpt2Layout;
  /** openai: `<prefix>.index` + `<prefix>.data-*`; hf: the safetensors file. */
  weights: string;
  /** hparams.json (openai) or config.json (hf), when present. */
  hparams?: string;
  /** encoder.json, when present: checked against the tokenizer we use. */
  encoder?: string;
  /** Every file used, for source.json. */
  files: Record<string, string>;
}

/** `model_checkpoint_path` from TensorFlow's `checkpoint` text file, if it names one. */
function checkpointPrefixFromStateFile(path: string): string | undefined {
  const text = Deno.readTextFileSync(path);
  const match = /^model_checkpoint_path:\s*"([^"]+)"/m.exec(text);
  return match?.[1];
}

/**
 * Finds the checkpoint inside a local folder (synchronous: a pipeline planner may call it to
 * learn which files decide a stage's output).
 */
export function findLocalCheckpoint(folder: string): CheckpointFiles {
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

/** An opened checkpoint: shapes up front, tensors on demand. */
export async function openCheckpoint(
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
export async function checkEncoderMatchesTokenizer(path: string): Promise<void> {
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

/** How {@link convertCheckpointToModelFolder} converts. */
export interface ConvertOptions {
  /** hparams.json (OpenAI) or config.json (Hugging Face) of the checkpoint, when present. */
  hparams?: Record<string, unknown>;
  /** Dropout written into config.json (a training choice; default 0). */
  dropRate?: number;
  /** Fail unless the checkpoint is this GPT-2 size. */
  expectSize?: Gpt2Size;
  /** Called with 0 before the first tensor, then after each one. */
  onProgress?: (bytesWritten: number, totalBytes: number) => void;
}

/** The tokenizer GPT-2 was trained with, in the spec format of the tokenize stage. */
const GPT2_TOKENIZER_SPEC: TokenizerSpec = {
  kind: "gpt2",
  allowedSpecial: ["<|endoftext|>"],
};

/**
 * Converts the opened checkpoint tensor by tensor into `outDir`: model.safetensors,
 * gpt_config.json and tokenizer_spec.json. Returns the plan (layout and config).
 */
export async function convertCheckpointToModelFolder(
  source: CheckpointSource,
  outDir: string,
  options: ConvertOptions = {},
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
    { format: "pt", [TIED_HEAD_KEY]: "true" },
    (done) => options.onProgress?.(done, total),
  );
  await writeFileAtomic(join(outDir, CONFIG_FILE), JSON.stringify(plan.config, null, 2) + "\n");
  await writeFileAtomic(
    join(outDir, TOKENIZER_SPEC_FILE),
    JSON.stringify(GPT2_TOKENIZER_SPEC) + "\n",
  );
  return plan;
}
