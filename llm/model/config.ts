/**
 * The GPT model configuration, with exactly the book's keys (`GPT_CONFIG_124M` in
 * rasbt/LLMs-from-scratch ch04), its validation, the named configs under `configs/models/`,
 * and the parameter count.
 */
import { parse as parseYaml } from "yaml";
import { fileURLToPath } from "node:url";
import { join } from "node:path";

/** The model families the config keys can describe (informational: behaviour comes from the keys). */
export const MODEL_FAMILIES = ["gpt2", "llama", "qwen3", "gemma3", "phi3", "phi2"] as const;

/** Llama 3's RoPE frequency scaling (HF `rope_scaling` with `rope_type: "llama3"`). */
export interface RopeScaling {
  /** Divisor of the low frequencies (32 for Llama 3.2). */
  factor: number;
  /** Wavelengths above original_context_length / low_freq_factor are divided by `factor`. */
  low_freq_factor: number;
  /** Wavelengths below original_context_length / high_freq_factor are kept. */
  high_freq_factor: number;
  /** The context length the model was pretrained with (8192 for Llama 3.2). */
  original_context_length: number;
}

/** One layer's attention: over every earlier token, or over the last `sliding_window` ones. */
export type LayerType = "full" | "sliding";

/**
 * The book's model configuration (`GPT_CONFIG_124M` keys, same names): what a saved model's
 * `config.json` holds. The optional keys describe the open-model families (Llama 3, Qwen3,
 * Gemma 3, Phi-3, Phi-2, SmolLM2); each one absent means GPT-2's behaviour, so a GPT-2 config is
 * exactly the book's seven keys.
 */
export interface GPTConfig {
  /**
   * Tokens in the vocabulary (50257 for GPT-2's BPE): rows of the embedding and outputs of the
   * head.
   */
  vocab_size: number;
  /** Longest sequence the model reads: rows of the position embedding (1024 for GPT-2). */
  context_length: number;
  /** Width of every token's vector (768 for the 124M model). */
  emb_dim: number;
  /** Attention heads per block; must divide emb_dim unless head_dim is given. */
  n_heads: number;
  /** Number of transformer blocks. */
  n_layers: number;
  /** Dropout probability used in training (0 disables dropout). */
  drop_rate: number;
  /**
   * Whether the query, key and value projections have biases (true for OpenAI's weights, false in
   * the book's from-scratch model).
   */
  qkv_bias: boolean;
  /** Which family the config describes; informational only. */
  family?: typeof MODEL_FAMILIES[number];
  /** Width of one attention head; default emb_dim / n_heads (Qwen3-0.6B: 128 with 16 heads of a 1024 model). */
  head_dim?: number;
  /**
   * Key/value heads (grouped-query attention, the book's num_kv_groups); default n_heads.
   * Query head h reads kv head floor(h / (n_heads / n_kv_groups)).
   */
  n_kv_groups?: number;
  /** Width of the MLP's hidden layer; default 4 · emb_dim. */
  hidden_dim?: number;
  /**
   * The MLP: "gelu" (GPT-2, Phi-2: fc → GELU(tanh) → proj), "swiglu" (down(silu(gate x) · up x))
   * or "geglu" (down(gelu_tanh(gate x) · up x), Gemma 3). Default "gelu".
   */
  mlp?: "gelu" | "swiglu" | "geglu";
  /** Biases on the MLP's linear layers; default true for gelu, false for the gated MLPs. */
  mlp_bias?: boolean;
  /** "layernorm" (with shift, GPT-2, Phi-2) or "rmsnorm"; default layernorm. */
  norm?: "layernorm" | "rmsnorm";
  /** Epsilon of every norm; default 1e-5. */
  norm_eps?: number;
  /** Gemma: norm weights are stored zero-centred and applied as (1 + w). Default false. */
  norm_unit_offset?: boolean;
  /**
   * "sequential" (pre-norm: x += att(norm1 x); x += ff(norm2 x)), "parallel" (Phi-2:
   * x = x + att(norm1 x) + ff(norm1 x)) or "sandwich" (Gemma 3: x += post_att_norm(att(norm1 x));
   * x += post_ff_norm(ff(norm2 x))). Default sequential.
   */
  block?: "sequential" | "parallel" | "sandwich";
  /** "learned" (GPT-2's position table) or "rope" (rotary, no table). Default learned. */
  pos_emb?: "learned" | "rope";
  /** RoPE base θ; default 10000. */
  rope_theta?: number;
  /** Gemma 3: RoPE base of the sliding-window layers (default rope_theta). */
  rope_local_theta?: number;
  /** Llama 3's frequency scaling; absent: none. */
  rope_scaling?: RopeScaling;
  /** Phi-2's partial rotary: only the first rotary_dim dims of each head rotate. Default head_dim. */
  rotary_dim?: number;
  /** RMSNorm over head_dim on queries and keys before RoPE (Qwen3, Gemma 3). Default false. */
  qk_norm?: boolean;
  /** Bias of the attention output projection; default true (GPT-2, Phi-2). */
  attn_out_bias?: boolean;
  /** Window of the "sliding" layers: key j is visible to query i when i - j < sliding_window. */
  sliding_window?: number;
  /** One entry per layer; default every layer "full". */
  layer_types?: LayerType[];
  /** Gemma 3: attention scale query_pre_attn_scalar^-0.5 instead of head_dim^-0.5. */
  query_pre_attn_scalar?: number;
  /** Multiplies the token embeddings (Gemma 3: √emb_dim rounded to the checkpoint's dtype). */
  emb_scale?: number;
  /** Bias on the output head (Phi-2's lm_head). Default false. */
  head_bias?: boolean;
}

/** A config with every optional key filled in: what the model's layers read. */
export type ResolvedConfig =
  & Required<
    Omit<
      GPTConfig,
      "family" | "rope_scaling" | "sliding_window" | "rope_local_theta" | "query_pre_attn_scalar"
    >
  >
  & {
    family?: GPTConfig["family"];
    rope_scaling?: RopeScaling;
    /** Infinity when no layer slides. */
    sliding_window: number;
    rope_local_theta: number;
    /** Attention scores are divided by this: √head_dim, or √query_pre_attn_scalar. */
    attention_divisor: number;
  };

const CONFIG_KEYS = [
  "vocab_size",
  "context_length",
  "emb_dim",
  "n_heads",
  "n_layers",
  "drop_rate",
  "qkv_bias",
] as const;

/** The optional keys, in the order a validated config lists them. */
const OPTIONAL_KEYS = [
  "family",
  "head_dim",
  "n_kv_groups",
  "hidden_dim",
  "mlp",
  "mlp_bias",
  "norm",
  "norm_eps",
  "norm_unit_offset",
  "block",
  "pos_emb",
  "rope_theta",
  "rope_local_theta",
  "rope_scaling",
  "rotary_dim",
  "qk_norm",
  "attn_out_bias",
  "sliding_window",
  "layer_types",
  "query_pre_attn_scalar",
  "emb_scale",
  "head_bias",
] as const;

const ALL_KEYS: readonly string[] = [...CONFIG_KEYS, ...OPTIONAL_KEYS];

const POSITIVE_INTEGER_KEYS = [
  "vocab_size",
  "context_length",
  "emb_dim",
  "n_heads",
  "n_layers",
] as const;

const OPTIONAL_POSITIVE_INTEGERS = [
  "head_dim",
  "n_kv_groups",
  "hidden_dim",
  "rotary_dim",
  "sliding_window",
] as const;
const OPTIONAL_POSITIVE_NUMBERS = [
  "norm_eps",
  "rope_theta",
  "rope_local_theta",
  "query_pre_attn_scalar",
  "emb_scale",
] as const;
const OPTIONAL_BOOLEANS = [
  "mlp_bias",
  "norm_unit_offset",
  "qk_norm",
  "attn_out_bias",
  "head_bias",
] as const;
const OPTIONAL_CHOICES: Record<string, readonly string[]> = {
  family: MODEL_FAMILIES,
  mlp: ["gelu", "swiglu", "geglu"],
  norm: ["layernorm", "rmsnorm"],
  block: ["sequential", "parallel", "sandwich"],
  pos_emb: ["learned", "rope"],
};
const ROPE_ONLY_KEYS = ["rope_theta", "rope_local_theta", "rope_scaling", "rotary_dim"] as const;
const ROPE_SCALING_KEYS = [
  "factor",
  "low_freq_factor",
  "high_freq_factor",
  "original_context_length",
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
  const unknownKeys = Object.keys(record).filter((k) => !ALL_KEYS.includes(k));
  if (unknownKeys.length > 0) {
    throw new Error(
      `${source}: unknown key(s) ${unknownKeys.join(", ")}; expected only ${
        CONFIG_KEYS.join(", ")
      } and optionally ${OPTIONAL_KEYS.join(", ")}`,
    );
  }
  for (const key of CONFIG_KEYS) {
    if (!(key in record)) throw new Error(`${source}: missing key "${key}"`);
  }
  const fail = (key: string, expected: string): never => {
    throw new Error(`${source}: "${key}" must be ${expected}, got ${JSON.stringify(record[key])}`);
  };
  const isPositiveInteger = (v: unknown) => typeof v === "number" && Number.isInteger(v) && v > 0;
  const isPositiveNumber = (v: unknown) => typeof v === "number" && Number.isFinite(v) && v > 0;
  for (const key of POSITIVE_INTEGER_KEYS) {
    if (!isPositiveInteger(record[key])) fail(key, "a positive integer");
  }
  const dropRate = record.drop_rate;
  if (typeof dropRate !== "number" || !(dropRate >= 0 && dropRate < 1)) {
    fail("drop_rate", "a number in [0, 1)");
  }
  if (typeof record.qkv_bias !== "boolean") fail("qkv_bias", "true or false");

  // The optional keys: each absent one keeps GPT-2's behaviour.
  const has = (key: string) => record[key] !== undefined;
  for (const key of OPTIONAL_POSITIVE_INTEGERS) {
    if (has(key) && !isPositiveInteger(record[key])) fail(key, "a positive integer");
  }
  for (const key of OPTIONAL_POSITIVE_NUMBERS) {
    if (has(key) && !isPositiveNumber(record[key])) fail(key, "a positive number");
  }
  for (const key of OPTIONAL_BOOLEANS) {
    if (has(key) && typeof record[key] !== "boolean") fail(key, "true or false");
  }
  for (const [key, choices] of Object.entries(OPTIONAL_CHOICES)) {
    if (has(key) && !choices.includes(record[key] as string)) {
      fail(key, `one of ${choices.map((c) => JSON.stringify(c)).join(", ")}`);
    }
  }
  if (has("rope_scaling")) {
    const scaling = record.rope_scaling as Record<string, unknown>;
    if (typeof scaling !== "object" || scaling === null || Array.isArray(scaling)) {
      fail("rope_scaling", `a mapping with keys ${ROPE_SCALING_KEYS.join(", ")}`);
    }
    const extra = Object.keys(scaling).filter((k) =>
      !(ROPE_SCALING_KEYS as readonly string[]).includes(k)
    );
    const bad = ROPE_SCALING_KEYS.filter((k) => !isPositiveNumber(scaling[k]));
    if (extra.length > 0 || bad.length > 0) {
      fail(
        "rope_scaling",
        `a mapping of positive numbers ${ROPE_SCALING_KEYS.join(", ")} (Llama 3 scaling)`,
      );
    }
    if (!((scaling.high_freq_factor as number) > (scaling.low_freq_factor as number))) {
      fail("rope_scaling", "a mapping whose high_freq_factor exceeds its low_freq_factor");
    }
  }
  if (record.pos_emb !== "rope") {
    for (const key of ROPE_ONLY_KEYS) {
      if (has(key)) {
        throw new Error(`${source}: "${key}" applies only with pos_emb: "rope"`);
      }
    }
  }
  const nLayers = record.n_layers as number;
  if (has("layer_types")) {
    const types = record.layer_types;
    if (
      !Array.isArray(types) || types.length !== nLayers ||
      !types.every((t) => t === "full" || t === "sliding")
    ) {
      fail("layer_types", `a list of ${nLayers} entries (one per layer), each "full" or "sliding"`);
    }
    if ((types as string[]).includes("sliding") && !has("sliding_window")) {
      throw new Error(
        `${source}: "layer_types" has sliding layers but "sliding_window" is missing`,
      );
    }
  }

  const config = Object.fromEntries(
    ALL_KEYS.filter((k) => k in record && record[k] !== undefined).map((k) => [k, record[k]]),
  ) as unknown as GPTConfig;
  if (config.rope_scaling) config.rope_scaling = { ...config.rope_scaling };
  if (config.layer_types) config.layer_types = [...config.layer_types];
  if (config.head_dim === undefined && config.emb_dim % config.n_heads !== 0) {
    throw new Error(
      `${source}: "emb_dim" (${config.emb_dim}) must be divisible by "n_heads" (${config.n_heads})`,
    );
  }
  const nKv = config.n_kv_groups ?? config.n_heads;
  if (config.n_heads % nKv !== 0) {
    throw new Error(
      `${source}: "n_heads" (${config.n_heads}) must be divisible by "n_kv_groups" (${nKv})`,
    );
  }
  const headDim = config.head_dim ?? config.emb_dim / config.n_heads;
  const rotary = config.rotary_dim ?? headDim;
  if (config.pos_emb === "rope" && (rotary % 2 !== 0 || rotary > headDim)) {
    throw new Error(
      `${source}: the rotary width (${rotary}: "rotary_dim", else "head_dim") must be even and ` +
        `at most the head width ${headDim}`,
    );
  }
  return config;
}

/**
 * Every key of `config` with its default filled in (GPT-2's behaviour for an absent key): what
 * the model's layers read.
 */
export function resolveConfig(config: GPTConfig): ResolvedConfig {
  const headDim = config.head_dim ?? config.emb_dim / config.n_heads;
  const mlp = config.mlp ?? "gelu";
  const layerTypes = config.layer_types ?? Array(config.n_layers).fill("full");
  const theta = config.rope_theta ?? 10000;
  return {
    ...config,
    head_dim: headDim,
    n_kv_groups: config.n_kv_groups ?? config.n_heads,
    hidden_dim: config.hidden_dim ?? 4 * config.emb_dim,
    mlp,
    mlp_bias: config.mlp_bias ?? mlp === "gelu",
    norm: config.norm ?? "layernorm",
    norm_eps: config.norm_eps ?? 1e-5,
    norm_unit_offset: config.norm_unit_offset ?? false,
    block: config.block ?? "sequential",
    pos_emb: config.pos_emb ?? "learned",
    rope_theta: theta,
    rope_local_theta: config.rope_local_theta ?? theta,
    rotary_dim: config.rotary_dim ?? headDim,
    qk_norm: config.qk_norm ?? false,
    attn_out_bias: config.attn_out_bias ?? true,
    sliding_window: config.sliding_window ?? Infinity,
    layer_types: layerTypes,
    attention_divisor: Math.sqrt(config.query_pre_attn_scalar ?? headDim),
    emb_scale: config.emb_scale ?? 1,
    head_bias: config.head_bias ?? false,
  };
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
 * Number of parameters of the model `config` describes. With `tiedHead` the output head shares
 * the token embedding (as OpenAI's GPT-2 does), so its matrix is counted once.
 */
export function countParameters(config: GPTConfig, options: { tiedHead?: boolean } = {}): number {
  const c = resolveConfig(config);
  const { vocab_size: V, context_length: C, emb_dim: D, n_layers: L } = c;
  const linear = (inDim: number, outDim: number, bias: boolean) =>
    inDim * outDim + (bias ? outDim : 0);
  const norm = (dim: number) => c.norm === "layernorm" ? 2 * dim : dim; // scale (+ shift)
  const q = c.n_heads * c.head_dim;
  const kv = c.n_kv_groups * c.head_dim;
  const attention = linear(D, q, c.qkv_bias) + 2 * linear(D, kv, c.qkv_bias) +
    linear(q, D, c.attn_out_bias) + (c.qk_norm ? 2 * c.head_dim : 0); // QK-norm: RMSNorm scales
  const H = c.hidden_dim;
  const feedForward = c.mlp === "gelu"
    ? linear(D, H, c.mlp_bias) + linear(H, D, c.mlp_bias)
    : 2 * linear(D, H, c.mlp_bias) + linear(H, D, c.mlp_bias);
  const norms = { sequential: 2, parallel: 1, sandwich: 4 }[c.block];
  const block = attention + feedForward + norms * norm(D);
  const embeddings = V * D + (c.pos_emb === "learned" ? C * D : 0);
  const head = (options.tiedHead ? 0 : V * D) + (c.head_bias ? V : 0);
  return embeddings + L * block + norm(D) + head;
}
