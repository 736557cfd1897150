/**
 * The GPT model configuration, with exactly the book's keys (`GPT_CONFIG_124M` in
 * rasbt/LLMs-from-scratch ch04), its validation, the named configs under `configs/models/`,
 * and the parameter count.
 */
import { parse as parseYaml } from "yaml";
import { fileURLToPath } from "node:url";
import { join } from "node:path";

export interface GPTConfig {
  vocab_size: number;
  context_length: number;
  emb_dim: number;
  n_heads: number;
  n_layers: number;
  drop_rate: number;
  qkv_bias: boolean;
}

const CONFIG_KEYS = [
  "vocab_size",
  "context_length",
  "emb_dim",
  "n_heads",
  "n_layers",
  "drop_rate",
  "qkv_bias",
] as const;

const POSITIVE_INTEGER_KEYS = [
  "vocab_size",
  "context_length",
  "emb_dim",
  "n_heads",
  "n_layers",
] as const;

/** The folder holding the named model configs (`configs/models/<name>.yaml`). */
const MODEL_CONFIG_DIR = fileURLToPath(new URL("../../configs/models/", import.meta.url));

/**
 * Checks an untrusted value (parsed YAML/JSON) and returns it as a `GPTConfig`.
 * `source` names where it came from, so the error can point at the file.
 */
export function validateConfig(value: unknown, source = "<config>"): GPTConfig {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new Error(`${source}: expected a mapping with keys ${CONFIG_KEYS.join(", ")}`);
  }
  const record = value as Record<string, unknown>;
  const unknownKeys = Object.keys(record).filter((k) =>
    !(CONFIG_KEYS as readonly string[]).includes(k)
  );
  if (unknownKeys.length > 0) {
    throw new Error(
      `${source}: unknown key(s) ${unknownKeys.join(", ")}; expected only ${
        CONFIG_KEYS.join(", ")
      }`,
    );
  }
  for (const key of CONFIG_KEYS) {
    if (!(key in record)) throw new Error(`${source}: missing key "${key}"`);
  }
  for (const key of POSITIVE_INTEGER_KEYS) {
    const v = record[key];
    if (typeof v !== "number" || !Number.isInteger(v) || v <= 0) {
      throw new Error(`${source}: "${key}" must be a positive integer, got ${JSON.stringify(v)}`);
    }
  }
  const dropRate = record.drop_rate;
  if (typeof dropRate !== "number" || !(dropRate >= 0 && dropRate < 1)) {
    throw new Error(
      `${source}: "drop_rate" must be a number in [0, 1), got ${JSON.stringify(dropRate)}`,
    );
  }
  if (typeof record.qkv_bias !== "boolean") {
    throw new Error(
      `${source}: "qkv_bias" must be true or false, got ${JSON.stringify(record.qkv_bias)}`,
    );
  }
  const config = Object.fromEntries(CONFIG_KEYS.map((k) => [k, record[k]])) as unknown as GPTConfig;
  if (config.emb_dim % config.n_heads !== 0) {
    throw new Error(
      `${source}: "emb_dim" (${config.emb_dim}) must be divisible by "n_heads" (${config.n_heads})`,
    );
  }
  return config;
}

/**
 * Loads a model config: either a name from `configs/models/` (`"gpt2-small"`, `"tiny"`) or a
 * path to a YAML/JSON file. `overrides` replace keys before validation (the workshop's
 * pretraining uses gpt2-small with `{context_length: 256, qkv_bias: false}`).
 */
export async function loadModelConfig(
  nameOrPath: string,
  overrides: Partial<GPTConfig> = {},
): Promise<GPTConfig> {
  const path = /[\\/]|\.(ya?ml|json)$/.test(nameOrPath)
    ? nameOrPath
    : join(MODEL_CONFIG_DIR, `${nameOrPath}.yaml`);
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      const known = await listModelConfigs().catch(() => []);
      throw new Error(
        `model config "${nameOrPath}" not found (looked for ${path}); known names: ${
          known.join(", ")
        }`,
      );
    }
    throw error;
  }
  let parsed: unknown;
  try {
    // YAML is a superset of JSON, so one parser reads both.
    parsed = parseYaml(text);
  } catch (error) {
    throw new Error(`${path}: not valid YAML/JSON: ${(error as Error).message}`);
  }
  if (typeof parsed === "object" && parsed !== null && !Array.isArray(parsed)) {
    parsed = { ...parsed, ...overrides };
  }
  return validateConfig(parsed, path);
}

/** Names of the configs under `configs/models/`, sorted. */
export async function listModelConfigs(): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(MODEL_CONFIG_DIR)) {
    if (entry.isFile && entry.name.endsWith(".yaml")) names.push(entry.name.slice(0, -5));
  }
  return names.sort();
}

/**
 * Number of parameters of the book's GPTModel for `config`. With `tiedHead` the output head
 * shares the token embedding (as OpenAI's GPT-2 does), so its matrix is counted once.
 */
export function countParameters(config: GPTConfig, options: { tiedHead?: boolean } = {}): number {
  const { vocab_size: V, context_length: C, emb_dim: D, n_layers: L, qkv_bias } = config;
  const linear = (inDim: number, outDim: number, bias: boolean) =>
    inDim * outDim + (bias ? outDim : 0);
  const layerNorm = 2 * D; // scale + shift
  const attention = 3 * linear(D, D, qkv_bias) + linear(D, D, true);
  const feedForward = linear(D, 4 * D, true) + linear(4 * D, D, true);
  const block = attention + feedForward + 2 * layerNorm;
  const embeddings = V * D + C * D;
  const head = options.tiedHead ? 0 : V * D;
  return embeddings + L * block + layerNorm + head;
}
