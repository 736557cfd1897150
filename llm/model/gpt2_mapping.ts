/**
 * Maps OpenAI GPT-2 weights onto the book's `GPTModel` parameter names and layouts
 * (`load_weights_into_gpt` in rasbt/LLMs-from-scratch ch05).
 *
 * Two source layouts carry the same numbers:
 *   openai  TensorFlow checkpoint: `model/wte`, `model/h<i>/attn/c_attn/w` [1, in, out], ...
 *   hf      Hugging Face safetensors: `wte.weight` (optionally `transformer.`-prefixed),
 *           `h.<i>.attn.c_attn.weight` [in, out] (Conv1D), `ln_f.weight`, ...
 * Both store projections as [in, out] (x @ W); PyTorch's nn.Linear keeps [out, in], so every
 * matrix is transposed. `c_attn` holds query, key and value side by side on its last axis and
 * is split into three. The output head is tied to the token embedding (same array, no copy).
 *
 * Conversion is driven by a shapes-only plan (every name and shape checked before any data is
 * read), then streams: one source tensor is read, turned into book tensors, and handed on, so a
 * multi-gigabyte checkpoint never needs two full copies in memory.
 */
import type { NamedTensor } from "../weights/safetensors.ts";
import type { TensorBundle } from "../weights/tensorbundle/reader.ts";
import type { GPTConfig } from "./config.ts";
import { gpt2HeadsForWidth } from "./gpt2_sizes.ts";

/** Where the checkpoint comes from: every shape up front, values one tensor at a time. */
export interface CheckpointSource {
  /** name → shape of every tensor in the checkpoint. */
  shapes: ReadonlyMap<string, readonly number[]>;
  /** The float32 values of one tensor, row-major. */
  read(name: string): Promise<Float32Array> | Float32Array;
  /** Names the checkpoint in error messages (e.g. its path). */
  description?: string;
}

export type Gpt2Layout = "openai" | "hf";

/** A checkpoint already in memory, e.g. what the safetensors reader returns. */
export function checkpointSourceFromMap(
  tensors: ReadonlyMap<string, { shape: readonly number[]; data: Float32Array }>,
  description = "checkpoint",
): CheckpointSource {
  return {
    shapes: new Map([...tensors].map(([name, t]) => [name, t.shape])),
    read: (name) => {
      const tensor = tensors.get(name);
      if (!tensor) throw new Error(`${description}: no tensor named "${name}"`);
      return tensor.data;
    },
    description,
  };
}

/** An opened TensorFlow checkpoint; each tensor is read (and CRC-checked) only when needed. */
export function checkpointSourceFromTensorBundle(bundle: TensorBundle): CheckpointSource {
  return {
    shapes: new Map([...bundle.entries].map(([name, entry]) => [name, entry.shape])),
    read: (name) => bundle.readFloat32(name),
    description: bundle.index.indexPath,
  };
}

export interface Gpt2MappingOptions {
  /**
   * OpenAI `hparams.json` (`n_vocab`, `n_ctx`, `n_embd`, `n_head`, `n_layer`) or Hugging Face
   * `config.json` (`vocab_size`, `n_positions`, `n_embd`, `n_head`, `n_layer`). Supplies
   * n_heads (shapes cannot tell it) and is cross-checked against the tensor shapes.
   */
  hparams?: Record<string, unknown>;
  /** Dropout for the resulting config: a training choice, not part of the weights. Default 0. */
  dropRate?: number;
  /** Accept checkpoint tensors that map to nothing instead of failing. Default false. */
  allowUnused?: boolean;
}

export interface Gpt2WeightPlan {
  layout: Gpt2Layout;
  config: GPTConfig;
  /** Book parameter name → shape, in the order {@link convertGpt2Weights} yields them. */
  outputs: Map<string, number[]>;
  /** Checkpoint tensors deliberately not used (HF attention-mask buffers, tied lm_head). */
  skipped: string[];
}

/** How a checkpoint tensor becomes book tensors. */
type Conversion =
  | { kind: "copy"; to: string } // same layout, possibly dropping a leading singleton axis
  | { kind: "transpose"; to: string } // [in, out] → [out, in]
  | { kind: "split3-transpose"; to: [string, string, string] } // c_attn weight
  | { kind: "split3"; to: [string, string, string] }; // c_attn bias

interface Rule {
  source: string;
  /** Shape the checkpoint must have. */
  shape: number[];
  conversion: Conversion;
}

/** Per-block parameters: layout-neutral id → (openai suffix, hf suffix). */
const BLOCK_TENSORS = {
  ln1Scale: ["ln_1/g", "ln_1.weight"],
  ln1Shift: ["ln_1/b", "ln_1.bias"],
  qkvWeight: ["attn/c_attn/w", "attn.c_attn.weight"],
  qkvBias: ["attn/c_attn/b", "attn.c_attn.bias"],
  projWeight: ["attn/c_proj/w", "attn.c_proj.weight"],
  projBias: ["attn/c_proj/b", "attn.c_proj.bias"],
  ln2Scale: ["ln_2/g", "ln_2.weight"],
  ln2Shift: ["ln_2/b", "ln_2.bias"],
  fcWeight: ["mlp/c_fc/w", "mlp.c_fc.weight"],
  fcBias: ["mlp/c_fc/b", "mlp.c_fc.bias"],
  fcProjWeight: ["mlp/c_proj/w", "mlp.c_proj.weight"],
  fcProjBias: ["mlp/c_proj/b", "mlp.c_proj.bias"],
} as const;

/** Names in one layout. `hfPrefix` is "" or "transformer.". */
class LayoutNames {
  constructor(readonly layout: Gpt2Layout, readonly hfPrefix = "") {}

  get wte(): string {
    return this.layout === "openai" ? "model/wte" : `${this.hfPrefix}wte.weight`;
  }
  get wpe(): string {
    return this.layout === "openai" ? "model/wpe" : `${this.hfPrefix}wpe.weight`;
  }
  get lnfScale(): string {
    return this.layout === "openai" ? "model/ln_f/g" : `${this.hfPrefix}ln_f.weight`;
  }
  get lnfShift(): string {
    return this.layout === "openai" ? "model/ln_f/b" : `${this.hfPrefix}ln_f.bias`;
  }
  block(i: number, id: keyof typeof BLOCK_TENSORS): string {
    const [openai, hf] = BLOCK_TENSORS[id];
    return this.layout === "openai" ? `model/h${i}/${openai}` : `${this.hfPrefix}h.${i}.${hf}`;
  }
  /** Matrices carry a leading singleton axis in OpenAI's checkpoint. */
  matrix(rows: number, cols: number): number[] {
    return this.layout === "openai" ? [1, rows, cols] : [rows, cols];
  }
  /** The block index if `name` belongs to a transformer block. */
  blockIndex(name: string): number | undefined {
    const pattern = this.layout === "openai"
      ? /^model\/h(\d+)\//
      : new RegExp(`^${this.hfPrefix.replace(".", "\\.")}h\\.(\\d+)\\.`);
    const match = pattern.exec(name);
    return match ? Number(match[1]) : undefined;
  }
  /** Tensors that exist in the file but carry no weights we need. */
  isIgnorable(name: string): boolean {
    if (this.layout === "openai") return false;
    // HF keeps the causal mask as a buffer per block, and may store the tied head separately.
    const maskBuffer = /\.attn\.(bias|masked_bias)$/.test(name) &&
      this.blockIndex(name) !== undefined;
    return maskBuffer || name === "lm_head.weight";
  }
}

/** Which layout the names follow. */
function detectGpt2Layout(
  names: Iterable<string>,
): { layout: Gpt2Layout; hfPrefix: string } {
  const all = new Set(names);
  if (all.has("model/wte")) return { layout: "openai", hfPrefix: "" };
  if (all.has("wte.weight")) return { layout: "hf", hfPrefix: "" };
  if (all.has("transformer.wte.weight")) return { layout: "hf", hfPrefix: "transformer." };
  const sample = [...all].slice(0, 5).join(", ");
  throw new Error(
    `not a GPT-2 checkpoint: no "model/wte" (OpenAI) or "wte.weight" / ` +
      `"transformer.wte.weight" (Hugging Face) among ${all.size} tensors (e.g. ${sample})`,
  );
}

/**
 * Checks every name and shape and works out the model config, without reading any data.
 * Errors name the checkpoint tensor and both the expected and actual shapes.
 */
export function planGpt2Weights(
  shapes: ReadonlyMap<string, readonly number[]>,
  options: Gpt2MappingOptions = {},
  description = "checkpoint",
): Gpt2WeightPlan {
  const { rules: _rules, ...plan } = planWithRules(shapes, options, description);
  return plan;
}

function planWithRules(
  shapes: ReadonlyMap<string, readonly number[]>,
  options: Gpt2MappingOptions,
  description: string,
): Gpt2WeightPlan & { rules: Rule[] } {
  const { layout, hfPrefix } = detectGpt2Layout(shapes.keys());
  const names = new LayoutNames(layout, hfPrefix);
  const config = inferConfig(shapes, names, options, description);
  const rules = buildRules(names, config);

  for (const rule of rules) {
    const actual = shapes.get(rule.source);
    if (!actual) {
      throw new Error(
        `${description}: missing tensor "${rule.source}" (expected shape [${rule.shape}])`,
      );
    }
    if (!sameShape(actual, rule.shape)) {
      throw new Error(
        `${description}: tensor "${rule.source}" has shape [${actual}], expected ` +
          `[${rule.shape}]`,
      );
    }
  }

  const used = new Set(rules.map((r) => r.source));
  const skipped: string[] = [];
  const unknown: string[] = [];
  for (const [name, shape] of shapes) {
    if (used.has(name)) continue;
    if (name === "lm_head.weight" && !sameShape(shape, [config.vocab_size, config.emb_dim])) {
      throw new Error(
        `${description}: tensor "lm_head.weight" has shape [${shape}], expected ` +
          `[${config.vocab_size},${config.emb_dim}] (tied to the token embedding)`,
      );
    }
    if (names.isIgnorable(name)) skipped.push(name);
    else unknown.push(name);
  }
  if (unknown.length > 0 && !options.allowUnused) {
    throw new Error(
      `${description}: ${unknown.length} tensor(s) do not belong to a ${config.n_layers}-layer ` +
        `GPT-2 (${layout} layout): ${unknown.slice(0, 5).join(", ")}`,
    );
  }
  skipped.push(...unknown);

  const outputs = new Map<string, number[]>();
  for (const rule of rules) {
    for (const [name, shape] of outputShapes(rule)) outputs.set(name, shape);
  }
  return { layout, config, outputs, skipped, rules };
}

/**
 * Streams the book's tensors: reads one checkpoint tensor at a time and yields the tensors made
 * from it. `tok_emb.weight` and `out_head.weight` share one array.
 */
export async function* convertGpt2Weights(
  source: CheckpointSource,
  options: Gpt2MappingOptions = {},
): AsyncGenerator<[string, NamedTensor]> {
  const description = source.description ?? "checkpoint";
  const { rules } = planWithRules(source.shapes, options, description);
  for (const rule of rules) {
    const data = await source.read(rule.source);
    const expected = rule.shape.reduce((a, b) => a * b, 1);
    if (data.length !== expected) {
      throw new Error(
        `${description}: tensor "${rule.source}" has ${data.length} values, expected ` +
          `${expected} for shape [${rule.shape}]`,
      );
    }
    yield* applyRule(rule, data);
  }
}

/** Converts everything into one map (convenient for small models and tests). */
export async function loadGpt2Weights(
  source: CheckpointSource,
  options: Gpt2MappingOptions = {},
): Promise<{ layout: Gpt2Layout; config: GPTConfig; tensors: Map<string, NamedTensor> }> {
  const plan = planGpt2Weights(source.shapes, options, source.description ?? "checkpoint");
  const tensors = new Map<string, NamedTensor>();
  for await (const [name, tensor] of convertGpt2Weights(source, options)) tensors.set(name, tensor);
  return { layout: plan.layout, config: plan.config, tensors };
}

function inferConfig(
  shapes: ReadonlyMap<string, readonly number[]>,
  names: LayoutNames,
  options: Gpt2MappingOptions,
  description: string,
): GPTConfig {
  const wte = shapes.get(names.wte)!;
  const wpe = shapes.get(names.wpe);
  if (wte.length !== 2) {
    throw new Error(`${description}: tensor "${names.wte}" has shape [${wte}], expected 2 axes`);
  }
  if (!wpe) throw new Error(`${description}: missing tensor "${names.wpe}"`);
  const [vocab, emb] = wte;
  if (wpe.length !== 2 || wpe[1] !== emb) {
    throw new Error(
      `${description}: tensor "${names.wpe}" has shape [${wpe}], expected [<context>,${emb}]`,
    );
  }
  let layers = 0;
  for (const name of shapes.keys()) {
    const index = names.blockIndex(name);
    if (index !== undefined) layers = Math.max(layers, index + 1);
  }
  if (layers === 0) throw new Error(`${description}: no transformer blocks found`);

  const hp = options.hparams ?? {};
  const pick = (...keys: string[]): [string, number] | undefined => {
    for (const key of keys) {
      const value = hp[key];
      if (value === undefined) continue;
      if (typeof value !== "number" || !Number.isInteger(value) || value <= 0) {
        throw new Error(
          `hparams: "${key}" must be a positive integer, got ${JSON.stringify(value)}`,
        );
      }
      return [key, value];
    }
    return undefined;
  };
  const crossCheck = (keys: string[], fromShapes: number, what: string) => {
    const given = pick(...keys);
    if (given && given[1] !== fromShapes) {
      throw new Error(
        `hparams: "${given[0]}" is ${given[1]} but the ${description} has ${what} ${fromShapes}`,
      );
    }
  };
  crossCheck(["n_vocab", "vocab_size"], vocab, `vocabulary (${names.wte} rows)`);
  crossCheck(["n_ctx", "n_positions"], wpe[0], `context length (${names.wpe} rows)`);
  crossCheck(["n_embd"], emb, "embedding size");
  crossCheck(["n_layer"], layers, "number of blocks");

  const heads = pick("n_head")?.[1] ?? gpt2HeadsForWidth(emb);
  if (heads === undefined) {
    throw new Error(
      `${description}: cannot tell n_heads for emb_dim ${emb} (not a standard GPT-2 size); ` +
        `give hparams with "n_head"`,
    );
  }
  if (emb % heads !== 0) {
    throw new Error(`hparams: n_head ${heads} does not divide the embedding size ${emb}`);
  }
  return {
    vocab_size: vocab,
    context_length: wpe[0],
    emb_dim: emb,
    n_heads: heads,
    n_layers: layers,
    drop_rate: options.dropRate ?? 0,
    qkv_bias: true,
  };
}

const copy = (source: string, shape: number[], to: string): Rule => ({
  source,
  shape,
  conversion: { kind: "copy", to },
});
const transpose = (source: string, shape: number[], to: string): Rule => ({
  source,
  shape,
  conversion: { kind: "transpose", to },
});

/** The checkpoint tensors a GPT-2 of this config needs, in the order they are converted. */
function buildRules(names: LayoutNames, config: GPTConfig): Rule[] {
  const d = config.emb_dim;
  const hidden = 4 * d; // GPT-2's feed-forward width, as in the book's FeedForward
  const rules: Rule[] = [
    copy(names.wte, [config.vocab_size, d], "tok_emb.weight"),
    copy(names.wpe, [config.context_length, d], "pos_emb.weight"),
  ];
  for (let i = 0; i < config.n_layers; i++) {
    const at = `trf_blocks.${i}`;
    const src = (id: keyof typeof BLOCK_TENSORS) => names.block(i, id);
    type Three = [string, string, string];
    const qkv = (suffix: string) =>
      ["W_query", "W_key", "W_value"].map((p) => `${at}.att.${p}.${suffix}`) as Three;
    rules.push(
      {
        source: src("qkvWeight"),
        shape: names.matrix(d, 3 * d),
        conversion: { kind: "split3-transpose", to: qkv("weight") },
      },
      { source: src("qkvBias"), shape: [3 * d], conversion: { kind: "split3", to: qkv("bias") } },
      transpose(src("projWeight"), names.matrix(d, d), `${at}.att.out_proj.weight`),
      copy(src("projBias"), [d], `${at}.att.out_proj.bias`),
      transpose(src("fcWeight"), names.matrix(d, hidden), `${at}.ff.layers.0.weight`),
      copy(src("fcBias"), [hidden], `${at}.ff.layers.0.bias`),
      transpose(src("fcProjWeight"), names.matrix(hidden, d), `${at}.ff.layers.2.weight`),
      copy(src("fcProjBias"), [d], `${at}.ff.layers.2.bias`),
      copy(src("ln1Scale"), [d], `${at}.norm1.scale`),
      copy(src("ln1Shift"), [d], `${at}.norm1.shift`),
      copy(src("ln2Scale"), [d], `${at}.norm2.scale`),
      copy(src("ln2Shift"), [d], `${at}.norm2.shift`),
    );
  }
  rules.push(
    copy(names.lnfScale, [d], "final_norm.scale"),
    copy(names.lnfShift, [d], "final_norm.shift"),
  );
  return rules;
}

/** Book tensor names and shapes a rule produces (`out_head.weight` follows `tok_emb.weight`). */
function outputShapes(rule: Rule): Array<[string, number[]]> {
  const [rows, cols] = rule.shape.slice(-2);
  const c = rule.conversion;
  switch (c.kind) {
    case "copy": {
      const shape = rule.shape.length === 3 ? rule.shape.slice(1) : [...rule.shape];
      return c.to === "tok_emb.weight"
        ? [[c.to, shape], ["out_head.weight", [...shape]]]
        : [[c.to, shape]];
    }
    case "transpose":
      return [[c.to, [cols, rows]]];
    case "split3-transpose":
      return c.to.map((name) => [name, [cols / 3, rows]]);
    case "split3":
      return c.to.map((name) => [name, [rule.shape[0] / 3]]);
  }
}

function applyRule(rule: Rule, data: Float32Array): Array<[string, NamedTensor]> {
  const shapes = outputShapes(rule);
  const c = rule.conversion;
  const [rows, cols] = rule.shape.slice(-2);
  switch (c.kind) {
    case "copy":
      // The head is tied: both names share one array.
      return shapes.map(([name, shape]) => [name, { shape, data }]);
    case "transpose":
      return [[c.to, { shape: shapes[0][1], data: transposeColumns(data, rows, cols, 0, cols) }]];
    case "split3-transpose": {
      const width = cols / 3;
      return shapes.map(([name, shape], k) => [
        name,
        { shape, data: transposeColumns(data, rows, cols, k * width, width) },
      ]);
    }
    case "split3": {
      const width = data.length / 3;
      return shapes.map(([name, shape], k) => [
        name,
        { shape, data: data.slice(k * width, (k + 1) * width) },
      ]);
    }
  }
}

/**
 * Columns [start, start + count) of a row-major [rows, cols] matrix, transposed into a new
 * row-major [count, rows] matrix. Works in square tiles so both sides stay cache-friendly.
 */
function transposeColumns(
  src: Float32Array,
  rows: number,
  cols: number,
  start: number,
  count: number,
): Float32Array {
  const out = new Float32Array(count * rows);
  const TILE = 32;
  for (let r0 = 0; r0 < rows; r0 += TILE) {
    const r1 = Math.min(r0 + TILE, rows);
    for (let c0 = 0; c0 < count; c0 += TILE) {
      const c1 = Math.min(c0 + TILE, count);
      for (let r = r0; r < r1; r++) {
        const rowBase = r * cols + start;
        for (let c = c0; c < c1; c++) out[c * rows + r] = src[rowBase + c];
      }
    }
  }
  return out;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
