/**
 * The open-family pieces of the config-driven model (issue 17), each against values computed
 * independently here: RMSNorm by its formula, RoPE against a float64 rotation, Llama 3's
 * frequency scaling against REFERENCE.md's formula, GQA against explicitly repeated kv heads,
 * the sliding window's mask; parameter counts of real model shapes; config validation; roles.
 */
import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { MultiHeadAttention, slidingWindowMask } from "../../../llm/model/attention.ts";
import {
  countParameters,
  type GPTConfig,
  type RopeScaling,
  validateConfig,
} from "../../../llm/model/config.ts";
import { GPTModel } from "../../../llm/model/gpt.ts";
import type { ParameterInit } from "../../../llm/model/init.ts";
import { type Linear, RMSNorm } from "../../../llm/model/layers.ts";
import { applyLora, countLoraParameters, loraConfig } from "../../../llm/model/lora.ts";
import {
  applyRope,
  llama3ScaledFrequencies,
  ropeInverseFrequencies,
  RotaryEmbedding,
} from "../../../llm/model/rope.ts";
import { SeededRandom } from "../../../llm/random.ts";
import { AdamW } from "../../../llm/train/adamw.ts";
import { trainStep } from "../../../llm/train/trainer.ts";
import { FAMILY_CONFIGS } from "./open_families.ts";
import { useCpuBackend } from "./tf_setup.ts";

await useCpuBackend();

function randomValues(size: number, seed: number): Float32Array {
  const rng = new SeededRandom(seed);
  return Float32Array.from({ length: size }, () => 2 * rng.next() - 1);
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i] - b[i]));
  return max;
}

Deno.test("RMSNorm is w·x/√(mean(x²) + eps), and (1 + w) with a unit offset", () => {
  const dim = 7;
  const x = randomValues(3 * dim, 1);
  const w = randomValues(dim, 2);
  for (const unitOffset of [false, true]) {
    const norm = new RMSNorm(dim, 1e-6, unitOffset);
    // A fresh norm scales by exactly 1 either way (Gemma stores zeros).
    assert.ok(norm.scale.dataSync().every((v) => v === (unitOffset ? 0 : 1)));
    norm.scale.assign(tf.tensor1d(w));
    const got = norm.apply(tf.tensor2d(x, [3, dim])).dataSync();
    const expected = new Float64Array(3 * dim);
    for (let r = 0; r < 3; r++) {
      let sum = 0;
      for (let i = 0; i < dim; i++) sum += x[r * dim + i] ** 2;
      const inv = 1 / Math.sqrt(sum / dim + 1e-6);
      for (let i = 0; i < dim; i++) {
        expected[r * dim + i] = x[r * dim + i] * inv * (unitOffset ? 1 + w[i] : w[i]);
      }
    }
    assert.ok(maxAbsDiff(got, expected) < 1e-6, `unitOffset ${unitOffset}`);
    norm.scale.dispose();
  }
});

Deno.test("RoPE inv_freq is θ^(-2i/d) and the rotation matches a float64 rotate-half, partial too", () => {
  const inv = ropeInverseFrequencies(8, 10000);
  for (let i = 0; i < 4; i++) {
    const exact = 10000 ** (-(2 * i) / 8);
    assert.ok(Math.abs(inv[i] - exact) <= 1e-6 * exact, `inv_freq[${i}]`);
  }
  // Heads of width 6 with the first 4 dims rotated (Phi-2's partial rotary), positions up to 299.
  const [batch, heads, headDim, rotary] = [1, 2, 6, 4];
  const positions = [0, 1, 7, 150, 299];
  const tokens = positions.length;
  const x = randomValues(batch * heads * tokens * headDim, 3);
  const table = new RotaryEmbedding(rotary, 10000, 512);
  const angles = table.angles([positions]);
  const got = applyRope(tf.tensor4d(x, [batch, heads, tokens, headDim]), angles).dataSync();
  const half = rotary / 2;
  for (let h = 0; h < heads; h++) {
    positions.forEach((p, t) => {
      const at = (h * tokens + t) * headDim;
      for (let i = 0; i < half; i++) {
        const theta = p * 10000 ** (-(2 * i) / rotary); // float64 throughout
        const [x1, x2] = [x[at + i], x[at + i + half]];
        // q' = q·cos + rotate_half(q)·sin with rotate_half(q) = cat(-q2, q1).
        assert.ok(Math.abs(got[at + i] - (x1 * Math.cos(theta) - x2 * Math.sin(theta))) < 1e-4);
        assert.ok(
          Math.abs(got[at + i + half] - (x2 * Math.cos(theta) + x1 * Math.sin(theta))) < 1e-4,
        );
      }
      for (let i = rotary; i < headDim; i++) assert.equal(got[at + i], x[at + i], "passes through");
    });
  }
  // Rotation keeps lengths, and position 0 is the identity.
  assert.equal(got[0], x[0]);
});

Deno.test("Llama 3 RoPE scaling follows REFERENCE.md's formula on Llama 3.2's parameters", () => {
  const scaling: RopeScaling = {
    factor: 32,
    low_freq_factor: 1,
    high_freq_factor: 4,
    original_context_length: 8192,
  };
  const d = 64;
  const theta = 500000;
  const got = ropeInverseFrequencies(d, theta, scaling);
  const kinds = new Set<string>();
  for (let i = 0; i < d / 2; i++) {
    const inv = theta ** (-(2 * i) / d);
    const wavelen = (2 * Math.PI) / inv;
    const [L0, lf, hf, f] = [8192, 1, 4, 32];
    let expected: number;
    if (wavelen < L0 / hf) {
      expected = inv;
      kinds.add("kept");
    } else if (wavelen > L0 / lf) {
      expected = inv / f;
      kinds.add("divided");
    } else {
      const s = (L0 / wavelen - lf) / (hf - lf);
      expected = (1 - s) * inv / f + s * inv;
      kinds.add("smoothed");
    }
    assert.ok(Math.abs(got[i] - expected) <= 2e-6 * expected, `inv_freq[${i}]`);
  }
  assert.deepEqual([...kinds].sort(), ["divided", "kept", "smoothed"]);
  // Kept frequencies are untouched, bit for bit.
  const plain = ropeInverseFrequencies(d, theta);
  assert.equal(llama3ScaledFrequencies(plain, scaling)[0], plain[0]);
});

Deno.test("GQA equals attention whose kv heads are repeated explicitly (the book's repeat_interleave)", async () => {
  const [dim, heads, kv, headDim, tokens] = [12, 6, 2, 5, 7];
  const init: ParameterInit = { mode: "random", rng: new SeededRandom(5) };
  const grouped = new MultiHeadAttention({
    dim,
    numHeads: heads,
    dropRate: 0,
    qkvBias: true,
    init,
    headDim,
    numKvGroups: kv,
    qkNorm: { eps: 1e-6, unitOffset: false },
  });
  const repeated = new MultiHeadAttention({
    dim,
    numHeads: heads,
    dropRate: 0,
    qkvBias: true,
    init,
    headDim,
    numKvGroups: heads,
    qkNorm: { eps: 1e-6, unitOffset: false },
  });
  // Query head h reads kv head floor(h / 3): repeat each kv head's rows 3 times.
  const repeatRows = async (layer: Linear, target: Linear) => {
    const w = await layer.weight.data();
    const b = await layer.bias!.data();
    const wRows: number[] = [];
    const bRows: number[] = [];
    for (let h = 0; h < heads; h++) {
      const g = Math.floor(h / (heads / kv));
      wRows.push(...w.slice(g * headDim * dim, (g + 1) * headDim * dim));
      bRows.push(...b.slice(g * headDim, (g + 1) * headDim));
    }
    target.weight.assign(tf.tensor2d(wRows, [heads * headDim, dim]));
    target.bias!.assign(tf.tensor1d(bRows));
  };
  await repeatRows(grouped.W_key as Linear, repeated.W_key as Linear);
  await repeatRows(grouped.W_value as Linear, repeated.W_value as Linear);
  for (const name of ["W_query", "out_proj"] as const) {
    (repeated[name] as Linear).weight.assign((grouped[name] as Linear).weight);
    (repeated[name] as Linear).bias!.assign((grouped[name] as Linear).bias!);
  }
  const x = tf.tensor3d(randomValues(2 * tokens * dim, 6), [2, tokens, dim]);
  const table = new RotaryEmbedding(headDim - 1, 10000, 64);
  const context = { training: false, rng: new SeededRandom(1) };
  const call = () => ({ rope: table.angles([Array.from({ length: tokens }, (_, i) => i)]) });
  const got = await grouped.apply(x, context, call()).data();
  const expected = await repeated.apply(x, context, call()).data();
  assert.ok(maxAbsDiff(got, expected) < 1e-5, `max diff ${maxAbsDiff(got, expected)}`);
});

Deno.test("the sliding-window mask hides exactly the keys window or more slots back", () => {
  const [window, queries, keys, offset] = [3, 4, 9, 5];
  const mask = slidingWindowMask(window, queries, keys, offset)!;
  assert.deepEqual(mask.shape, [1, 1, queries, keys]);
  const values = mask.dataSync();
  for (let i = 0; i < queries; i++) {
    for (let j = 0; j < keys; j++) {
      const hidden = offset + i - j >= window;
      assert.equal(values[i * keys + j], hidden ? -Infinity : 0, `query ${offset + i}, key ${j}`);
    }
  }
  // No key that far back yet: no mask at all.
  assert.equal(slidingWindowMask(3, 3, 3, 0), null);
});

Deno.test("a sliding layer's output at position i ignores tokens window or more positions back", async () => {
  const config: GPTConfig = {
    ...FAMILY_CONFIGS.find((f) => f.name === "gemma3")!.config,
    n_layers: 1,
    layer_types: ["sliding"],
    sliding_window: 4,
  };
  const model = new GPTModel(config, { seed: 2 });
  const ids = [5, 9, 14, 2, 33, 7, 8, 21, 40];
  const changed = [50, ...ids.slice(1)]; // only position 0 differs
  const run = async (row: number[]) =>
    await model.forward(tf.tensor2d([row], undefined, "int32")).data();
  const [a, b] = [await run(ids), await run(changed)];
  const v = config.vocab_size;
  for (let i = 0; i < ids.length; i++) {
    const diff = maxAbsDiff(a.subarray(i * v, (i + 1) * v), b.subarray(i * v, (i + 1) * v));
    if (i >= 4) assert.equal(diff, 0, `position ${i} sees past the window`);
    else assert.ok(diff > 1e-4, `position ${i} is inside the window and must change`);
  }
  // A full layer sees everything: the last position changes.
  const full = new GPTModel({ ...config, layer_types: ["full"] }, { seed: 2 });
  const last = async (row: number[]) =>
    (await full.forward(tf.tensor2d([row], undefined, "int32")).data()).slice(-v);
  assert.ok(maxAbsDiff(await last(ids), await last(changed)) > 1e-4);
  model.dispose();
  full.dispose();
});

Deno.test("parameter counts of real shapes: Qwen3-0.6B 596,049,920, Llama-3.2-1B 1,235,814,400, Gemma-3-270M, Phi-2, Phi-3-mini", () => {
  // Counted by hand from the HF shapes (tied embeddings where the checkpoint ties them):
  // Qwen3-0.6B: 151936·1024 + 28·(q 1024·2048 + k,v 2·1024·1024 + o 2048·1024 + qk norms 2·128
  //   + MLP 3·1024·3072 + norms 2·1024) + final norm 1024.
  const qwen3: GPTConfig = {
    vocab_size: 151936,
    context_length: 40960,
    emb_dim: 1024,
    n_heads: 16,
    n_layers: 28,
    drop_rate: 0,
    qkv_bias: false,
    head_dim: 128,
    n_kv_groups: 8,
    hidden_dim: 3072,
    mlp: "swiglu",
    norm: "rmsnorm",
    norm_eps: 1e-6,
    pos_emb: "rope",
    rope_theta: 1e6,
    qk_norm: true,
    attn_out_bias: false,
  };
  assert.equal(countParameters(qwen3, { tiedHead: true }), 596_049_920);
  // Llama-3.2-1B: 128256·2048 + 16·(q,o 2·2048·2048 + k,v 2·2048·512 + MLP 3·2048·8192
  //   + norms 2·2048) + 2048.
  const llama: GPTConfig = {
    vocab_size: 128256,
    context_length: 131072,
    emb_dim: 2048,
    n_heads: 32,
    n_layers: 16,
    drop_rate: 0,
    qkv_bias: false,
    n_kv_groups: 8,
    hidden_dim: 8192,
    mlp: "swiglu",
    norm: "rmsnorm",
    pos_emb: "rope",
    rope_theta: 500000,
    rope_scaling: {
      factor: 32,
      low_freq_factor: 1,
      high_freq_factor: 4,
      original_context_length: 8192,
    },
    attn_out_bias: false,
  };
  assert.equal(countParameters(llama, { tiedHead: true }), 1_235_814_400);
  // Gemma-3-270M (268,098,176 on its model card): four norms per block, QK-norm, 1 kv head.
  const gemma: GPTConfig = {
    vocab_size: 262144,
    context_length: 32768,
    emb_dim: 640,
    n_heads: 4,
    n_layers: 18,
    drop_rate: 0,
    qkv_bias: false,
    head_dim: 256,
    n_kv_groups: 1,
    hidden_dim: 2048,
    mlp: "geglu",
    norm: "rmsnorm",
    block: "sandwich",
    pos_emb: "rope",
    qk_norm: true,
    attn_out_bias: false,
  };
  assert.equal(countParameters(gemma, { tiedHead: true }), 268_098_176);
  // Phi-2 (2,779,683,840): biases everywhere, one LayerNorm per block, untied head with bias.
  const phi2: GPTConfig = {
    vocab_size: 51200,
    context_length: 2048,
    emb_dim: 2560,
    n_heads: 32,
    n_layers: 32,
    drop_rate: 0,
    qkv_bias: true,
    hidden_dim: 10240,
    block: "parallel",
    pos_emb: "rope",
    rotary_dim: 32,
    head_bias: true,
  };
  assert.equal(countParameters(phi2), 2_779_683_840);
  // Phi-3-mini-4k (3,821,079,552): untied, no biases.
  const phi3: GPTConfig = {
    vocab_size: 32064,
    context_length: 4096,
    emb_dim: 3072,
    n_heads: 32,
    n_layers: 32,
    drop_rate: 0,
    qkv_bias: false,
    hidden_dim: 8192,
    mlp: "swiglu",
    norm: "rmsnorm",
    pos_emb: "rope",
    attn_out_bias: false,
  };
  assert.equal(countParameters(phi3), 3_821_079_552);
});

Deno.test("every family config builds a model whose variables match countParameters and the contract's names", () => {
  for (const { name, config, tiedHead } of FAMILY_CONFIGS) {
    const model = new GPTModel(config, { tiedHead });
    assert.equal(model.numParameters(), countParameters(config, { tiedHead }), name);
    const names = new Set(model.namedParameters().map(([n]) => n));
    const rope = config.pos_emb === "rope";
    assert.equal(names.has("pos_emb.weight"), !rope, `${name}: pos_emb`);
    const gated = config.mlp === "swiglu" || config.mlp === "geglu";
    for (const part of gated ? ["fc1", "fc2", "fc3"] : ["layers.0", "layers.2"]) {
      assert.ok(names.has(`trf_blocks.0.ff.${part}.weight`), `${name}: ff.${part}`);
    }
    assert.equal(names.has("trf_blocks.0.att.q_norm.scale"), config.qk_norm === true, name);
    assert.equal(names.has("trf_blocks.0.norm2.scale"), config.block !== "parallel", name);
    assert.equal(names.has("trf_blocks.0.post_ff_norm.scale"), config.block === "sandwich", name);
    assert.equal(names.has("final_norm.shift"), config.norm !== "rmsnorm", name);
    assert.equal(names.has("out_head.bias"), config.head_bias === true, name);
    assert.equal(names.has("trf_blocks.0.att.out_proj.bias"), config.attn_out_bias !== false, name);
    model.dispose();
  }
});

Deno.test("linear roles: linearLayers lists every linear layer; LoRA targets them by role", () => {
  const llama = FAMILY_CONFIGS.find((f) => f.name === "llama")!;
  const model = new GPTModel(llama.config, { tiedHead: true, seed: 4 });
  const layers = model.linearLayers();
  assert.deepEqual(
    layers.slice(0, 7).map(({ name, role }) => `${name}:${role}`),
    [
      "trf_blocks.0.att.W_query:q",
      "trf_blocks.0.att.W_key:k",
      "trf_blocks.0.att.W_value:v",
      "trf_blocks.0.att.out_proj:o",
      "trf_blocks.0.ff.fc1:gate",
      "trf_blocks.0.ff.fc2:up",
      "trf_blocks.0.ff.fc3:down",
    ],
  );
  assert.equal(layers.length, 2 * 7 + 1);
  assert.deepEqual(layers.at(-1)!.role, "head");
  // Every linear weight of the state_dict belongs to one listed layer.
  const weights = model.namedParameters().map(([n]) => n).filter((n) =>
    n.endsWith(".weight") && !n.includes("norm") && n !== "tok_emb.weight"
  );
  assert.deepEqual(weights.sort(), layers.map((l) => `${l.name}.weight`).sort());

  const ids = tf.tensor2d([[3, 1, 4, 1, 5]], undefined, "int32");
  const before = model.forward(ids).dataSync();
  const lora = loraConfig({ rank: 2, alpha: 4, targets: ["query", "value", "mlp"] });
  const adapters = applyLora(model, lora);
  assert.deepEqual([...adapters.layers.keys()].slice(0, 5), [
    "trf_blocks.0.att.W_query",
    "trf_blocks.0.att.W_value",
    "trf_blocks.0.ff.fc1",
    "trf_blocks.0.ff.fc2",
    "trf_blocks.0.ff.fc3",
  ]);
  assert.equal(adapters.numParameters(), countLoraParameters(llama.config, lora));
  // B starts at zero: the wrapped model computes what it did.
  assert.ok(maxAbsDiff(model.forward(ids).dataSync(), before) < 1e-6);
  model.dispose();
});

Deno.test("a training step runs through RoPE, RMSNorm, GQA and the gated MLPs and lowers the loss", async () => {
  for (const name of ["qwen3", "gemma3", "phi2"]) {
    const { config, tiedHead } = FAMILY_CONFIGS.find((f) => f.name === name)!;
    const model = new GPTModel(config, { tiedHead, seed: 9 });
    const optimizer = new AdamW(model.trainableParameters(), { lr: 1e-2 });
    const batch = { inputs: [[1, 2, 3, 4, 5, 6]], targets: [[2, 3, 4, 5, 6, 7]] };
    const first = await trainStep(model, optimizer, batch);
    let last = first;
    for (let i = 0; i < 4; i++) last = await trainStep(model, optimizer, batch);
    assert.ok(last.loss < first.loss, `${name}: ${first.loss} → ${last.loss}`);
    model.dispose();
  }
});

Deno.test("config validation names the key and what it expects", () => {
  const base = FAMILY_CONFIGS.find((f) => f.name === "gemma3")!.config;
  assert.deepEqual(validateConfig(base, "g.json"), base);
  const bad: [Record<string, unknown>, RegExp][] = [
    [{ mlp: "relu" }, /g\.json: "mlp" must be one of "gelu", "swiglu", "geglu", got "relu"/],
    [{ n_kv_groups: 3 }, /"n_heads" \(4\) must be divisible by "n_kv_groups" \(3\)/],
    [{ layer_types: ["full"] }, /"layer_types" must be a list of 3 entries/],
    [{ norm_eps: 0 }, /"norm_eps" must be a positive number/],
    [{ rope_scaling: { factor: 8 } }, /"rope_scaling" must be a mapping of positive numbers/],
    [{ rotary_dim: 7 }, /rotary width \(7.*must be even/],
    [{ pos_emb: "learned" }, /"rope_theta" applies only with pos_emb: "rope"/],
    [{ sliding_window: undefined }, /sliding layers but "sliding_window" is missing/],
    [{ qk_norm: "yes" }, /"qk_norm" must be true or false/],
    [{ rope_type: "llama3" }, /unknown key\(s\) rope_type/],
  ];
  for (const [change, message] of bad) {
    assert.throws(() => validateConfig({ ...base, ...change }, "g.json"), message);
  }
  // head_dim lifts the emb_dim % n_heads rule (Qwen3-0.6B: 16 heads of 128 in a 1024 model).
  const odd = { ...FAMILY_CONFIGS[0].config, emb_dim: 30, n_heads: 4 };
  assert.throws(() => validateConfig(odd), /divisible/);
  assert.equal(validateConfig({ ...odd, head_dim: 8 }).head_dim, 8);
});
