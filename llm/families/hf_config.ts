/**
 * Reading a Hugging Face `config.json`: typed lookups that name the file and the key when a
 * value is missing or of the wrong kind, and the facts that come in two layouts.
 *
 * transformers before v5 writes RoPE as `rope_theta` + `rope_scaling` and the weights' type as
 * `torch_dtype`; v5 writes one `rope_parameters` object (`{rope_type, rope_theta, factor, ...}`,
 * for Gemma 3 one such object per layer type) and `dtype`. Hub checkpoints mostly carry the
 * legacy layout, files written by a recent transformers the new one; both must give the same
 * model.
 */
import type { GPTConfig } from "../model/config.ts";

/** A parsed config.json. */
export type HfConfig = Record<string, unknown>;

/** Typed access to one config.json; every error names the file and the key. */
export class HfConfigReader {
  constructor(readonly hf: HfConfig, readonly source: string) {}

  /** True when the key is present with a value other than null. */
  has(key: string): boolean {
    return this.hf[key] !== undefined && this.hf[key] !== null;
  }

  private fail(key: string, expected: string): never {
    throw new Error(
      `${this.source}: "${key}" must be ${expected}, got ${JSON.stringify(this.hf[key])}`,
    );
  }

  /** A positive integer; `fallback` when absent (and required when no fallback is given). */
  int(key: string, fallback?: number): number {
    if (!this.has(key)) {
      if (fallback !== undefined) return fallback;
      throw new Error(`${this.source}: missing key "${key}" (a positive integer)`);
    }
    const value = this.hf[key];
    if (typeof value !== "number" || !Number.isInteger(value) || value <= 0) {
      this.fail(key, "a positive integer");
    }
    return value;
  }

  /** A finite number; `fallback` when absent (and required when no fallback is given). */
  num(key: string, fallback?: number): number {
    if (!this.has(key)) {
      if (fallback !== undefined) return fallback;
      throw new Error(`${this.source}: missing key "${key}" (a number)`);
    }
    const value = this.hf[key];
    if (typeof value !== "number" || !Number.isFinite(value)) this.fail(key, "a number");
    return value;
  }

  /** true or false; `fallback` when absent. */
  bool(key: string, fallback: boolean): boolean {
    if (!this.has(key)) return fallback;
    const value = this.hf[key];
    if (typeof value !== "boolean") this.fail(key, "true or false");
    return value;
  }

  /** A string; `fallback` when absent. */
  str(key: string, fallback?: string): string | undefined {
    if (!this.has(key)) return fallback;
    const value = this.hf[key];
    if (typeof value !== "string") this.fail(key, "a string");
    return value;
  }

  /** Refuses a setting our model does not implement (a value other than null/absent/`allowed`). */
  unsupported(key: string, allowed: unknown, why: string): void {
    if (this.has(key) && this.hf[key] !== allowed) {
      throw new Error(
        `${this.source}: "${key}" is ${JSON.stringify(this.hf[key])}, which is not supported ` +
          `(${why})`,
      );
    }
  }

  /** The checkpoint's dtype: `dtype` (v5) or `torch_dtype` (legacy); "float32" when absent. */
  dtype(): string {
    return this.str("dtype") ?? this.str("torch_dtype") ?? "float32";
  }

  /** `tie_word_embeddings`; absent means tied (transformers' default, and Gemma 3 omits it). */
  tiedHead(): boolean {
    return this.bool("tie_word_embeddings", true);
  }
}

/** RoPE settings of one kind of layer. */
export interface RopeSettings {
  theta: number;
  scaling?: NonNullable<GPTConfig["rope_scaling"]>;
  /** Fraction of head_dim that is rotated (Phi-2: 0.4), when the config gives one. */
  partialRotaryFactor?: number;
}

function ropeFromObject(
  params: Record<string, unknown>,
  defaultTheta: number,
  where: string,
  maxPositions: number | undefined,
): RopeSettings {
  const type = params.rope_type ?? params.type ?? "default";
  const theta = params.rope_theta ?? defaultTheta;
  if (typeof theta !== "number" || !(theta > 0)) {
    throw new Error(
      `${where}: "rope_theta" must be a positive number, got ${JSON.stringify(theta)}`,
    );
  }
  const settings: RopeSettings = { theta };
  if (params.partial_rotary_factor !== undefined && params.partial_rotary_factor !== null) {
    const factor = params.partial_rotary_factor;
    if (typeof factor !== "number" || !(factor > 0 && factor <= 1)) {
      throw new Error(
        `${where}: "partial_rotary_factor" must be in (0, 1], got ${JSON.stringify(factor)}`,
      );
    }
    settings.partialRotaryFactor = factor;
  }
  if (type === "default") return settings;
  if (type !== "llama3") {
    throw new Error(
      `${where}: RoPE type ${JSON.stringify(type)} is not supported (supported: default, llama3)`,
    );
  }
  const number = (key: string, fallback?: number): number => {
    const value = params[key] ?? fallback;
    if (typeof value !== "number" || !(value > 0)) {
      throw new Error(
        `${where}: llama3 RoPE scaling needs a positive "${key}", got ${JSON.stringify(value)}`,
      );
    }
    return value;
  };
  settings.scaling = {
    factor: number("factor"),
    low_freq_factor: number("low_freq_factor"),
    high_freq_factor: number("high_freq_factor"),
    original_context_length: number("original_max_position_embeddings", maxPositions),
  };
  return settings;
}

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value);

/**
 * RoPE of the config's layers, from either layout. `layerType` picks Gemma 3's nested v5 entry
 * (`full_attention` / `sliding_attention`); `legacyThetaKey` is where the legacy layout keeps
 * that layer type's theta (Gemma 3's sliding layers: `rope_local_base_freq`).
 */
export function readRope(
  reader: HfConfigReader,
  options: {
    layerType?: string;
    legacyThetaKey?: string;
    defaultTheta?: number;
    /** Whether legacy `rope_scaling` applies (Gemma 3: to the global layers only). Default true. */
    legacyScaling?: boolean;
  } = {},
): RopeSettings {
  const { layerType, legacyThetaKey = "rope_theta", defaultTheta = 10000 } = options;
  const maxPositions = reader.has("max_position_embeddings")
    ? reader.int("max_position_embeddings")
    : undefined;
  const v5 = reader.hf.rope_parameters;
  if (isObject(v5)) {
    let params: Record<string, unknown> = v5;
    let where = `${reader.source}: "rope_parameters"`;
    if (layerType !== undefined && isObject(v5[layerType])) {
      params = v5[layerType] as Record<string, unknown>;
      where += `."${layerType}"`;
    } else if (layerType !== undefined && !("rope_theta" in v5) && !("rope_type" in v5)) {
      throw new Error(`${where} has no entry "${layerType}" (keys: ${Object.keys(v5).join(", ")})`);
    }
    const settings = ropeFromObject(params, defaultTheta, where, maxPositions);
    // v5 may keep partial_rotary_factor at the top level, as the legacy layout does.
    if (settings.partialRotaryFactor === undefined && reader.has("partial_rotary_factor")) {
      settings.partialRotaryFactor = reader.num("partial_rotary_factor");
    }
    return settings;
  }
  const scaling = options.legacyScaling === false ? null : reader.hf.rope_scaling;
  if (scaling !== undefined && scaling !== null && !isObject(scaling)) {
    throw new Error(
      `${reader.source}: "rope_scaling" must be an object or null, got ${JSON.stringify(scaling)}`,
    );
  }
  const params: Record<string, unknown> = {
    ...(scaling ?? {}),
    rope_theta: reader.num(legacyThetaKey, defaultTheta),
    partial_rotary_factor: reader.hf.partial_rotary_factor,
  };
  return ropeFromObject(params, defaultTheta, `${reader.source}: "rope_scaling"`, maxPositions);
}

/** The token ids config.json states (tokenizer_config.json / generation_config.json may add more). */
export interface SpecialTokenIds {
  /** `bos_token_id`, when given. */
  bosId?: number;
  /** `eos_token_id`: one id or a list (Llama 3 Instruct, Gemma 3). Empty when absent. */
  eosIds: number[];
  /** `pad_token_id`, when given. */
  padId?: number;
}

/** BOS / EOS / PAD ids from config.json (`eos_token_id` may be a list). */
export function readSpecialTokens(reader: HfConfigReader): SpecialTokenIds {
  const id = (key: string): number | undefined => {
    if (!reader.has(key)) return undefined;
    const value = reader.hf[key];
    if (typeof value !== "number" || !Number.isInteger(value) || value < 0) {
      throw new Error(
        `${reader.source}: "${key}" must be a token id, got ${JSON.stringify(value)}`,
      );
    }
    return value;
  };
  let eosIds: number[] = [];
  const eos = reader.hf.eos_token_id;
  if (Array.isArray(eos)) {
    if (!eos.every((x) => typeof x === "number" && Number.isInteger(x) && x >= 0)) {
      throw new Error(
        `${reader.source}: "eos_token_id" must be a token id or a list of them, got ${
          JSON.stringify(eos)
        }`,
      );
    }
    eosIds = [...eos];
  } else {
    const single = id("eos_token_id");
    if (single !== undefined) eosIds = [single];
  }
  const tokens: SpecialTokenIds = { eosIds };
  const bos = id("bos_token_id");
  if (bos !== undefined) tokens.bosId = bos;
  const pad = id("pad_token_id");
  if (pad !== undefined) tokens.padId = pad;
  return tokens;
}

/** `x` rounded to the floating-point type `dtype` ("bfloat16", "float16", "float32"). */
export function roundToDtype(x: number, dtype: string, source: string): number {
  const f32 = new Float32Array([x]);
  switch (dtype) {
    case "float32":
      return f32[0];
    case "bfloat16": {
      // Round to nearest even on the top 16 bits of the float32 pattern, as torch does.
      const bits = new Uint32Array(f32.buffer);
      const lsb = (bits[0] >>> 16) & 1;
      bits[0] = ((bits[0] + 0x7fff + lsb) >>> 16) << 16;
      return f32[0];
    }
    case "float16": {
      // 10 mantissa bits: round x * 2^(10 - exponent) to the nearest even integer.
      const exponent = Math.floor(Math.log2(Math.abs(x)));
      const step = 2 ** (exponent - 10);
      const q = x / step;
      const rounded = Math.abs(q - Math.trunc(q)) === 0.5 ? 2 * Math.round(q / 2) : Math.round(q);
      return rounded * step;
    }
    default:
      throw new Error(
        `${source}: dtype ${JSON.stringify(dtype)} is not one of float32, bfloat16, float16`,
      );
  }
}
