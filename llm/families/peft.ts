/**
 * LoRA adapters in PEFT's format, for the Hugging Face families: what `PeftModel.from_pretrained`
 * (and vLLM, LitGPT's converters) read.
 *
 *   adapter_config.json        r, lora_alpha, target_modules (q_proj, v_proj, ...), lora_dropout,
 *                              base_model_name_or_path, task_type CAUSAL_LM, peft_type LORA, ...
 *   adapter_model.safetensors  base_model.model.<module>.lora_A.weight [r, in]
 *                              base_model.model.<module>.lora_B.weight [out, r]
 *
 * PEFT computes `W + (lora_alpha / r) · B A`; the book's adapter is A [in, r], B [r, out] with
 * `x A B`, so each matrix is transposed on the way out and back. Module names come from the
 * family's weight table (the loader's, read from our side: llm/families/save.ts).
 *
 * A fused HF module (Phi-3's `qkv_proj`, `gate_up_proj`) holds several of our layers. Their
 * adapters become one block-diagonal adapter of that module: A is ours stacked, B has each
 * part's rows in its own column block, with `rank_pattern` / `alpha_pattern` keeping the scale.
 * Read back, every part gets the module's A and its own rows of B: the same products exactly.
 */
import * as tf from "@tensorflow/tfjs";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { deriveSeed, SeededRandom } from "../random.ts";
import { resolveConfig } from "../model/config.ts";
import type { GPTModel, LinearRole } from "../model/gpt.ts";
import type { LinearLayer } from "../model/layers.ts";
import {
  LoraAdapters,
  type LoraAdapters as LoraAdaptersType,
  type LoraConfig,
  LoraLinear,
  type LoraMode,
  loraScale,
} from "../model/lora.ts";
import { type NamedTensor, openSafetensors, writeSafetensorsFile } from "../weights/safetensors.ts";
import type { ModelFamily } from "./family.ts";
import { type HfPlace, hfPlaces } from "./save.ts";

export const PEFT_CONFIG_FILE = "adapter_config.json";
export const PEFT_WEIGHTS_FILE = "adapter_model.safetensors";
/** PEFT's prefix of every tensor of a causal-LM adapter. */
const PREFIX = "base_model.model.";

/** The adapter_config.json fields we write and read (PEFT's LoraConfig). */
export interface PeftAdapterConfig {
  /** Always "LORA". */
  peft_type: "LORA";
  /** Always "CAUSAL_LM" (tensors under `base_model.model.`). */
  task_type: "CAUSAL_LM";
  /** The rank (a fused module's may differ: `rank_pattern`). */
  r: number;
  /** PEFT scales each update by lora_alpha / r. */
  lora_alpha: number;
  /** Dropout on the adapter's input while training. */
  lora_dropout: number;
  /** The HF module names with an adapter, e.g. q_proj, v_proj. */
  target_modules: string[];
  /** The base model (a Hub repository when known). */
  base_model_name_or_path: string | null;
  /** Always "none": no trained biases. */
  bias: "none";
  /** Always false: weights are [out, in] (nn.Linear), not Conv1D's [in, out]. */
  fan_in_fan_out: false;
  /** Written true (an adapter to apply, not to train further by PEFT as it is). */
  inference_mode: boolean;
  /** PEFT's default initialisation (recorded as PEFT writes it). */
  init_lora_weights: boolean;
  /** No fully trained modules. */
  modules_to_save: null;
  /** Module name → rank, where it differs from `r` (fused modules). */
  rank_pattern: Record<string, number>;
  /** Module name → lora_alpha, where it differs (fused modules keep alpha / r). */
  alpha_pattern: Record<string, number>;
  /** Always false: the scale is lora_alpha / r, not / √r. */
  use_rslora: false;
  /** Always false: plain LoRA. */
  use_dora: false;
  /** No revision of the base recorded. */
  revision: null;
}

/** Whether `dir` holds a PEFT adapter (adapter_config.json). */
export function isPeftAdapterFolder(dir: string): boolean {
  return existsSync(join(dir, PEFT_CONFIG_FILE));
}

/** The HF module of our layer `name` (its `.weight` tensor's place), e.g. `model.layers.0.mlp.up_proj`. */
function moduleOf(places: Map<string, HfPlace>, name: string, family: ModelFamily): HfPlace {
  const place = places.get(`${name}.weight`);
  if (!place) throw new Error(`no ${family.name} (Hugging Face) module for our layer "${name}"`);
  return place;
}

const moduleName = (place: HfPlace) => place.hf.replace(/\.weight$/, "");
const shortName = (module: string) => module.slice(module.lastIndexOf(".") + 1);

/** A [rows, cols] row-major matrix transposed. */
function transpose(data: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(data.length);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) out[c * rows + r] = data[r * cols + c];
  }
  return out;
}

/**
 * Writes `adapters` (trained on `model`, a model of `family`) into `dir` in PEFT's format.
 * `baseModel` is the base's name (a Hub repository when known), checked when it is applied.
 */
export async function savePeftAdapter(
  dir: string,
  model: GPTModel,
  adapters: LoraAdaptersType,
  family: ModelFamily,
  baseModel: string,
): Promise<void> {
  const places = hfPlaces(family, resolveConfig(model.config).n_layers);
  const scale = loraScale(adapters.config);
  const rank = adapters.config.rank;
  // Our adapter layers grouped by the HF module that holds them.
  const modules = new Map<string, { place: HfPlace; layers: [string, LoraLinear][] }>();
  for (const [name, layer] of adapters.layers) {
    const place = moduleOf(places, name, family);
    const key = moduleName(place);
    if (!modules.has(key)) modules.set(key, { place, layers: [] });
    modules.get(key)!.layers.push([name, layer]);
  }
  const tensors = new Map<string, NamedTensor>();
  const rankPattern: Record<string, number> = {};
  const alphaPattern: Record<string, number> = {};
  for (const [module, { place, layers }] of modules) {
    const inFeatures = layers[0][1].inFeatures;
    const parts = place.parts.map((part) => part.replace(/\.weight$/, ""));
    const outs = parts.map((part) => {
      const found = [...model.linearLayers()].find((l) => l.name === part);
      if (!found) throw new Error(`internal: the model has no layer "${part}" of "${module}"`);
      return found.layer.outFeatures;
    });
    const totalOut = outs.reduce((a, b) => a + b, 0);
    const moduleRank = rank * layers.length;
    // A: the parts' Aᵀ stacked [k·r, in]; B: [out, k·r], part j's Bᵀ in its rows and column block j.
    const a = new Float32Array(moduleRank * inFeatures);
    const b = new Float32Array(totalOut * moduleRank);
    for (const [k, [name, layer]] of layers.entries()) {
      const aT = transpose(await layer.A.data() as Float32Array, inFeatures, rank);
      a.set(aT, k * rank * inFeatures);
      const j = parts.indexOf(name);
      const rowStart = outs.slice(0, j).reduce((x, y) => x + y, 0);
      const bT = transpose(await layer.B.data() as Float32Array, rank, outs[j]);
      for (let row = 0; row < outs[j]; row++) {
        b.set(bT.subarray(row * rank, (row + 1) * rank), (rowStart + row) * moduleRank + k * rank);
      }
    }
    tensors.set(`${PREFIX}${module}.lora_A.weight`, { shape: [moduleRank, inFeatures], data: a });
    tensors.set(`${PREFIX}${module}.lora_B.weight`, { shape: [totalOut, moduleRank], data: b });
    if (moduleRank !== rank) {
      rankPattern[shortName(module)] = moduleRank;
      alphaPattern[shortName(module)] = scale * moduleRank;
    }
  }
  await Deno.mkdir(dir, { recursive: true });
  await writeSafetensorsFile(join(dir, PEFT_WEIGHTS_FILE), tensors, { format: "pt" });
  const config: PeftAdapterConfig = {
    peft_type: "LORA",
    task_type: "CAUSAL_LM",
    r: rank,
    // PEFT scales by lora_alpha / r: the book's "alpha" scaling is alpha·r over r.
    lora_alpha: scale * rank,
    lora_dropout: adapters.config.dropout,
    target_modules: [...new Set([...modules.keys()].map(shortName))].sort(),
    base_model_name_or_path: baseModel,
    bias: "none",
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    modules_to_save: null,
    rank_pattern: rankPattern,
    alpha_pattern: alphaPattern,
    use_rslora: false,
    use_dora: false,
    revision: null,
  };
  const path = join(dir, PEFT_CONFIG_FILE);
  const temp = `${path}.${crypto.randomUUID()}.tmp`;
  await Deno.writeTextFile(temp, JSON.stringify(config, null, 2) + "\n");
  await Deno.rename(temp, path);
}

/** Reads and checks adapter_config.json: a LoRA adapter whose math we implement. */
export async function readPeftConfig(dir: string): Promise<PeftAdapterConfig> {
  const path = join(dir, PEFT_CONFIG_FILE);
  let parsed: Record<string, unknown>;
  try {
    parsed = JSON.parse(await Deno.readTextFile(path));
  } catch (error) {
    throw new Error(`${path}: cannot read the adapter config: ${(error as Error).message}`);
  }
  const fail = (why: string): never => {
    throw new Error(`${path}: ${why}`);
  };
  if (typeof parsed !== "object" || parsed === null) fail("expected a JSON object");
  if (parsed.peft_type !== undefined && parsed.peft_type !== "LORA") {
    fail(`peft_type ${JSON.stringify(parsed.peft_type)}: only LORA adapters are supported`);
  }
  if (!(Number.isInteger(parsed.r) && (parsed.r as number) >= 1)) {
    fail(`"r" must be an integer ≥ 1, got ${JSON.stringify(parsed.r)}`);
  }
  if (typeof parsed.lora_alpha !== "number") {
    fail(`"lora_alpha" must be a number, got ${JSON.stringify(parsed.lora_alpha)}`);
  }
  for (
    const [key, unsupported] of [
      ["fan_in_fan_out", true],
      ["use_rslora", true],
      ["use_dora", true],
    ] as const
  ) {
    if (parsed[key] === unsupported) fail(`${key}: ${unsupported} is not supported`);
  }
  if (parsed.bias !== undefined && parsed.bias !== "none") {
    fail(`bias ${JSON.stringify(parsed.bias)}: only "none" is supported (no trained biases)`);
  }
  if (Array.isArray(parsed.modules_to_save) && parsed.modules_to_save.length > 0) {
    fail(`modules_to_save ${JSON.stringify(parsed.modules_to_save)} is not supported`);
  }
  return parsed as unknown as PeftAdapterConfig;
}

/** PEFT's pattern lookup: a key matches a module name ending in `.key` (or equal to it). */
function patternValue(
  pattern: Record<string, number> | undefined,
  module: string,
): number | undefined {
  for (const [key, value] of Object.entries(pattern ?? {})) {
    if (new RegExp(`(^|\\.)${key}$`).test(module)) return value;
  }
  return undefined;
}

/** Who a base model is, for messages: its name (Hub repository) and folder. */
export interface BaseModelIdentity {
  /** The repository or name it is known by; undefined when unknown (then shapes decide). */
  name?: string;
  /** Its folder (for messages). */
  dir: string;
}

/**
 * Wraps `model` (a model of `family`) with the PEFT adapter in `dir`, refusing an adapter made
 * for another base: a different `base_model_name_or_path` (when both names are known), a module
 * the model lacks, or a tensor whose shape does not fit, each named with both models.
 */
export async function loadPeftAdapter(
  dir: string,
  model: GPTModel,
  family: ModelFamily,
  base: BaseModelIdentity,
): Promise<LoraAdaptersType> {
  const config = await readPeftConfig(dir);
  const adapterBase = config.base_model_name_or_path ?? undefined;
  const both = `the adapter in ${dir} was made for ${adapterBase ?? "an unnamed base"}, the ` +
    `base model is ${base.name ?? "unnamed"} (${base.dir})`;
  if (adapterBase && base.name && adapterBase !== base.name) {
    throw new Error(`${both}: the names differ`);
  }
  const path = join(dir, PEFT_WEIGHTS_FILE);
  await using reader = await openSafetensors(path);
  const modules = new Map<string, { a?: string; b?: string }>();
  for (const name of reader.header.tensors.keys()) {
    const match = /^base_model\.model\.(.+)\.lora_([AB])\.weight$/.exec(name);
    if (!match) {
      throw new Error(`${path}: tensor "${name}" is not a LoRA matrix (lora_A / lora_B weight)`);
    }
    const entry = modules.get(match[1]) ?? {};
    entry[match[2] === "A" ? "a" : "b"] = name;
    modules.set(match[1], entry);
  }
  if (modules.size === 0) throw new Error(`${path}: no LoRA tensors`);
  const places = hfPlaces(family, resolveConfig(model.config).n_layers);
  const byHf = new Map<string, HfPlace>([...places.values()].map((p) => [p.hf, p]));
  const linears = new Map(model.linearLayers().map((l) => [l.name, l]));
  const mode: LoraMode = {
    training: false,
    rng: new SeededRandom(deriveSeed(123, "lora-dropout")),
  };
  const initRng = new SeededRandom(deriveSeed(123, "lora-init"));
  // Everything is read and checked before the model is touched.
  const planned = new Map<
    string,
    { rank: number; scale: number; a: Float32Array; b: Float32Array }
  >();
  const roles = new Set<LinearRole>();
  for (const [module, { a, b }] of modules) {
    if (!a || !b) {
      throw new Error(
        `${path}: module "${module}" has lora_${a ? "A" : "B"} but not lora_${a ? "B" : "A"}`,
      );
    }
    const place = byHf.get(`${module}.weight`);
    const parts = place?.parts.map((p) => p.replace(/\.weight$/, "")) ?? [];
    if (!place || parts.some((p) => !linears.has(p))) {
      throw new Error(
        `${both}: the adapter has module "${module}", the ${family.name} model has no such linear layer`,
      );
    }
    const layers = parts.map((p) => linears.get(p)!);
    const [rank, inFeatures] = reader.header.tensors.get(a)!.shape;
    const [outFeatures, rankB] = reader.header.tensors.get(b)!.shape;
    const wantOut = layers.reduce((n, l) => n + l.layer.outFeatures, 0);
    const wantIn = layers[0].layer.inFeatures;
    if (inFeatures !== wantIn || outFeatures !== wantOut || rankB !== rank) {
      throw new Error(
        `${both}: "${module}" is [out ${outFeatures}, in ${inFeatures}] (rank ${rank}/${rankB}) ` +
          `in the adapter, [out ${wantOut}, in ${wantIn}] in the base model`,
      );
    }
    const alpha = patternValue(config.alpha_pattern, module) ?? config.lora_alpha;
    const aData = (await reader.read(a)).data;
    const bData = (await reader.read(b)).data;
    let rowStart = 0;
    for (const { name, layer, role } of layers) {
      const rows = bData.subarray(rowStart * rank, (rowStart + layer.outFeatures) * rank);
      rowStart += layer.outFeatures;
      roles.add(role);
      planned.set(name, {
        rank,
        scale: alpha / rank,
        a: transpose(aData, rank, inFeatures), // [in, rank]
        b: transpose(rows, layer.outFeatures, rank), // [rank, out]
      });
    }
  }
  model.freeze();
  const wrapped = new Map<string, LoraLinear>();
  model.replaceLinears((name: string, layer: LinearLayer) => {
    const plan = planned.get(name);
    if (!plan) return layer;
    const lora = new LoraLinear(layer, plan.rank, plan.scale, 0, mode, initRng);
    lora.A.assign(tf.tensor2d(plan.a, [layer.inFeatures, plan.rank]));
    lora.B.assign(tf.tensor2d(plan.b, [plan.rank, layer.outFeatures]));
    wrapped.set(name, lora);
    return lora;
  });
  const loraConfig: LoraConfig = {
    rank: config.r,
    alpha: config.lora_alpha,
    targets: [...roles],
    dropout: config.lora_dropout ?? 0,
    scaling: "alpha/rank",
  };
  return new LoraAdapters(loraConfig, wrapped, mode);
}
