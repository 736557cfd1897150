/**
 * A model → a Hugging Face model folder (`config.json`, `model.safetensors` with HF's tensor
 * names, tokenizer files, generation_config.json): what transformers, vLLM, LitGPT and torchtune
 * load. The tensor names come from each family's own rule table (llm/families/*.ts) read in
 * reverse, so loading and exporting cannot disagree; GPT-2 is written as `GPT2LMHeadModel`
 * (Conv1D matrices are [in, out]: ours transposed; Q, K, V fused into `c_attn`).
 *
 * The folder is written under a temporary name beside `dir` and renamed when complete; an
 * existing non-empty `dir` is refused.
 */
import { existsSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import type { ModelFamily, WeightRule } from "../families/family.ts";
import { roundToDtype } from "../families/hf_config.ts";
import { FAMILIES } from "../families/mod.ts";
import { type GPTConfig, resolveConfig, type ResolvedConfig } from "../model/config.ts";
import type { GPTModel } from "../model/gpt.ts";
import { readStateTensor } from "../model/sharded.ts";
import { Gpt2Tokenizer } from "../tokenizer/gpt2.ts";
import { HfTokenizer } from "../tokenizer/hf.ts";
import type { Tokenizer } from "../tokenizer/mod.ts";
import { writeSafetensorsStream } from "../weights/safetensors.ts";
import type { NamedTensor } from "../weights/safetensors.ts";
import { gpt2Vocabulary } from "./vocab.ts";

/** Options of {@link exportHf}. */
export interface ExportHfOptions {
  /** The model's tokenizer: its files are written beside the weights (GPT-2: vocab.json + merges.txt). */
  tokenizer?: Tokenizer;
  /** Called after each tensor is written. */
  onTensor?: (index: number, name: string, count: number) => void;
}

/** The HF files of a tokenizer loaded from a folder, copied as they are. */
const HF_TOKENIZER_FILES = [
  "tokenizer.json",
  "tokenizer_config.json",
  "special_tokens_map.json",
  "generation_config.json",
];

/** Refuses a target that exists and is not an empty folder (nothing is overwritten). */
export async function checkExportTarget(path: string, what: string): Promise<void> {
  let stat: Deno.FileInfo;
  try {
    stat = await Deno.stat(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return;
    throw error;
  }
  if (!stat.isDirectory) {
    throw new Error(`${what}: ${path} already exists (a file); choose a new folder`);
  }
  for await (const _ of Deno.readDir(path)) {
    throw new Error(
      `${what}: ${path} already exists and is not empty; choose a new folder or empty it`,
    );
  }
}

const familyOf = (config: GPTConfig): ModelFamily => {
  const name = config.family ?? "gpt2";
  const family = FAMILIES.find((f) => f.name === name);
  if (!family) throw new Error(`HF export: no Hugging Face family "${name}"`);
  return family;
};

// ---------------------------------------------------------------------------------------------
// config.json

/** The checkpoint dtype whose rounding of √emb_dim gives Gemma 3's emb_scale (as the loader reads it). */
function gemmaDtype(c: ResolvedConfig): string {
  for (const dtype of ["bfloat16", "float32", "float16"]) {
    if (roundToDtype(Math.sqrt(c.emb_dim), dtype, "config") === c.emb_scale) return dtype;
  }
  throw new Error(
    `HF export: Gemma 3 multiplies embeddings by √hidden_size rounded to the checkpoint dtype; ` +
      `emb_scale ${c.emb_scale} is none of them for hidden_size ${c.emb_dim}`,
  );
}

function llamaStyle(c: ResolvedConfig, tied: boolean): Record<string, unknown> {
  const out: Record<string, unknown> = {
    vocab_size: c.vocab_size,
    max_position_embeddings: c.context_length,
    hidden_size: c.emb_dim,
    num_attention_heads: c.n_heads,
    num_hidden_layers: c.n_layers,
    num_key_value_heads: c.n_kv_groups,
    head_dim: c.head_dim,
    intermediate_size: c.hidden_dim,
    hidden_act: "silu",
    rms_norm_eps: c.norm_eps,
    rope_theta: c.rope_theta,
    attention_bias: c.qkv_bias,
    mlp_bias: c.mlp_bias,
    tie_word_embeddings: tied,
    torch_dtype: "float32",
  };
  if (c.rope_scaling) {
    const s = c.rope_scaling;
    out.rope_scaling = {
      rope_type: "llama3",
      factor: s.factor,
      low_freq_factor: s.low_freq_factor,
      high_freq_factor: s.high_freq_factor,
      original_max_position_embeddings: s.original_context_length,
    };
  }
  return out;
}

/** config.json for our config (the legacy layout, which every transformers version reads). */
export function hfConfigOf(
  config: GPTConfig,
  tiedHead: boolean,
  tokens: { bosId?: number; eosIds?: number[] } = {},
): Record<string, unknown> {
  const c = resolveConfig(config);
  const family = config.family ?? "gpt2";
  let out: Record<string, unknown>;
  const mismatch = (what: string) => {
    throw new Error(`HF export: a ${family} model with ${what} has no Hugging Face config`);
  };
  switch (family) {
    case "gpt2":
      if (c.pos_emb !== "learned" || c.norm !== "layernorm" || c.mlp !== "gelu") {
        mismatch("RoPE, RMSNorm or a gated MLP");
      }
      if (!tiedHead) {
        mismatch("an untied output head (GPT2LMHeadModel ties it; use the book's format)");
      }
      out = {
        architectures: ["GPT2LMHeadModel"],
        model_type: "gpt2",
        vocab_size: c.vocab_size,
        n_positions: c.context_length,
        n_ctx: c.context_length,
        n_embd: c.emb_dim,
        n_head: c.n_heads,
        n_layer: c.n_layers,
        activation_function: "gelu_new",
        layer_norm_epsilon: c.norm_eps,
        torch_dtype: "float32",
      };
      break;
    case "llama":
      out = {
        architectures: ["LlamaForCausalLM"],
        model_type: "llama",
        ...llamaStyle(c, tiedHead),
      };
      break;
    case "qwen3":
      out = {
        architectures: ["Qwen3ForCausalLM"],
        model_type: "qwen3",
        ...llamaStyle(c, tiedHead),
      };
      break;
    case "phi3":
      out = { architectures: ["Phi3ForCausalLM"], model_type: "phi3", ...llamaStyle(c, tiedHead) };
      delete out.mlp_bias;
      if (c.layer_types.some((t) => t === "sliding")) out.sliding_window = c.sliding_window;
      break;
    case "gemma3": {
      const base = llamaStyle(c, tiedHead);
      delete base.hidden_act;
      delete base.mlp_bias;
      out = {
        architectures: ["Gemma3ForCausalLM"],
        model_type: "gemma3_text",
        ...base,
        hidden_activation: "gelu_pytorch_tanh",
        query_pre_attn_scalar: config.query_pre_attn_scalar ?? c.head_dim,
        sliding_window: Number.isFinite(c.sliding_window) ? c.sliding_window : c.context_length,
        layer_types: c.layer_types.map((t) =>
          t === "sliding" ? "sliding_attention" : "full_attention"
        ),
        rope_local_base_freq: c.rope_local_theta,
        torch_dtype: gemmaDtype(c),
      };
      break;
    }
    case "phi2":
      out = {
        architectures: ["PhiForCausalLM"],
        model_type: "phi",
        vocab_size: c.vocab_size,
        max_position_embeddings: c.context_length,
        hidden_size: c.emb_dim,
        num_attention_heads: c.n_heads,
        num_hidden_layers: c.n_layers,
        num_key_value_heads: c.n_kv_groups,
        intermediate_size: c.hidden_dim,
        hidden_act: "gelu_new",
        layer_norm_eps: c.norm_eps,
        rope_theta: c.rope_theta,
        partial_rotary_factor: c.rotary_dim / c.head_dim,
        qk_layernorm: false,
        tie_word_embeddings: tiedHead,
        torch_dtype: "float32",
      };
      break;
  }
  if (tokens.bosId !== undefined) out.bos_token_id = tokens.bosId;
  if (tokens.eosIds && tokens.eosIds.length > 0) {
    out.eos_token_id = tokens.eosIds.length === 1 ? tokens.eosIds[0] : tokens.eosIds;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Tensors

interface HfTensor {
  name: string;
  shape: number[];
  values: () => Promise<Float32Array>;
}

function transpose(values: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(values.length);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) out[c * rows + r] = values[r * cols + c];
  }
  return out;
}

const concatRows = (parts: Float32Array[]) => {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let offset = 0;
  for (const p of parts) out.set(p, offset), offset += p.length;
  return out;
};

/** HF tensors of a rule-table family: each rule read backwards (fused rules stack our tensors). */
function ruleTableTensors(
  rules: readonly WeightRule[],
  model: GPTModel,
  read: (name: string) => Promise<Float32Array>,
  shapes: Map<string, number[]>,
): HfTensor[] {
  const out: HfTensor[] = [];
  const layers = model.config.n_layers;
  for (const rule of rules) {
    const ours = typeof rule.ours === "string" ? [rule.ours] : [...rule.ours];
    const indices = rule.hf.includes("{i}") ? Array.from({ length: layers }, (_, i) => i) : [-1];
    for (const i of indices) {
      const fill = (t: string) => i < 0 ? t : t.replaceAll("{i}", String(i));
      const names = ours.map(fill);
      if (!names.every((n) => shapes.has(n))) continue; // a bias this model does not have
      if (model.tiedHead && names[0] === "out_head.weight") continue;
      const first = shapes.get(names[0])!;
      const rows = names.reduce((n, name) => n + shapes.get(name)![0], 0);
      out.push({
        name: fill(rule.hf),
        shape: [rows, ...first.slice(1)],
        values: async () =>
          names.length === 1
            ? await read(names[0])
            : concatRows(await Promise.all(names.map(read))),
      });
    }
  }
  return out;
}

/** GPT2LMHeadModel's tensors: Conv1D weights [in, out], c_attn = [Q | K | V] along out. */
function gpt2Tensors(
  c: ResolvedConfig,
  read: (name: string) => Promise<Float32Array>,
  shapes: Map<string, number[]>,
): HfTensor[] {
  const d = c.emb_dim;
  const out: HfTensor[] = [
    {
      name: "transformer.wte.weight",
      shape: [c.vocab_size, d],
      values: () => read("tok_emb.weight"),
    },
    {
      name: "transformer.wpe.weight",
      shape: [c.context_length, d],
      values: () => read("pos_emb.weight"),
    },
  ];
  const conv1d = (name: string, ours: string[]) => {
    const outs = ours.map((n) => shapes.get(n)![0]);
    const total = outs.reduce((a, b) => a + b, 0);
    const inDim = shapes.get(ours[0])![1];
    // [out, in] blocks stacked along out, then transposed to Conv1D's [in, out].
    out.push({
      name,
      shape: [inDim, total],
      values: async () => transpose(concatRows(await Promise.all(ours.map(read))), total, inDim),
    });
  };
  const vector = (name: string, ours: string[], size: number) =>
    out.push({
      name,
      shape: [size],
      values: async () =>
        shapes.has(ours[0])
          ? concatRows(await Promise.all(ours.map(read)))
          : new Float32Array(size),
    });
  for (let i = 0; i < c.n_layers; i++) {
    const h = (n: string) => `transformer.h.${i}.${n}`;
    const b = (n: string) => `trf_blocks.${i}.${n}`;
    vector(h("ln_1.weight"), [b("norm1.scale")], d);
    vector(h("ln_1.bias"), [b("norm1.shift")], d);
    conv1d(h("attn.c_attn.weight"), [
      b("att.W_query.weight"),
      b("att.W_key.weight"),
      b("att.W_value.weight"),
    ]);
    // The book's from-scratch GPT has no QKV biases; GPT2LMHeadModel always has them: zeros.
    vector(h("attn.c_attn.bias"), [
      b("att.W_query.bias"),
      b("att.W_key.bias"),
      b("att.W_value.bias"),
    ], 3 * d);
    conv1d(h("attn.c_proj.weight"), [b("att.out_proj.weight")]);
    vector(h("attn.c_proj.bias"), [b("att.out_proj.bias")], d);
    vector(h("ln_2.weight"), [b("norm2.scale")], d);
    vector(h("ln_2.bias"), [b("norm2.shift")], d);
    conv1d(h("mlp.c_fc.weight"), [b("ff.layers.0.weight")]);
    vector(h("mlp.c_fc.bias"), [b("ff.layers.0.bias")], c.hidden_dim);
    conv1d(h("mlp.c_proj.weight"), [b("ff.layers.2.weight")]);
    vector(h("mlp.c_proj.bias"), [b("ff.layers.2.bias")], d);
  }
  vector("transformer.ln_f.weight", ["final_norm.scale"], d);
  vector("transformer.ln_f.bias", ["final_norm.shift"], d);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Tokenizer files

async function writeTokenizerFiles(dir: string, tokenizer: Tokenizer | undefined): Promise<void> {
  if (tokenizer instanceof HfTokenizer) {
    const from = dirname(tokenizer.source);
    for (const file of HF_TOKENIZER_FILES) {
      if (existsSync(join(from, file))) await Deno.copyFile(join(from, file), join(dir, file));
    }
    return;
  }
  if (tokenizer instanceof Gpt2Tokenizer) {
    // GPT2Tokenizer's own files: vocab.json (token → id) and merges.txt, from js-tiktoken's ranks.
    const vocabulary = gpt2Vocabulary();
    const vocab = Object.fromEntries(vocabulary.tokens.map((t, id) => [t, id]));
    await Deno.writeTextFile(join(dir, "vocab.json"), JSON.stringify(vocab));
    await Deno.writeTextFile(
      join(dir, "merges.txt"),
      `#version: 0.2\n${vocabulary.merges!.join("\n")}\n`,
    );
    const special = "<|endoftext|>";
    await Deno.writeTextFile(
      join(dir, "tokenizer_config.json"),
      JSON.stringify(
        {
          tokenizer_class: "GPT2Tokenizer",
          bos_token: special,
          eos_token: special,
          unk_token: special,
          model_max_length: 1024,
          add_prefix_space: false,
        },
        null,
        2,
      ) + "\n",
    );
    return;
  }
  if (tokenizer) {
    throw new Error(`HF export: the "${tokenizer.name}" tokenizer has no Hugging Face files`);
  }
}

/** bos/eos ids for config.json and generation_config.json. */
function specialIds(tokenizer: Tokenizer | undefined): { bosId?: number; eosIds?: number[] } {
  if (!tokenizer) return {};
  const eos = [...tokenizer.eosIds];
  return {
    bosId: tokenizer.bosId ?? (tokenizer instanceof Gpt2Tokenizer ? 50256 : undefined),
    eosIds: eos,
  };
}

/** Each tensor's values, computed when the writer asks for it. */
async function* streamed(
  tensors: HfTensor[],
  options: ExportHfOptions,
): AsyncIterable<[string, NamedTensor]> {
  for (const [index, t] of tensors.entries()) {
    yield [t.name, { shape: t.shape, data: await t.values() }];
    options.onTensor?.(index, t.name, tensors.length);
  }
}

/**
 * Writes `model` as a Hugging Face folder at `dir` (which must not exist or be empty): config.json,
 * model.safetensors (F32, HF names), generation_config.json and the tokenizer's files.
 */
export async function exportHf(
  model: GPTModel,
  dir: string,
  options: ExportHfOptions = {},
): Promise<{ dir: string; tensors: number; files: string[] }> {
  await checkExportTarget(dir, "HF export");
  const family = familyOf(model.config);
  const c = resolveConfig(model.config);
  const ids = specialIds(options.tokenizer);
  const config = hfConfigOf(model.config, model.tiedHead, ids);
  const state = new Map(model.stateTensors().map((t) => [t.name, t]));
  const shapes = new Map([...state].map(([name, t]) => [name, [...t.shape]]));
  const read = (name: string) => readStateTensor(state.get(name)!);
  const tensors = family.name === "gpt2"
    ? gpt2Tensors(c, read, shapes)
    : ruleTableTensors(family.weightRules, model, read, shapes);
  // Every one of our tensors must have gone somewhere (no LoRA leftovers, no unmapped weight).
  const covered = new Set(tensors.length > 0 ? [...shapes.keys()] : []);
  if (family.name !== "gpt2") {
    const used = new Set<string>();
    for (const rule of family.weightRules) {
      const ours = typeof rule.ours === "string" ? [rule.ours] : [...rule.ours];
      for (const t of ours) {
        const pattern = new RegExp(`^${t.replace(/[.]/g, "\\.").replace("{i}", "\\d+")}$`);
        for (const name of covered) if (pattern.test(name)) used.add(name);
      }
    }
    const left = [...covered].filter((n) => !used.has(n));
    if (left.length > 0) {
      throw new Error(
        `HF export: ${family.name} has no Hugging Face name for ${left.slice(0, 4).join(", ")}` +
          (left.some((n) => /lora/i.test(n)) ? " (merge the adapter first)" : ""),
      );
    }
  }

  await Deno.mkdir(dirname(dir), { recursive: true });
  const temp = join(dirname(dir), `.${basename(dir)}.${crypto.randomUUID()}.tmp`);
  await Deno.mkdir(temp);
  try {
    const declared = new Map(tensors.map((t) => [t.name, t.shape]));
    await writeSafetensorsStream(
      join(temp, "model.safetensors"),
      declared,
      streamed(tensors, options),
      {
        format: "pt",
      },
    );
    await Deno.writeTextFile(join(temp, "config.json"), JSON.stringify(config, null, 2) + "\n");
    await writeTokenizerFiles(temp, options.tokenizer);
    if (!existsSync(join(temp, "generation_config.json")) && ids.eosIds?.length) {
      const generation = { bos_token_id: ids.bosId, eos_token_id: config.eos_token_id };
      await Deno.writeTextFile(
        join(temp, "generation_config.json"),
        JSON.stringify(generation, null, 2) + "\n",
      );
    }
    await checkExportTarget(dir, "HF export"); // nobody wrote there meanwhile
    await Deno.remove(dir).catch(() => {});
    await Deno.rename(temp, dir);
  } catch (error) {
    await Deno.remove(temp, { recursive: true }).catch(() => {});
    throw error;
  }
  const files: string[] = [];
  for await (const entry of Deno.readDir(dir)) files.push(entry.name);
  return { dir, tensors: tensors.length, files: files.sort() };
}
