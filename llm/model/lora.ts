/**
 * LoRA, as the book's appendix E (`LoRALayer`, `LinearWithLoRA`, `replace_linear_with_lora`):
 * every selected linear layer computes `x Wᵀ + b + s·(x A) B` with A [in, rank] drawn by
 * `kaiming_uniform_(a=√5)`, B [rank, out] zeros and s = alpha / rank (or alpha alone, the
 * chapter 7 exercise 7.4 code). The base weights are frozen and their products' weight
 * gradients are never computed (see `frozenLinear`).
 *
 * Parameter names follow the book's wrapped model: `trf_blocks.0.att.W_query.lora.A` / `.lora.B`;
 * the base keeps its state_dict name (`trf_blocks.0.att.W_query.weight`), so a merged model
 * (`mergeLora`) has exactly the book's GPTModel state_dict.
 */
import * as tf from "@tensorflow/tfjs";
import { join } from "node:path";
import { deriveSeed, SeededRandom } from "../random.ts";
import { type NamedTensor, openSafetensors, writeSafetensorsFile } from "../weights/safetensors.ts";
import { type GPTConfig, resolveConfig } from "./config.ts";
import { GPTModel, type LinearRole } from "./gpt.ts";
import { linearInitBound, uniform } from "./init.ts";
import {
  dropout,
  Linear,
  type LinearLayer,
  type NamedParameter,
  newVariable,
  prefixed,
} from "./layers.ts";
import { ShardedLinear } from "./sharded.ts";
import { loraKernelsActive, loraLinear } from "../engine/lora_kernels.ts";
import { getStateDict, loadStateDict } from "./weights_io.ts";

/** LitGPT's switches `lora_query`, `lora_key`, `lora_value`, `lora_projection`, `lora_mlp`, `lora_head`. */
export const LORA_TARGETS = ["query", "key", "value", "projection", "mlp", "head"] as const;
export type LoraTarget = typeof LORA_TARGETS[number];

/** Every linear layer role of the model (llm/model/gpt.ts), each a target on its own. */
export const LINEAR_ROLES: readonly LinearRole[] = [
  "q",
  "k",
  "v",
  "o",
  "gate",
  "up",
  "down",
  "fc",
  "proj",
  "head",
];

/**
 * What `targets` may name: a LitGPT switch (`mlp` covers gate, up and down, or fc and proj) or
 * one layer role (`q`, `v`, `gate`, ...).
 */
export type LoraTargetName = LoraTarget | LinearRole;

/** Every name `targets` accepts, switches first. */
export const LORA_TARGET_NAMES: readonly LoraTargetName[] = [...LORA_TARGETS, ...LINEAR_ROLES];

/** Named LoRA settings: the book's exercise 7.4 and `litgpt finetune_lora`'s defaults. */
export const LORA_PRESETS = {
  /** Rank 16, alpha 16 on every linear layer and the head, no dropout (appendix E, ex. 7.4). */
  book: { rank: 16, alpha: 16, dropout: 0, targets: [...LORA_TARGETS] as LoraTargetName[] },
  /** LitGPT's `finetune_lora`: rank 8, alpha 16, dropout 0.05 on the query and value only. */
  litgpt: { rank: 8, alpha: 16, dropout: 0.05, targets: ["query", "value"] as LoraTargetName[] },
} as const;
export type LoraPreset = keyof typeof LORA_PRESETS;

export interface LoraConfig {
  rank: number;
  alpha: number;
  /** Which linear layers get an adapter: LitGPT switches and/or layer roles. */
  targets: LoraTargetName[];
  /** Dropout on the adapter's input (LitGPT's `lora_dropout`); the book has none. */
  dropout: number;
  /** "alpha/rank": appendix E; "alpha": the chapter 7 exercise 7.4 code (same when rank = alpha). */
  scaling: "alpha/rank" | "alpha";
}

/** The book's exercise 7.4: rank 16, alpha 16, every linear layer including the head, no dropout. */
export const DEFAULT_LORA_CONFIG: Readonly<LoraConfig> = {
  rank: 16,
  alpha: 16,
  targets: [...LORA_TARGETS],
  dropout: 0,
  scaling: "alpha/rank",
};

/** Fills in defaults and checks every field (errors name the field and what was expected). */
export function loraConfig(options: Partial<LoraConfig> = {}, source = "LoRA config"): LoraConfig {
  // Only the known fields (a parsed adapter.json holds more).
  const config: LoraConfig = {
    rank: options.rank ?? DEFAULT_LORA_CONFIG.rank,
    alpha: options.alpha ?? DEFAULT_LORA_CONFIG.alpha,
    targets: options.targets ?? [...LORA_TARGETS],
    dropout: options.dropout ?? DEFAULT_LORA_CONFIG.dropout,
    scaling: options.scaling ?? DEFAULT_LORA_CONFIG.scaling,
  };
  const fail = (why: string) => {
    throw new Error(`${source}: ${why}`);
  };
  if (!Number.isInteger(config.rank) || config.rank < 1) {
    fail(`rank must be an integer ≥ 1, got ${config.rank}`);
  }
  if (!(typeof config.alpha === "number" && Number.isFinite(config.alpha))) {
    fail(`alpha must be a number, got ${config.alpha}`);
  }
  if (!(config.dropout >= 0 && config.dropout < 1)) {
    fail(`dropout must be in [0, 1), got ${config.dropout}`);
  }
  if (config.scaling !== "alpha/rank" && config.scaling !== "alpha") {
    fail(`scaling must be "alpha/rank" or "alpha", got ${JSON.stringify(config.scaling)}`);
  }
  if (!Array.isArray(config.targets) || config.targets.length === 0) {
    fail("targets must list at least one layer kind");
  }
  for (const target of config.targets) {
    if (!LORA_TARGET_NAMES.includes(target)) {
      fail(
        `unknown target ${JSON.stringify(target)} (expected one of ${
          LORA_TARGET_NAMES.join(", ")
        })`,
      );
    }
  }
  config.targets = LORA_TARGET_NAMES.filter((t) => config.targets.includes(t));
  return config;
}

/** Whether `targets` put an adapter on a linear layer of `role` (by its switch or its role). */
export function targetsRole(targets: readonly LoraTargetName[], role: LinearRole): boolean {
  return targets.includes(role) || targets.includes(loraTargetOfRole(role));
}

/** The factor on `(x A) B`. */
export function loraScale(config: LoraConfig): number {
  return config.scaling === "alpha" ? config.alpha : config.alpha / config.rank;
}

/** Which switch covers a linear layer of each role. */
const TARGET_OF_ROLE: Record<LinearRole, LoraTarget> = {
  q: "query",
  k: "key",
  v: "value",
  o: "projection",
  gate: "mlp",
  up: "mlp",
  down: "mlp",
  fc: "mlp",
  proj: "mlp",
  head: "head",
};

/** The LoRA switch that covers a linear layer of `role`. */
export function loraTargetOfRole(role: LinearRole): LoraTarget {
  return TARGET_OF_ROLE[role];
}

/** Which switch covers a linear layer, from its state_dict prefix (null: not a LoRA candidate). */
export function loraTargetOf(layerName: string): LoraTarget | null {
  if (layerName === "out_head") return "head";
  const match = /\.(W_query|W_key|W_value|out_proj|ff\.layers\.[02]|ff\.fc[123])$/.exec(layerName);
  if (!match) return null;
  const kinds: Record<string, LoraTarget> = {
    W_query: "query",
    W_key: "key",
    W_value: "value",
    out_proj: "projection",
  };
  return kinds[match[1]] ?? "mlp";
}

/**
 * The linear layers of the model `config` describes, with their sizes and roles, in the model's
 * order: what `replaceLinears` visits, computed without building the model.
 */
export function linearLayerShapes(
  config: GPTConfig,
): { name: string; role: LinearRole; inFeatures: number; outFeatures: number }[] {
  const c = resolveConfig(config);
  const d = c.emb_dim;
  const q = c.n_heads * c.head_dim;
  const kv = c.n_kv_groups * c.head_dim;
  const h = c.hidden_dim;
  const layers = [];
  for (let i = 0; i < c.n_layers; i++) {
    const at = `trf_blocks.${i}`;
    layers.push({ name: `${at}.att.W_query`, role: "q" as const, inFeatures: d, outFeatures: q });
    layers.push({ name: `${at}.att.W_key`, role: "k" as const, inFeatures: d, outFeatures: kv });
    layers.push({ name: `${at}.att.W_value`, role: "v" as const, inFeatures: d, outFeatures: kv });
    layers.push({ name: `${at}.att.out_proj`, role: "o" as const, inFeatures: q, outFeatures: d });
    if (c.mlp === "gelu") {
      layers.push({
        name: `${at}.ff.layers.0`,
        role: "fc" as const,
        inFeatures: d,
        outFeatures: h,
      });
      layers.push({
        name: `${at}.ff.layers.2`,
        role: "proj" as const,
        inFeatures: h,
        outFeatures: d,
      });
    } else {
      layers.push({ name: `${at}.ff.fc1`, role: "gate" as const, inFeatures: d, outFeatures: h });
      layers.push({ name: `${at}.ff.fc2`, role: "up" as const, inFeatures: d, outFeatures: h });
      layers.push({ name: `${at}.ff.fc3`, role: "down" as const, inFeatures: h, outFeatures: d });
    }
  }
  layers.push({
    name: "out_head",
    role: "head" as const,
    inFeatures: d,
    outFeatures: c.vocab_size,
  });
  return layers;
}

/** The adapters' parameter names and shapes for `config`: `<layer>.lora.A` [in, r], `.lora.B` [r, out]. */
export function loraParameterShapes(
  config: GPTConfig,
  lora: LoraConfig,
): { name: string; shape: [number, number] }[] {
  return linearLayerShapes(config)
    .filter(({ role }) => targetsRole(lora.targets, role))
    .flatMap(({ name, inFeatures, outFeatures }) => [
      { name: `${name}.lora.A`, shape: [inFeatures, lora.rank] as [number, number] },
      { name: `${name}.lora.B`, shape: [lora.rank, outFeatures] as [number, number] },
    ]);
}

/** Trainable scalars LoRA adds (the book: 3,470,608 for 124M, 7,898,384 for 355M). */
export function countLoraParameters(config: GPTConfig, lora: LoraConfig): number {
  return loraParameterShapes(config, lora).reduce((n, { shape }) => n + shape[0] * shape[1], 0);
}

/**
 * `x Wᵀ + b` for a frozen W and b whose only recorded input is x: the backward pass computes
 * `dy W` and nothing else. tfjs prunes gradient closures of inputs that do not depend on the
 * variables being differentiated (tape.ts `getFilteredNodesXToY`), but `tf.fused.matMul` is a
 * customGrad whose gradient function computes dW (and db) eagerly alongside dx, so a plain
 * frozen Linear would still pay one weight-gradient product per layer.
 */
function frozenLinear(x2d: tf.Tensor2D, weight: tf.Tensor2D, bias: tf.Tensor | null): tf.Tensor2D {
  const op = tf.customGrad(
    ((x: tf.Tensor2D, _save: tf.GradSaveFunc) => ({
      value: tf.fused.matMul({ a: x, b: weight, transposeB: true, bias: bias ?? undefined }),
      gradFunc: (dy: tf.Tensor2D) => tf.matMul(dy, weight),
    })) as unknown as Parameters<typeof tf.customGrad>[0],
  ) as (x: tf.Tensor2D) => tf.Tensor2D;
  return op(x2d);
}

/** A frozen layer's output [rows, out], without weight-gradient products where it knows how. */
function frozenApply(base: LinearLayer, x2d: tf.Tensor2D, outFeatures: number): tf.Tensor2D {
  const frozen = (layer: Linear) => frozenLinear(x2d, layer.weight as tf.Tensor2D, layer.bias);
  if (base instanceof Linear) return frozen(base);
  if (base instanceof ShardedLinear) {
    const parts = base.shards.map(frozen);
    const y = parts.length === 1 ? parts[0] : tf.concat(parts, -1);
    return base.bias ? tf.add(y, base.bias) : y;
  }
  // Any other layer keeps its own product: still correct, not as lean.
  return tf.reshape(base.apply(x2d), [-1, outFeatures]) as tf.Tensor2D;
}

/** Shared by all adapters of a model: dropout mode and its RNG. */
export interface LoraMode {
  /** Adapter dropout is active only while true (set by `LoraAdapters.train`). */
  training: boolean;
  rng: SeededRandom;
}

/** The book's `LinearWithLoRA`: the frozen layer plus `scale · (x A) B`. */
export class LoraLinear implements LinearLayer {
  readonly A: tf.Variable;
  readonly B: tf.Variable;
  readonly inFeatures: number;
  readonly outFeatures: number;

  constructor(
    readonly base: LinearLayer,
    readonly rank: number,
    readonly scale: number,
    readonly dropoutRate: number,
    readonly mode: LoraMode,
    initRng: SeededRandom,
  ) {
    this.inFeatures = base.inFeatures;
    this.outFeatures = base.outFeatures;
    // torch.nn.init.kaiming_uniform_(A, a=√5) on A [in, rank]: torch takes fan_in = size(1) = rank,
    // so the bound is gain·√(3 / fan_in) = √(1/3)·√(3/rank) = 1/√rank.
    this.A = newVariable(
      [this.inFeatures, rank],
      uniform(this.inFeatures * rank, linearInitBound(rank), initRng),
    );
    this.B = newVariable([rank, this.outFeatures], "zeros");
  }

  apply(x: tf.Tensor): tf.Tensor {
    const leading = x.shape.slice(0, -1);
    const x2d = tf.reshape(x, [-1, this.inFeatures]) as tf.Tensor2D;
    if (this.base instanceof Linear && loraKernelsActive()) {
      // One kernel forward and one backward on BLAS: the update accumulates into the frozen
      // product's buffer, with no [rows, out] temporaries (llm/engine/lora_kernels.ts).
      const adapterInput = dropout(x2d, this.dropoutRate, this.mode);
      const y = loraLinear(
        x2d,
        this.base.weight as tf.Tensor2D,
        this.base.bias,
        this.A as tf.Tensor2D,
        this.B as tf.Tensor2D,
        this.scale,
        adapterInput === x2d ? undefined : adapterInput as tf.Tensor2D,
      );
      return tf.reshape(y, [...leading, this.outFeatures]);
    }
    const base = frozenApply(this.base, x2d, this.outFeatures);
    const adapterInput = dropout(x2d, this.dropoutRate, this.mode);
    // The scale goes on the small [rows, rank] product rather than on [rows, out] (the book
    // scales x A B): the same value up to rounding, without two passes over a head-sized tensor.
    const down = tf.mul(tf.matMul(adapterInput, this.A as tf.Tensor2D), this.scale);
    const y = tf.add(base, tf.matMul(down as tf.Tensor2D, this.B as tf.Tensor2D));
    return tf.reshape(y, [...leading, this.outFeatures]);
  }

  /** The base's parameters under their own names, then `lora.A` and `lora.B`. */
  namedParameters(prefix: string): NamedParameter[] {
    return [
      ...this.base.namedParameters(prefix),
      [prefixed(prefix, "lora.A"), this.A],
      [prefixed(prefix, "lora.B"), this.B],
    ];
  }

  /** `scale · (A B)ᵀ`, [out, in]: what merging adds to the base weight. */
  delta(): tf.Tensor2D {
    return tf.tidy(() =>
      tf.mul(tf.matMul(this.B as tf.Tensor2D, this.A as tf.Tensor2D, true, true), this.scale)
    );
  }
}

/** The adapters of one model: their config, layers by name, and their parameters. */
export class LoraAdapters {
  constructor(
    readonly config: LoraConfig,
    readonly layers: ReadonlyMap<string, LoraLinear>,
    readonly mode: LoraMode,
  ) {}

  /** Adapter dropout on (training) or off (evaluation, generation). */
  train(on: boolean): void {
    this.mode.training = on;
  }

  /** `<layer>.lora.A` / `.lora.B` pairs in the model's order: what the optimizer updates. */
  parameters(): NamedParameter[] {
    return [...this.layers].flatMap(([name, layer]) => [
      [`${name}.lora.A`, layer.A] as NamedParameter,
      [`${name}.lora.B`, layer.B] as NamedParameter,
    ]);
  }

  numParameters(): number {
    return this.parameters().reduce((n, [, v]) => n + v.size, 0);
  }
}

export interface ApplyLoraOptions {
  /** Seed of A's initial values and of the adapter dropout. Default 123. */
  seed?: number;
}

/**
 * The book's `replace_linear_with_lora` after freezing the model: every base parameter is frozen
 * and each selected linear layer is wrapped in place. Afterwards `model.trainableParameters()`
 * lists exactly the adapters' A and B.
 */
export function applyLora(
  model: GPTModel,
  options: Partial<LoraConfig> = {},
  applyOptions: ApplyLoraOptions = {},
): LoraAdapters {
  const config = loraConfig(options);
  if (model.namedParameters().some(([name]) => name.includes(".lora."))) {
    throw new Error("applyLora: the model already has LoRA adapters");
  }
  const seed = applyOptions.seed ?? 123;
  const initRng = new SeededRandom(deriveSeed(seed, "lora-init"));
  const mode: LoraMode = {
    training: false,
    rng: new SeededRandom(deriveSeed(seed, "lora-dropout")),
  };
  const layers = new Map<string, LoraLinear>();
  const scale = loraScale(config);
  // Every targeted layer is checked before any is wrapped: a rank above a layer's width is a
  // mistake (the update can have at most that rank), and nothing is half applied.
  const targeted = model.linearLayers().filter(({ role }) => targetsRole(config.targets, role));
  if (targeted.length === 0) {
    throw new Error(
      `applyLora: targets ${config.targets.join(", ")} select no linear layer of this model ` +
        `(its roles: ${[...new Set(model.linearLayers().map((l) => l.role))].join(", ")})`,
    );
  }
  for (const { name, layer } of targeted) {
    const width = Math.min(layer.inFeatures, layer.outFeatures);
    if (config.rank > width) {
      throw new Error(
        `applyLora: rank ${config.rank} is larger than layer "${name}" allows ` +
          `([${layer.outFeatures}, ${layer.inFeatures}]: at most rank ${width}); use rank ≤ ${width}`,
      );
    }
  }
  model.freeze();
  model.replaceLinears((name, layer, role) => {
    if (!targetsRole(config.targets, role)) return layer;
    const wrapped = new LoraLinear(layer, config.rank, scale, config.dropout, mode, initRng);
    layers.set(name, wrapped);
    return wrapped;
  });
  return new LoraAdapters(config, layers, mode);
}

/**
 * The model's state_dict with every adapter folded in: `W + s·(A B)ᵀ` under the base weight's
 * book name, no `lora.*` entries. A tied head that has an adapter gets its own `out_head.weight`.
 */
export async function mergedStateDict(
  model: GPTModel,
  adapters: LoraAdapters,
): Promise<Map<string, NamedTensor>> {
  const all = await getStateDict(model);
  const merged = new Map([...all].filter(([name]) => !name.includes(".lora.")));
  for (const [name, layer] of adapters.layers) {
    const weightName = `${name}.weight`;
    const base = merged.get(weightName);
    if (!base) throw new Error(`mergedStateDict: no "${weightName}" in the model`);
    const delta = layer.delta();
    const values = delta.dataSync() as Float32Array;
    delta.dispose();
    const data = new Float32Array(base.data.length);
    for (let i = 0; i < data.length; i++) data[i] = base.data[i] + values[i];
    merged.set(weightName, { shape: base.shape, data });
  }
  if (model.tiedHead && !merged.has("out_head.weight")) {
    merged.set("out_head.weight", all.get("tok_emb.weight")!);
  }
  return merged;
}

/**
 * A new plain GPTModel holding the merged weights, which `saveModel` writes like any model (and
 * generate, chat, evaluate and the book's GPTModel load). Tied only if the base was tied and the
 * head has no adapter.
 */
export async function mergeLora(model: GPTModel, adapters: LoraAdapters): Promise<GPTModel> {
  const tiedHead = model.tiedHead && !adapters.layers.has("out_head");
  const tensors = await mergedStateDict(model, adapters);
  const merged = new GPTModel(model.config, {
    init: "zeros",
    tiedHead,
    maxTensorBytes: model.maxTensorBytes,
  });
  try {
    loadStateDict(merged, tensors, "merged LoRA model");
  } catch (error) {
    merged.dispose();
    throw error;
  }
  return merged;
}

/**
 * Folds every adapter whose base is a plain Linear into its weight (`W += s·(A B)ᵀ`) and puts
 * the base back in the wrapper's place, freeing A and B: the model then runs at the base's
 * speed, with no second copy of its weights (what `mergeLora` would cost). Adapters on other
 * layers (a head tied to the embedding, a vocabulary-sharded head) stay as they are: the same
 * outputs, computed unmerged. Returns how many were merged.
 */
export function mergeLoraInPlace(model: GPTModel, adapters: LoraAdapters): number {
  let merged = 0;
  model.replaceLinears((name, layer) => {
    if (!(layer instanceof LoraLinear) || !(layer.base instanceof Linear)) return layer;
    // A tied head's weight is the embedding's: folding the update in would change both.
    if (name === "out_head" && model.tiedHead) return layer;
    const weight = layer.base.weight;
    const delta = layer.delta();
    weight.assign(tf.add(weight, delta) as tf.Tensor2D);
    delta.dispose();
    layer.A.dispose();
    layer.B.dispose();
    merged++;
    return layer.base;
  });
  (adapters.layers as Map<string, LoraLinear>).forEach((layer, name, layers) => {
    if (layer.A.isDisposed) layers.delete(name);
  });
  return merged;
}

export const ADAPTER_WEIGHTS_FILE = "adapter.safetensors";
export const ADAPTER_CONFIG_FILE = "adapter.json";

/** What `adapter.json` holds. */
export interface AdapterManifest extends LoraConfig {
  format: "groundup-lora-1";
  /** The model the adapter was trained on (e.g. an artifact id or "gpt2-medium"). */
  baseModel: string;
  /** The base model's config, checked when the adapter is loaded. */
  modelConfig: GPTConfig;
}

/** Writes `adapter.safetensors` (the `lora.A` / `lora.B` tensors) and `adapter.json`, atomically. */
export async function saveAdapter(
  dir: string,
  model: GPTModel,
  adapters: LoraAdapters,
  baseModel: string,
): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  const tensors = new Map<string, NamedTensor>();
  for (const [name, variable] of adapters.parameters()) {
    tensors.set(name, {
      shape: [...variable.shape],
      data: (await variable.data()) as Float32Array,
    });
  }
  await writeSafetensorsFile(join(dir, ADAPTER_WEIGHTS_FILE), tensors, { format: "pt" });
  const manifest: AdapterManifest = {
    format: "groundup-lora-1",
    ...adapters.config,
    baseModel,
    modelConfig: model.config,
  };
  const path = join(dir, ADAPTER_CONFIG_FILE);
  const temp = `${path}.${crypto.randomUUID()}.tmp`;
  await Deno.writeTextFile(temp, JSON.stringify(manifest, null, 2) + "\n");
  await Deno.rename(temp, path);
}

/** Reads and checks `adapter.json`. */
export async function readAdapterManifest(dir: string): Promise<AdapterManifest> {
  const path = join(dir, ADAPTER_CONFIG_FILE);
  let parsed: Record<string, unknown>;
  try {
    parsed = JSON.parse(await Deno.readTextFile(path));
  } catch (error) {
    throw new Error(`${path}: cannot read the adapter config: ${(error as Error).message}`);
  }
  if (parsed?.format !== "groundup-lora-1") {
    throw new Error(
      `${path}: "format" is ${JSON.stringify(parsed?.format)}, expected "groundup-lora-1"`,
    );
  }
  const config = loraConfig(parsed as Partial<LoraConfig>, path);
  if (typeof parsed.baseModel !== "string") {
    throw new Error(`${path}: "baseModel" must be a string`);
  }
  return {
    format: "groundup-lora-1",
    ...config,
    baseModel: parsed.baseModel,
    modelConfig: parsed.modelConfig as GPTConfig,
  };
}

/**
 * Wraps `model` with the adapter saved in `dir` (A and B as saved). The model's config must be
 * the one the adapter was trained on; every tensor must be present with its shape.
 */
export async function loadAdapter(dir: string, model: GPTModel): Promise<LoraAdapters> {
  const manifest = await readAdapterManifest(dir);
  for (const [key, want] of Object.entries(manifest.modelConfig ?? {})) {
    const got = model.config[key as keyof GPTConfig];
    // JSON text compares the nested keys (rope_scaling, layer_types) by value.
    if (JSON.stringify(got) !== JSON.stringify(want)) {
      throw new Error(
        `${join(dir, ADAPTER_CONFIG_FILE)}: the adapter was trained on a model with ${key} ` +
          `${JSON.stringify(want)}, this model has ${JSON.stringify(got)}`,
      );
    }
  }
  const { format: _f, baseModel: _b, modelConfig: _m, ...config } = manifest;
  const path = join(dir, ADAPTER_WEIGHTS_FILE);
  await using reader = await openSafetensors(path);
  const adapters = applyLora(model, config);
  const expected = adapters.parameters();
  const names = new Set(expected.map(([name]) => name));
  const unknown = [...reader.header.tensors.keys()].filter((n) => !names.has(n));
  if (unknown.length > 0) throw new Error(`${path}: unknown tensor(s) ${unknown.join(", ")}`);
  for (const [name, variable] of expected) {
    const info = reader.header.tensors.get(name);
    if (!info) throw new Error(`${path}: missing tensor "${name}"`);
    if (info.shape.join() !== variable.shape.join()) {
      throw new Error(`${path}: "${name}" has shape [${info.shape}], expected [${variable.shape}]`);
    }
    const { data } = await reader.read(name);
    variable.assign(tf.tensor(data, variable.shape, "float32"));
  }
  return adapters;
}
