/**
 * The families' config mapping on the real config.json of each open model (tests/llm/families/
 * configs/): parameter counts against REFERENCE.md's "Memory" list, both config layouts, the
 * defaults config.json may leave out, and the rule tables (Phi-3's fused tensors split).
 */
import assert from "node:assert/strict";
import { countParameters, validateConfig } from "../../../llm/model/config.ts";
import { detectFamily, type HfCheckpoint, phi3 } from "../../../llm/families/mod.ts";
import { roundToDtype } from "../../../llm/families/hf_config.ts";

/** Asserts that `fn` throws an Error whose message contains every one of `parts`. */
function throwsWith(fn: () => unknown, ...parts: string[]): Error {
  let caught: unknown;
  try {
    fn();
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof Error, "expected an error");
  for (const part of parts) {
    assert.ok(caught.message.includes(part), `"${part}" not in: ${caught.message}`);
  }
  return caught;
}

const CONFIGS = new URL("./configs/", import.meta.url);

function readConfig(name: string): Record<string, unknown> {
  return JSON.parse(Deno.readTextFileSync(new URL(name, CONFIGS)));
}

function mapConfig(name: string) {
  const hf = readConfig(name);
  const family = detectFamily(hf, name);
  return { family, hf, ...family.toConfig(hf, name) };
}

/** REFERENCE.md's way of writing a parameter count: 596M, 1.24B, 134.5M. */
function asReference(count: number, digits: number): string {
  return count >= 1e9 ? `${(count / 1e9).toFixed(digits)}B` : `${(count / 1e6).toFixed(digits)}M`;
}

// REFERENCE.md, "Memory (parameters; ...)".
const MEMORY_LIST: [file: string, family: string, reference: string, digits: number][] = [
  ["Qwen3-0.6B.json", "qwen3", "596M", 0],
  ["Llama-3.2-1B.json", "llama", "1.24B", 2],
  ["gemma-3-270m.json", "gemma3", "268M", 0],
  ["Phi-3-mini-4k-instruct.json", "phi3", "3.82B", 2],
  ["phi-2.json", "phi2", "2.78B", 2],
  ["SmolLM2-135M.json", "llama", "134.5M", 1],
  ["gpt2.json", "gpt2", "124M", 0],
];

for (const [file, familyName, reference, digits] of MEMORY_LIST) {
  Deno.test(`${file}: ${familyName}, ${reference} parameters as REFERENCE.md lists`, () => {
    const { family, config, tiedHead } = mapConfig(file);
    assert.deepStrictEqual(family.name, familyName);
    assert.deepStrictEqual(config.family, familyName);
    // What the family produces is a config the model accepts as it is.
    assert.deepStrictEqual(validateConfig(config, file), config);
    assert.deepStrictEqual(asReference(countParameters(config, { tiedHead }), digits), reference);
  });
}

Deno.test("Llama-3.2-1B: GQA 32/8 of 64, SwiGLU 8192, llama3 RoPE scaling, tied", () => {
  const { config, tiedHead } = mapConfig("Llama-3.2-1B.json");
  assert.deepStrictEqual(tiedHead, true);
  assert.deepStrictEqual(
    [config.n_heads, config.n_kv_groups, config.head_dim, config.hidden_dim, config.mlp],
    [32, 8, 64, 8192, "swiglu"],
  );
  assert.deepStrictEqual([config.norm, config.norm_eps, config.rope_theta], [
    "rmsnorm",
    1e-5,
    500000,
  ]);
  assert.deepStrictEqual(config.rope_scaling, {
    factor: 32,
    low_freq_factor: 1,
    high_freq_factor: 4,
    original_context_length: 8192,
  });
  assert.deepStrictEqual([config.qkv_bias, config.attn_out_bias, config.mlp_bias], [
    false,
    false,
    false,
  ]);
});

Deno.test("Qwen3-0.6B: head_dim 128 with 16 heads on a 1024-wide model, QK-norm, θ 1e6", () => {
  const { config, tiedHead } = mapConfig("Qwen3-0.6B.json");
  assert.deepStrictEqual(tiedHead, true);
  assert.deepStrictEqual([config.emb_dim, config.n_heads, config.head_dim], [1024, 16, 128]);
  assert.deepStrictEqual([config.qk_norm, config.rope_theta, config.norm_eps], [true, 1e6, 1e-6]);
  assert.deepStrictEqual(config.rope_scaling, undefined);
});

Deno.test("gemma-3-270m: sandwich norms, (1+w), local/global θ, window 512, emb scale 25.25", () => {
  const { config, tiedHead } = mapConfig("gemma-3-270m.json");
  assert.deepStrictEqual(tiedHead, true); // tie_word_embeddings is absent: tied
  assert.deepStrictEqual([config.mlp, config.block, config.norm_unit_offset], [
    "geglu",
    "sandwich",
    true,
  ]);
  assert.deepStrictEqual([config.rope_theta, config.rope_local_theta], [1_000_000, 10_000]);
  assert.deepStrictEqual([config.sliding_window, config.query_pre_attn_scalar], [512, 256]);
  assert.deepStrictEqual(config.emb_scale, 25.25);
  const full = config.layer_types!.flatMap((t, i) => t === "full" ? [i] : []);
  assert.deepStrictEqual(full, [5, 11, 17]);
});

Deno.test("Phi-3-mini-4k: untied, window 2047 on every layer (as transformers applies it)", () => {
  const { config, tiedHead } = mapConfig("Phi-3-mini-4k-instruct.json");
  assert.deepStrictEqual(tiedHead, false);
  assert.deepStrictEqual([config.head_dim, config.n_kv_groups, config.hidden_dim], [96, 32, 8192]);
  assert.deepStrictEqual(config.sliding_window, 2047);
  assert.deepStrictEqual(new Set(config.layer_types), new Set(["sliding"]));
});

Deno.test("phi-2: parallel block, LayerNorm with bias, partial rotary 32 of 80, head bias", () => {
  const { config, tiedHead } = mapConfig("phi-2.json");
  assert.deepStrictEqual(tiedHead, false);
  assert.deepStrictEqual([config.block, config.norm, config.mlp, config.mlp_bias], [
    "parallel",
    "layernorm",
    "gelu",
    true,
  ]);
  assert.deepStrictEqual([config.head_dim, config.rotary_dim], [80, 32]);
  assert.deepStrictEqual([config.qkv_bias, config.attn_out_bias, config.head_bias], [
    true,
    true,
    true,
  ]);
});

Deno.test("gpt2: the book's seven keys, tied head", () => {
  const { config, tiedHead } = mapConfig("gpt2.json");
  assert.deepStrictEqual(tiedHead, true);
  assert.deepStrictEqual(config, {
    family: "gpt2",
    vocab_size: 50257,
    context_length: 1024,
    emb_dim: 768,
    n_heads: 12,
    n_layers: 12,
    drop_rate: 0,
    qkv_bias: true,
  });
});

Deno.test("both config layouts (legacy and transformers v5) give the same GPTConfig", () => {
  assert.deepStrictEqual(
    mapConfig("Llama-3.2-1B.v5.json").config,
    mapConfig("Llama-3.2-1B.json").config,
  );
  const gemma = mapConfig("gemma-3-270m.json").config;
  assert.deepStrictEqual(mapConfig("gemma-3-270m.v5.json").config, gemma);
  // Without layer_types, sliding_window_pattern 6 gives the same layer kinds.
  assert.deepStrictEqual(mapConfig("gemma-3-270m.pattern.json").config, gemma);
});

Deno.test("defaults: head_dim = hidden/heads, kv heads = heads, missing tie = tied", () => {
  const hf = readConfig("SmolLM2-135M.json");
  delete hf.num_key_value_heads;
  delete hf.tie_word_embeddings;
  const { config, tiedHead } = detectFamily(hf, "x").toConfig(hf, "x");
  assert.deepStrictEqual([config.head_dim, config.n_kv_groups, tiedHead], [64, 9, true]);
  // No layer_types and no period: Gemma's default period of 6.
  const gemma = readConfig("gemma-3-270m.json");
  delete gemma.layer_types;
  delete gemma._sliding_window_pattern;
  assert.deepStrictEqual(
    detectFamily(gemma, "g").toConfig(gemma, "g").config.layer_types,
    mapConfig("gemma-3-270m.json").config.layer_types,
  );
});

Deno.test("Gemma's embedding scale follows the checkpoint dtype", () => {
  const hf = readConfig("gemma-3-270m.json");
  const scale = (dtype: string) =>
    detectFamily(hf, "g").toConfig({ ...hf, torch_dtype: dtype }, "g").config.emb_scale;
  assert.deepStrictEqual(scale("bfloat16"), 25.25);
  assert.deepStrictEqual(scale("float16"), 25.296875); // 10 mantissa bits
  assert.deepStrictEqual(scale("float32"), Math.fround(Math.sqrt(640)));
  assert.deepStrictEqual(roundToDtype(Math.sqrt(1152), "bfloat16", "x"), 34); // gemma-3-1b
});

Deno.test("special tokens: eos_token_id may be a list", () => {
  const hf = readConfig("gemma-3-270m.json");
  const family = detectFamily(hf, "g");
  assert.deepStrictEqual(family.specialTokens(hf, "g"), { bosId: 2, eosIds: [1], padId: 0 });
  assert.deepStrictEqual(family.specialTokens({ ...hf, eos_token_id: [1, 106] }, "g").eosIds, [
    1,
    106,
  ]);
  const llama = readConfig("Llama-3.2-1B.json");
  assert.deepStrictEqual(detectFamily(llama, "l").specialTokens(llama, "l"), {
    bosId: 128000,
    eosIds: [128001],
  });
});

Deno.test("an unsupported model_type names itself and the supported families", () => {
  const error = throwsWith(
    () => detectFamily({ model_type: "mamba" }, "/m/config.json"),
    'model_type "mamba" is not supported',
    "gpt2",
    "llama",
    "qwen3",
    "gemma3_text",
    "phi3",
    "phi (phi2)",
  );
  assert.ok(error.message.startsWith("/m/config.json: "), error.message);
  throwsWith(() => detectFamily({}, "c.json"), 'c.json: no "model_type"');
});

Deno.test("settings the model does not implement are refused, naming the key", () => {
  const llama = readConfig("Llama-3.2-1B.json");
  const withRope = { ...llama, rope_scaling: { rope_type: "linear", factor: 8 } };
  throwsWith(
    () => detectFamily(withRope, "l").toConfig(withRope, "l"),
    'RoPE type "linear" is not supported',
  );
  const phi3Long = {
    ...readConfig("Phi-3-mini-4k-instruct.json"),
    rope_scaling: { type: "longrope" },
  };
  throwsWith(() => phi3.toConfig(phi3Long, "p"), '"longrope"');
  const gemma = { ...readConfig("gemma-3-270m.json"), final_logit_softcapping: 30 };
  throwsWith(
    () => detectFamily(gemma, "g").toConfig(gemma, "g"),
    '"final_logit_softcapping" is 30',
  );
});

/** A checkpoint held in memory, for the rule-table tests. */
function memoryCheckpoint(tensors: Record<string, [number[], number[]]>): HfCheckpoint {
  const entries = Object.entries(tensors);
  return {
    shapes: new Map(entries.map(([name, [shape]]) => [name, shape])),
    fileOf: () => "mem.safetensors",
    read: (name) => Promise.resolve(Float32Array.from(tensors[name][1])),
    description: "mem.safetensors",
  };
}

Deno.test("Phi-3's fused qkv_proj (rows Q; K; V) and gate_up_proj (gate first) are split", async () => {
  // One layer, emb 2, 2 heads of 1 dim, 1 kv head, MLP width 1, vocab 2.
  const expected = new Map<string, number[]>([
    ["tok_emb.weight", [2, 2]],
    ["trf_blocks.0.att.W_query.weight", [2, 2]],
    ["trf_blocks.0.att.W_key.weight", [1, 2]],
    ["trf_blocks.0.att.W_value.weight", [1, 2]],
    ["trf_blocks.0.att.out_proj.weight", [2, 2]],
    ["trf_blocks.0.ff.fc1.weight", [1, 2]],
    ["trf_blocks.0.ff.fc2.weight", [1, 2]],
    ["trf_blocks.0.ff.fc3.weight", [2, 1]],
    ["trf_blocks.0.norm1.scale", [2]],
    ["trf_blocks.0.norm2.scale", [2]],
    ["final_norm.scale", [2]],
    ["out_head.weight", [2, 2]],
  ]);
  const range = (from: number, n: number) => Array.from({ length: n }, (_, i) => from + i);
  const checkpoint = memoryCheckpoint({
    "model.embed_tokens.weight": [[2, 2], range(0, 4)],
    "model.layers.0.self_attn.qkv_proj.weight": [[4, 2], range(10, 8)],
    "model.layers.0.self_attn.o_proj.weight": [[2, 2], range(20, 4)],
    "model.layers.0.mlp.gate_up_proj.weight": [[2, 2], range(30, 4)],
    "model.layers.0.mlp.down_proj.weight": [[2, 1], range(40, 2)],
    "model.layers.0.input_layernorm.weight": [[2], range(50, 2)],
    "model.layers.0.post_attention_layernorm.weight": [[2], range(60, 2)],
    "model.norm.weight": [[2], range(70, 2)],
    "lm_head.weight": [[2, 2], range(80, 4)],
  });
  const config = phi3.toConfig(
    {
      model_type: "phi3",
      vocab_size: 2,
      hidden_size: 2,
      num_attention_heads: 2,
      num_key_value_heads: 1,
      num_hidden_layers: 1,
      intermediate_size: 1,
      max_position_embeddings: 8,
      tie_word_embeddings: false,
    },
    "p",
  );
  const converter = phi3.converter({ ...config, hfConfig: {}, expected });
  assert.deepStrictEqual(converter.plan(checkpoint).outputs, expected);
  const out = new Map<string, number[]>();
  for await (const [name, t] of converter.convert(checkpoint)) out.set(name, [...t.data]);
  assert.deepStrictEqual(out.get("trf_blocks.0.att.W_query.weight"), [10, 11, 12, 13]);
  assert.deepStrictEqual(out.get("trf_blocks.0.att.W_key.weight"), [14, 15]);
  assert.deepStrictEqual(out.get("trf_blocks.0.att.W_value.weight"), [16, 17]);
  assert.deepStrictEqual(out.get("trf_blocks.0.ff.fc1.weight"), [30, 31]); // gate
  assert.deepStrictEqual(out.get("trf_blocks.0.ff.fc2.weight"), [32, 33]); // up
  assert.deepStrictEqual(out.get("out_head.weight"), [80, 81, 82, 83]);
  assert.deepStrictEqual(out.size, expected.size);

  // A fused tensor of the wrong size names the tensor, the file and both shapes.
  const wrong = memoryCheckpoint({
    ...Object.fromEntries(
      [...checkpoint.shapes].map(([n, s]) => [n, [s as number[], []]]),
    ),
    "model.layers.0.self_attn.qkv_proj.weight": [[6, 2], []],
  });
  throwsWith(
    () => converter.plan(wrong),
    'mem.safetensors: tensor "model.layers.0.self_attn.qkv_proj.weight" has shape [6,2] but ' +
      "config.json implies [4,2]",
  );
  // Reading goes through the same checks before the first value.
  await assert.rejects(async () => {
    for await (const _ of converter.convert(wrong)) { /* drain */ }
  }, /has shape \[6,2\]/);
});
