/**
 * A model → one GGUF file that llama.cpp (and so Ollama, LM Studio, node-llama-cpp) runs: the
 * architecture's hyperparameters, the tokenizer, and the weights under llama.cpp's tensor names,
 * transformed where llama.cpp computes differently from us:
 *
 *   gpt2    Q, K, V fused into `attn_qkv` (zero biases when the book's model has none: llama.cpp
 *           requires them); position table `position_embd`.
 *   llama   llama.cpp rotates interleaved pairs (x0, x1), (x2, x3) ... where we (and HF) rotate
 *           halves (x_j, x_{j+d/2}): the rows of W_query / W_key are permuted back, per head,
 *           as llama.cpp's converter does; Llama 3's frequency scaling becomes the `rope_freqs`
 *           tensor of per-frequency divisors.
 *   qwen3   as stored (llama.cpp rotates halves for Qwen3), plus `attn_q_norm` / `attn_k_norm`.
 *   gemma3  norms stored as (1 + w) (llama.cpp multiplies by the stored weight); llama.cpp scales
 *           queries by head_dim^-0.5, so a query_pre_attn_scalar different from head_dim is folded
 *           into the q-norm weights; the local layers by `sliding_window_pattern`.
 *   phi3    Q, K, V fused into `attn_qkv`; gate and up fused into `ffn_up` (gate rows first).
 *   phi2    Q, K, V fused into `attn_qkv` with biases; partial rotary `rope.dimension_count`.
 *
 * Shapes: ours are PyTorch's [out, in], row-major; GGUF lists dims innermost first, so the same
 * bytes are llama.cpp's {in, out}: no transposition anywhere. Tensors are read from the model one
 * at a time while the file is written (llm/weights/gguf.ts streams to a temporary file).
 */
import { type GPTConfig, resolveConfig, type ResolvedConfig } from "../model/config.ts";
import type { GPTModel } from "../model/gpt.ts";
import { readStateTensor } from "../model/sharded.ts";
import { ropeInverseFrequencies } from "../model/rope.ts";
import {
  type GgmlType,
  gguf,
  type GgufTensorSource,
  type GgufValue,
  writeGguf,
} from "../weights/gguf.ts";
import type { Tokenizer } from "../tokenizer/mod.ts";
import { type GgufVocabulary, ggufVocabularyOf, vocabularyMetadata } from "./vocab.ts";

/** The weight types an export can ask for. */
export const GGUF_DTYPES = ["f32", "f16", "q8_0"] as const;
/** How the weight matrices are stored (norms, biases and `rope_freqs` stay F32). */
export type GgufDtype = typeof GGUF_DTYPES[number];

/** The llama.cpp architectures we write. */
export const GGUF_ARCHITECTURES = ["gpt2", "llama", "qwen3", "gemma3", "phi3", "phi2"] as const;
/** A llama.cpp architecture name (`general.architecture`). */
export type GgufArchitecture = typeof GGUF_ARCHITECTURES[number];

/** Options of {@link exportGguf}. */
export interface ExportGgufOptions {
  /** Storage of the weight matrices; default "f32". */
  dtype?: GgufDtype;
  /** `general.name`; default "groundup". */
  name?: string;
  /** Called after each tensor is written (index, GGUF name, count). */
  onTensor?: (index: number, name: string, count: number) => void;
}

/** What was written. */
export interface GgufExportSummary {
  /** The GGUF file. */
  path: string;
  /** `general.architecture`. */
  architecture: GgufArchitecture;
  /** The weights' storage. */
  dtype: GgufDtype;
  /** Tensors written. */
  tensors: number;
  /** File size. */
  bytes: number;
}

/** A model llama.cpp has no architecture for, or a setting its architecture cannot express. */
export class GgufExportError extends Error {
  /** The class name, for error reports. */
  override name = "GgufExportError";
}

/** ggml file types (`general.file_type`, llama_ftype). */
const FILE_TYPE: Record<GgufDtype, number> = { f32: 0, f16: 1, q8_0: 7 };

/** One output tensor: its GGUF name, shape (outermost first) and how to compute its values. */
interface PlannedTensor {
  name: string;
  shape: number[];
  /** 1-D tensors (norms, biases, rope_freqs) stay F32 whatever the dtype, as llama.cpp keeps them. */
  vector: boolean;
  values: () => Promise<Float32Array>;
}

/** What llama.cpp's architecture `arch` cannot express for this config ([] when it can). */
function unsupported(arch: GgufArchitecture, c: ResolvedConfig, config: GPTConfig): string[] {
  const problems: string[] = [];
  const need = (ok: boolean, what: string) => ok || problems.push(what);
  const rope = c.pos_emb === "rope";
  const noSliding = c.layer_types.every((t) => t === "full");
  need(c.emb_scale === 1 || arch === "gemma3", `emb_scale ${c.emb_scale}`);
  need(!c.head_bias || arch === "phi2", "an output head bias (head_bias)");
  need(!c.norm_unit_offset || arch === "gemma3", "(1 + w) norms (norm_unit_offset)");
  need(config.query_pre_attn_scalar === undefined || arch === "gemma3", "query_pre_attn_scalar");
  need(!config.rope_scaling || arch === "llama", "Llama-3 RoPE scaling on this architecture");
  switch (arch) {
    case "gpt2":
      need(!rope, "RoPE (GPT-2 has learned positions)");
      need(c.norm === "layernorm" && c.mlp === "gelu" && c.mlp_bias, "a non-GPT-2 norm or MLP");
      need(c.block === "sequential" && !c.qk_norm && noSliding, "a non-GPT-2 block");
      need(c.attn_out_bias, "no attention output bias");
      need(c.n_kv_groups === c.n_heads, "grouped-query attention");
      need(c.head_dim * c.n_heads === c.emb_dim, "head_dim × n_heads ≠ emb_dim");
      break;
    case "llama":
    case "qwen3":
    case "phi3":
      need(rope, "learned positions");
      need(c.norm === "rmsnorm" && c.mlp === "swiglu", "a LayerNorm or non-SwiGLU MLP");
      need(c.block === "sequential", `a ${c.block} block`);
      need(c.qk_norm === (arch === "qwen3"), arch === "qwen3" ? "no QK-norm" : "QK-norm");
      need(c.rotary_dim === c.head_dim, "partial rotary");
      need(noSliding || arch === "phi3", "sliding-window layers");
      if (arch === "qwen3") need(!c.qkv_bias && !c.mlp_bias, "biases");
      if (arch === "phi3") {
        need(!c.qkv_bias && !c.mlp_bias && !c.attn_out_bias, "biases");
        need(c.head_dim * c.n_heads === c.emb_dim, "head_dim × n_heads ≠ emb_dim");
      }
      break;
    case "gemma3":
      need(rope && c.norm === "rmsnorm" && c.mlp === "geglu", "a non-Gemma norm, MLP or positions");
      need(c.block === "sandwich" && c.qk_norm && c.norm_unit_offset, "a non-Gemma block");
      need(!c.qkv_bias && !c.mlp_bias && !c.attn_out_bias, "biases");
      need(c.rotary_dim === c.head_dim, "partial rotary");
      need(
        swaPattern(c) !== undefined,
        `layer types ${JSON.stringify(c.layer_types)} (llama.cpp ` +
          `takes a period p: layer i is local when i mod p < p - 1)`,
      );
      break;
    case "phi2":
      need(
        rope && c.norm === "layernorm" && c.mlp === "gelu",
        "a non-Phi-2 norm, MLP or positions",
      );
      need(c.block === "parallel" && !c.qk_norm && noSliding, "a non-Phi-2 block");
      need(c.qkv_bias && c.mlp_bias && c.attn_out_bias && c.head_bias, "missing biases");
      need(c.head_dim * c.n_heads === c.emb_dim, "head_dim × n_heads ≠ emb_dim");
      break;
  }
  return problems;
}

/** Gemma 3's local/global layout as llama.cpp's period p (local when i mod p < p - 1). */
function swaPattern(c: ResolvedConfig): number | undefined {
  const types = c.layer_types;
  if (types.every((t) => t === "full")) return 1;
  for (let p = 2; p <= types.length + 1; p++) {
    if (types.every((t, i) => (t === "sliding") === (i % p < p - 1))) return p;
  }
  return undefined;
}

/** The llama.cpp architecture of a model config, or an error saying what does not fit. */
export function ggufArchitecture(config: GPTConfig): GgufArchitecture {
  const family = config.family ?? "gpt2";
  if (!(GGUF_ARCHITECTURES as readonly string[]).includes(family)) {
    throw new GgufExportError(
      `GGUF export: llama.cpp has no architecture for the model family "${family}"; ` +
        `supported: ${GGUF_ARCHITECTURES.join(", ")}`,
    );
  }
  const arch = family as GgufArchitecture;
  const resolved = resolveConfig(config);
  const problems = unsupported(arch, resolved, config);
  if (problems.length > 0) {
    throw new GgufExportError(
      `GGUF export: llama.cpp's "${arch}" architecture cannot express this model: ` +
        `${problems.join("; ")}`,
    );
  }
  return arch;
}

// ---------------------------------------------------------------------------------------------
// Tensor transforms

/** Rows stacked: [a; b; ...] (all with the same row width). */
function stackRows(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/**
 * llama.cpp's `permute` (convert_hf_to_gguf.py): within each head of `heads`, rows in rotate-half
 * order (j, j + d/2) become interleaved pairs (2j, 2j + 1). `width` values per row (1 for a bias).
 */
export function permuteRotaryRows(
  values: Float32Array,
  heads: number,
  width: number,
): Float32Array {
  const rows = values.length / width;
  const headDim = rows / heads;
  const half = headDim / 2;
  const out = new Float32Array(values.length);
  for (let h = 0; h < heads; h++) {
    for (let j = 0; j < half; j++) {
      for (let t = 0; t < 2; t++) {
        const from = (h * headDim + t * half + j) * width;
        const to = (h * headDim + 2 * j + t) * width;
        out.set(values.subarray(from, from + width), to);
      }
    }
  }
  return out;
}

const plusOne = (values: Float32Array, scale = 1) =>
  values.map((w) => Math.fround(Math.fround(1 + w) * scale));

/**
 * Llama 3's scaling as llama.cpp's `rope_freqs`: one divisor per frequency, inv / factor[i] =
 * our scaled inverse frequency (1 for kept frequencies, `factor` for divided ones).
 */
function ropeFreqFactors(c: ResolvedConfig): Float32Array {
  const plain = ropeInverseFrequencies(c.rotary_dim, c.rope_theta);
  const scaled = ropeInverseFrequencies(c.rotary_dim, c.rope_theta, c.rope_scaling);
  return plain.map((inv, i) => inv / scaled[i]);
}

// ---------------------------------------------------------------------------------------------
// Plans

/** Reads our state tensors by name (each read when its GGUF tensor is written). */
function stateReader(model: GPTModel): (name: string) => Promise<Float32Array> {
  const tensors = new Map(model.stateTensors().map((t) => [t.name, t]));
  return async (name) => {
    const tensor = tensors.get(name);
    if (!tensor) throw new Error(`internal: the model has no tensor "${name}"`);
    return await readStateTensor(tensor);
  };
}

/** Checks the model holds exactly the plain tensors of its config (no LoRA wrappers, no extras). */
function checkPlainModel(model: GPTModel): void {
  const names = model.stateTensors().map((t) => t.name);
  const extra = names.filter((n) => /lora|\.A$|\.B$/.test(n));
  if (extra.length > 0) {
    throw new GgufExportError(
      `GGUF export: the model carries adapter weights (${extra.slice(0, 3).join(", ")}...): ` +
        `merge the adapter into the weights first`,
    );
  }
}

function archMetadata(arch: GgufArchitecture, c: ResolvedConfig): [string, GgufValue][] {
  const k = (key: string) => `${arch}.${key}`;
  const out: [string, GgufValue][] = [
    [k("context_length"), gguf.u32(c.context_length)],
    [k("embedding_length"), gguf.u32(c.emb_dim)],
    [k("block_count"), gguf.u32(c.n_layers)],
    [k("feed_forward_length"), gguf.u32(c.hidden_dim)],
    [k("attention.head_count"), gguf.u32(c.n_heads)],
    [k("attention.head_count_kv"), gguf.u32(c.n_kv_groups)],
  ];
  if (c.norm === "rmsnorm") {
    out.push([k("attention.layer_norm_rms_epsilon"), gguf.f32(c.norm_eps)]);
  } else {
    out.push([k("attention.layer_norm_epsilon"), gguf.f32(c.norm_eps)]);
  }
  if (c.pos_emb === "rope") {
    out.push([k("rope.dimension_count"), gguf.u32(c.rotary_dim)]);
    out.push([k("rope.freq_base"), gguf.f32(c.rope_theta)]);
    out.push([k("attention.key_length"), gguf.u32(c.head_dim)]);
    out.push([k("attention.value_length"), gguf.u32(c.head_dim)]);
  }
  if (arch === "llama") out.push([k("vocab_size"), gguf.u32(c.vocab_size)]);
  if (arch === "gemma3") {
    const pattern = swaPattern(c)!;
    if (pattern > 1) {
      out.push([k("attention.sliding_window"), gguf.u32(c.sliding_window)]);
      out.push([k("attention.sliding_window_pattern"), gguf.u32(pattern)]);
      out.push([k("rope.freq_base_swa"), gguf.f32(c.rope_local_theta)]);
    }
  }
  if (arch === "phi3" && Number.isFinite(c.sliding_window)) {
    out.push([k("attention.sliding_window"), gguf.u32(c.sliding_window)]);
  }
  return out;
}

function planTensors(arch: GgufArchitecture, c: ResolvedConfig, model: GPTModel): PlannedTensor[] {
  const read = stateReader(model);
  const names = new Set(model.stateTensors().map((t) => t.name));
  const shapeOf = new Map(model.stateTensors().map((t) => [t.name, t.shape]));
  const out: PlannedTensor[] = [];
  const add = (name: string, shape: number[], values: () => Promise<Float32Array>) =>
    out.push({ name, shape, vector: shape.length === 1, values });
  const copy = (gg: string, ours: string) => add(gg, [...shapeOf.get(ours)!], () => read(ours));
  const copyIf = (gg: string, ours: string) => names.has(ours) && copy(gg, ours);
  const gemma = arch === "gemma3";
  const norm = (gg: string, ours: string, scale = 1) =>
    gemma
      ? add(gg, [...shapeOf.get(ours)!], async () => plusOne(await read(ours), scale))
      : copy(gg, ours);
  const fused = (gg: string, parts: string[]) => {
    const total = parts.reduce((n, p) => n + shapeOf.get(p)![0], 0);
    const rest = shapeOf.get(parts[0])!.slice(1);
    add(gg, [total, ...rest], async () => stackRows(await Promise.all(parts.map(read))));
  };

  const { n_heads: heads, n_kv_groups: kvHeads, head_dim: headDim } = c;
  copy("token_embd.weight", "tok_emb.weight");
  if (arch === "gpt2") copy("position_embd.weight", "pos_emb.weight");
  for (let i = 0; i < c.n_layers; i++) {
    const b = (n: string) => `trf_blocks.${i}.${n}`;
    const g = (n: string) => `blk.${i}.${n}`;
    norm(g("attn_norm.weight"), b("norm1.scale"));
    copyIf(g("attn_norm.bias"), b("norm1.shift"));
    if (arch === "gpt2" || arch === "phi3" || arch === "phi2") {
      const qkv = [b("att.W_query.weight"), b("att.W_key.weight"), b("att.W_value.weight")];
      fused(g("attn_qkv.weight"), qkv);
      const biases = [b("att.W_query.bias"), b("att.W_key.bias"), b("att.W_value.bias")];
      if (names.has(biases[0])) {
        fused(g("attn_qkv.bias"), biases);
      } else if (arch === "gpt2") {
        // The book's from-scratch GPT has no QKV biases; llama.cpp's gpt2 requires them.
        const rows = (heads + 2 * kvHeads) * headDim;
        add(g("attn_qkv.bias"), [rows], () => Promise.resolve(new Float32Array(rows)));
      }
    } else {
      const rotary = (gg: string, ours: string, n: number, width: number) => {
        if (!names.has(ours)) return;
        if (arch !== "llama") return copy(gg, ours);
        add(gg, [...shapeOf.get(ours)!], async () => permuteRotaryRows(await read(ours), n, width));
      };
      rotary(g("attn_q.weight"), b("att.W_query.weight"), heads, c.emb_dim);
      rotary(g("attn_q.bias"), b("att.W_query.bias"), heads, 1);
      rotary(g("attn_k.weight"), b("att.W_key.weight"), kvHeads, c.emb_dim);
      rotary(g("attn_k.bias"), b("att.W_key.bias"), kvHeads, 1);
      copy(g("attn_v.weight"), b("att.W_value.weight"));
      copyIf(g("attn_v.bias"), b("att.W_value.bias"));
    }
    if (c.qk_norm) {
      // llama.cpp scales queries by head_dim^-0.5; Gemma 3 wants query_pre_attn_scalar^-0.5.
      // The q-norm output is the query (RoPE is linear), so the ratio goes into its weight.
      const qScale = gemma ? headDim ** 0.5 / c.attention_divisor : 1;
      norm(g("attn_q_norm.weight"), b("att.q_norm.scale"), qScale);
      norm(g("attn_k_norm.weight"), b("att.k_norm.scale"));
    }
    copy(g("attn_output.weight"), b("att.out_proj.weight"));
    copyIf(g("attn_output.bias"), b("att.out_proj.bias"));
    if (gemma) norm(g("post_attention_norm.weight"), b("post_att_norm.scale"));
    if (c.block !== "parallel") {
      norm(g("ffn_norm.weight"), b("norm2.scale"));
      copyIf(g("ffn_norm.bias"), b("norm2.shift"));
    }
    if (c.mlp === "gelu") {
      copy(g("ffn_up.weight"), b("ff.layers.0.weight"));
      copyIf(g("ffn_up.bias"), b("ff.layers.0.bias"));
      copy(g("ffn_down.weight"), b("ff.layers.2.weight"));
      copyIf(g("ffn_down.bias"), b("ff.layers.2.bias"));
    } else if (arch === "phi3") {
      fused(g("ffn_up.weight"), [b("ff.fc1.weight"), b("ff.fc2.weight")]);
      copy(g("ffn_down.weight"), b("ff.fc3.weight"));
    } else {
      copy(g("ffn_gate.weight"), b("ff.fc1.weight"));
      copyIf(g("ffn_gate.bias"), b("ff.fc1.bias"));
      copy(g("ffn_up.weight"), b("ff.fc2.weight"));
      copyIf(g("ffn_up.bias"), b("ff.fc2.bias"));
      copy(g("ffn_down.weight"), b("ff.fc3.weight"));
      copyIf(g("ffn_down.bias"), b("ff.fc3.bias"));
    }
    if (gemma) norm(g("post_ffw_norm.weight"), b("post_ff_norm.scale"));
  }
  norm("output_norm.weight", "final_norm.scale");
  copyIf("output_norm.bias", "final_norm.shift");
  // A tied head is the embedding: llama.cpp reuses token_embd when `output` is absent.
  if (!model.tiedHead) copy("output.weight", "out_head.weight");
  copyIf("output.bias", "out_head.bias");
  if (arch === "llama" && c.rope_scaling) {
    add("rope_freqs.weight", [c.rotary_dim / 2], () => Promise.resolve(ropeFreqFactors(c)));
  }
  return out;
}

/** The storage type of one tensor for a requested dtype (llama.cpp's converter's choices). */
function tensorType(tensor: PlannedTensor, dtype: GgufDtype): GgmlType {
  if (tensor.vector || dtype === "f32") return "F32";
  if (dtype === "f16") return "F16";
  return tensor.shape[tensor.shape.length - 1] % 32 === 0 ? "Q8_0" : "F16";
}

/**
 * The complete GGUF content of a model: metadata (general, architecture, tokenizer) and the
 * tensors to stream. Throws {@link GgufExportError} before anything is written when llama.cpp
 * cannot run the model or the vocabulary does not fit the embedding.
 */
export function ggufContent(
  model: GPTModel,
  vocabulary: GgufVocabulary,
  options: ExportGgufOptions = {},
): {
  architecture: GgufArchitecture;
  metadata: [string, GgufValue][];
  tensors: GgufTensorSource[];
} {
  const dtype = options.dtype ?? "f32";
  if (!(GGUF_DTYPES as readonly string[]).includes(dtype)) {
    throw new GgufExportError(
      `GGUF export: dtype "${dtype}" is not one of ${GGUF_DTYPES.join(", ")}`,
    );
  }
  const arch = ggufArchitecture(model.config);
  checkPlainModel(model);
  const c = resolveConfig(model.config);
  if (vocabulary.tokens.length !== c.vocab_size) {
    throw new GgufExportError(
      `GGUF export: the tokenizer has ${vocabulary.tokens.length} tokens but the model's ` +
        `embedding has ${c.vocab_size} rows; llama.cpp needs one token per row`,
    );
  }
  const metadata: [string, GgufValue][] = [
    ["general.architecture", gguf.str(arch)],
    // Not the architecture: llama.cpp special-cases tokens by name (a name with "phi3" needs
    // Phi-3's "</s>" in the vocabulary).
    ["general.name", gguf.str(options.name ?? "groundup")],
    ["general.file_type", gguf.u32(FILE_TYPE[dtype])],
    ...(dtype === "q8_0"
      ? [["general.quantization_version", gguf.u32(2)] as [string, GgufValue]]
      : []),
    ...archMetadata(arch, c),
    ...vocabularyMetadata(vocabulary),
  ];
  const tensors = planTensors(arch, c, model).map((t): GgufTensorSource => ({
    name: t.name,
    shape: t.shape,
    type: tensorType(t, dtype),
    data: t.values,
  }));
  return { architecture: arch, metadata, tensors };
}

/**
 * Writes `model` as one GGUF file at `path` (streamed; the file appears only when complete). The
 * tokenizer goes into the metadata: pass our Tokenizer (GPT-2's or a Hugging Face one) or a
 * ready {@link GgufVocabulary}.
 *
 *   await exportGguf(model, tokenizer, "model.gguf", { dtype: "q8_0" });
 */
export async function exportGguf(
  model: GPTModel,
  tokenizer: Tokenizer | GgufVocabulary,
  path: string,
  options: ExportGgufOptions = {},
): Promise<GgufExportSummary> {
  const vocabulary = "tokenTypes" in tokenizer
    ? tokenizer
    : await ggufVocabularyOf(tokenizer, model.config.vocab_size);
  const { architecture, metadata, tensors } = ggufContent(model, vocabulary, options);
  await writeGguf(path, { metadata, tensors }, (index, name) => {
    options.onTensor?.(index, name, tensors.length);
  });
  return {
    path,
    architecture,
    dtype: options.dtype ?? "f32",
    tensors: tensors.length,
    bytes: (await Deno.stat(path)).size,
  };
}
