import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { localFixture } from "../../fixtures.ts";
import type { GPTConfig } from "../../../llm/model/config.ts";
import { generate } from "../../../llm/model/generate.ts";
import { GPTModel } from "../../../llm/model/gpt.ts";
import { Embedding, type LinearLayer } from "../../../llm/model/layers.ts";
import { SeededRandom } from "../../../llm/random.ts";
import { readSafetensorsHeader } from "../../../llm/weights/safetensors.ts";
import { AdamW } from "../../../llm/train/adamw.ts";
import { trainStep } from "../../../llm/train/trainer.ts";
import { useCpuBackend } from "./tf_setup.ts";

await useCpuBackend();

const SMALL: GPTConfig = {
  vocab_size: 61,
  context_length: 12,
  emb_dim: 16,
  n_heads: 4,
  n_layers: 2,
  drop_rate: 0.1,
  qkv_bias: false,
};

async function values(t: tf.Tensor): Promise<Float32Array> {
  return (await t.data()) as Float32Array;
}

Deno.test("forward gives logits [batch, tokens, vocab] and frees its intermediates", async () => {
  const model = new GPTModel(SMALL);
  const ids = tf.tensor2d([[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]], undefined, "int32");
  const before = tf.memory().numTensors;
  const logits = model.forward(ids);
  assert.deepEqual(logits.shape, [2, 5, SMALL.vocab_size]);
  assert.equal(tf.memory().numTensors, before + 1);
  assert.ok((await values(logits)).every(Number.isFinite));
  tf.dispose([ids, logits]);
  model.dispose();
});

Deno.test("forward with gather computes the head only at the given flat positions, the same logits", async () => {
  const model = new GPTModel(SMALL);
  const ids = tf.tensor2d([[1, 2, 3, 4, 5], [6, 7, 8, 9, 10]], undefined, "int32");
  const full = await values(model.forward(ids));
  const positions = [4, 0, 7, 9]; // row 0 pos 4, row 0 pos 0, row 1 pos 2, row 1 pos 4
  const before = tf.memory().numTensors;
  const gathered = model.forward(ids, { gather: positions });
  assert.deepEqual(gathered.shape, [1, positions.length, SMALL.vocab_size]);
  assert.equal(tf.memory().numTensors, before + 1);
  const got = await values(gathered);
  const vocab = SMALL.vocab_size;
  positions.forEach((flat, i) => {
    for (let v = 0; v < vocab; v++) {
      assert.ok(Math.abs(got[i * vocab + v] - full[flat * vocab + v]) < 1e-5, `position ${flat}`);
    }
  });
  tf.dispose([ids, gathered]);
  model.dispose();
});

Deno.test("parameter names and shapes are those of the book's PyTorch state_dict", async () => {
  // The PyTorch reference wrote its state_dict (n_layers 2, qkv_bias true) into this fixture.
  const path = localFixture("parity", "qkv_bias", "weights.safetensors");
  const header = await readSafetensorsHeader(path);
  const config = JSON.parse(
    await Deno.readTextFile(localFixture("parity", "qkv_bias", "config.json")),
  );
  const model = new GPTModel(config, { init: "zeros" });
  const ours = new Map(model.namedParameters().map(([name, v]) => [name, v.shape]));
  const theirs = new Map([...header.tensors].map(([name, info]) => [name, info.shape]));
  assert.deepEqual(ours, theirs);
  model.dispose();
});

Deno.test("initialisation follows PyTorch's defaults and is seeded", async () => {
  const model = new GPTModel(SMALL, { seed: 7 });
  const params = new Map(model.namedParameters());
  // nn.Linear: U(-1/√in, 1/√in), variance bound²/3, for weight and bias.
  for (
    const [name, fanIn] of [["trf_blocks.0.ff.layers.0.weight", 16], [
      "trf_blocks.1.ff.layers.2.bias",
      64,
    ]] as const
  ) {
    const v = await values(params.get(name)!);
    const bound = 1 / Math.sqrt(fanIn);
    assert.ok(v.every((x) => Math.abs(x) <= bound), `${name} within ±${bound}`);
    const variance = v.reduce((s, x) => s + x * x, 0) / v.length;
    assert.ok(Math.abs(variance / (bound * bound / 3) - 1) < 0.25, `${name} variance ${variance}`);
  }
  // nn.Embedding: N(0, 1).
  const emb = await values(params.get("tok_emb.weight")!);
  const mean = emb.reduce((s, x) => s + x, 0) / emb.length;
  const std = Math.sqrt(emb.reduce((s, x) => s + (x - mean) ** 2, 0) / emb.length);
  assert.ok(Math.abs(mean) < 0.1 && Math.abs(std - 1) < 0.1, `embedding mean ${mean}, std ${std}`);
  // LayerNorm: scale ones, shift zeros.
  assert.ok((await values(params.get("final_norm.scale")!)).every((x) => x === 1));
  assert.ok((await values(params.get("trf_blocks.0.norm2.shift")!)).every((x) => x === 0));

  const same = new GPTModel(SMALL, { seed: 7 });
  const other = new GPTModel(SMALL, { seed: 8 });
  const name = "trf_blocks.1.att.W_value.weight";
  const w = await values(params.get(name)!);
  assert.deepEqual(await values(new Map(same.namedParameters()).get(name)!), w);
  assert.notDeepEqual(await values(new Map(other.namedParameters()).get(name)!), w);
  [model, same, other].forEach((m) => m.dispose());
});

Deno.test("attention is causal: a token never changes the logits of earlier positions", async () => {
  const model = new GPTModel(SMALL);
  const a = tf.tensor2d([[3, 1, 4, 1, 5, 9, 2, 6]], undefined, "int32");
  const b = tf.tensor2d([[3, 1, 4, 1, 5, 8, 8, 8]], undefined, "int32");
  const [la, lb] = [model.forward(a), model.forward(b)];
  const va = await values(la);
  const vb = await values(lb);
  const V = SMALL.vocab_size;
  assert.deepEqual(va.subarray(0, 5 * V), vb.subarray(0, 5 * V));
  assert.notDeepEqual(va.subarray(5 * V), vb.subarray(5 * V));
  tf.dispose([a, b, la, lb]);
  model.dispose();
});

Deno.test("dropout is active only in training, and reproducible from the RNG state", async () => {
  const model = new GPTModel({ ...SMALL, drop_rate: 0.5 });
  const ids = tf.tensor2d([[5, 4, 3, 2, 1, 0]], undefined, "int32");
  const run = async (training: boolean) => {
    const logits = model.forward(ids, { training });
    const v = (await values(logits)).slice();
    logits.dispose();
    return v;
  };
  const eval1 = await run(false);
  assert.deepEqual(await run(false), eval1, "eval is deterministic");
  const state = model.dropoutRng.state;
  const train1 = await run(true);
  assert.notDeepEqual(train1, eval1, "training applies dropout");
  assert.notDeepEqual(await run(true), train1, "each training pass draws new masks");
  model.dropoutRng.state = state;
  assert.deepEqual(await run(true), train1, "same RNG state, same masks");

  const noDrop = new GPTModel({ ...SMALL, drop_rate: 0 });
  const withTraining = noDrop.forward(ids, { training: true });
  const withoutTraining = noDrop.forward(ids);
  assert.deepEqual(await values(withTraining), await values(withoutTraining));
  tf.dispose([ids, withTraining, withoutTraining]);
  model.dispose();
  noDrop.dispose();
});

Deno.test("the embedding's scatter-add gradient equals tfjs's stock gather gradient", async () => {
  const rng = new SeededRandom(3);
  const embedding = new Embedding(11, 5, { mode: "random", rng });
  const ids = tf.tensor2d([[1, 3, 3, 10], [0, 3, 1, 7]], undefined, "int32"); // repeated ids
  const upstream = tf.randomNormal([2, 4, 5], 0, 1, "float32", 1);
  const ours = tf.grad((table: tf.Tensor) => {
    // Route through the layer (its variable is swapped for the traced input).
    const lookup = new Embedding(11, 5, { mode: "zeros", rng });
    const original = lookup.weight;
    (lookup as { weight: tf.Tensor }).weight = table;
    const out = tf.sum(tf.mul(lookup.apply(ids), upstream));
    original.dispose();
    return out;
  })(embedding.weight);
  const stock = tf.grad((table: tf.Tensor) => tf.sum(tf.mul(tf.gather(table, ids), upstream)))(
    embedding.weight,
  );
  const [o, s] = [await values(ours), await values(stock)];
  for (let i = 0; i < s.length; i++) {
    assert.ok(Math.abs(o[i] - s[i]) <= 1e-6, `element ${i}: ${o[i]} vs ${s[i]}`);
  }
  assert.ok(s.some((x) => x !== 0));
  tf.dispose([ids, upstream, ours, stock, embedding.weight]);
});

Deno.test("parameter count: the model's variables match countParameters, tied and untied", () => {
  for (const tiedHead of [false, true]) {
    const model = new GPTModel({ ...SMALL, qkv_bias: true }, { tiedHead, init: "zeros" });
    assert.equal(model.numParameters(), model.expectedNumParameters());
    assert.equal(
      model.numParameters(),
      model.namedParameters().reduce((s, [, v]) => s + v.size, 0) -
        (tiedHead ? SMALL.vocab_size * SMALL.emb_dim : 0),
    );
    model.dispose();
  }
});

Deno.test("a tied head shares the token embedding variable", () => {
  const model = new GPTModel(SMALL, { tiedHead: true });
  const params = new Map(model.namedParameters());
  assert.equal(params.get("out_head.weight"), params.get("tok_emb.weight"));
  assert.equal(model.uniqueParameters().length, model.namedParameters().length - 1);
  model.dispose();
});

Deno.test("frozen parameters are left out of training and stay unchanged", async () => {
  const model = new GPTModel(SMALL);
  model.freeze((name) => !name.startsWith("trf_blocks.1."));
  const trainable = model.trainableParameters().map(([name]) => name);
  assert.ok(trainable.length > 0 && trainable.every((n) => n.startsWith("trf_blocks.1.")));
  const frozen = new Map(model.namedParameters());
  const before = (await values(frozen.get("tok_emb.weight")!)).slice();
  const trainedBefore = (await values(frozen.get("trf_blocks.1.att.W_query.weight")!)).slice();
  const optimizer = new AdamW(model.trainableParameters(), { lr: 1e-2 });
  await trainStep(model, optimizer, { inputs: [[1, 2, 3, 4]], targets: [[2, 3, 4, 5]] });
  assert.deepEqual(await values(frozen.get("tok_emb.weight")!), before);
  assert.notDeepEqual(await values(frozen.get("trf_blocks.1.att.W_query.weight")!), trainedBefore);
  model.unfreeze();
  assert.equal(model.trainableParameters().length, model.uniqueParameters().length);
  model.dispose();
});

Deno.test("replaceLinears lets a wrapper take a linear layer's place (the LoRA hook)", async () => {
  const model = new GPTModel(SMALL);
  const ids = tf.tensor2d([[1, 2, 3]], undefined, "int32");
  const plain = model.forward(ids);
  const seen: string[] = [];
  model.replaceLinears((name, layer) => {
    seen.push(name);
    if (name !== "trf_blocks.0.att.W_value") return layer;
    const doubled: LinearLayer = {
      inFeatures: layer.inFeatures,
      outFeatures: layer.outFeatures,
      apply: (x) => tf.mul(layer.apply(x), 2),
      namedParameters: (prefix) => layer.namedParameters(prefix),
    };
    return doubled;
  });
  assert.equal(seen.length, SMALL.n_layers * 6 + 1);
  assert.ok(seen.includes("out_head") && seen.includes("trf_blocks.1.ff.layers.2"));
  const wrapped = model.forward(ids);
  assert.notDeepEqual(await values(wrapped), await values(plain));
  tf.dispose([ids, plain, wrapped]);
  model.dispose();
});

Deno.test("no tensor leaks across a training step and a cached generation", async () => {
  const model = new GPTModel(SMALL);
  const optimizer = new AdamW(model.trainableParameters(), { lr: 1e-3, weightDecay: 0.1 });
  const batch = { inputs: [[1, 2, 3, 4], [5, 6, 7, 8]], targets: [[2, 3, 4, -100], [6, 7, 8, 9]] };
  await trainStep(model, optimizer, batch, { maxGradNorm: 1e-3 }); // warm-up (lazy tfjs state)
  const before = tf.memory().numTensors;
  await trainStep(model, optimizer, batch, { maxGradNorm: 1e-3 });
  assert.equal(tf.memory().numTensors, before, "after a training step");
  // 20 new tokens from a 5-token prompt pass context_length 12: the cache is rebuilt.
  await generate(model, [1, 2, 3, 4, 5], { maxNewTokens: 20 });
  await generate(model, [1, 2, 3], { maxNewTokens: 5, temperature: 1, topK: 5, useCache: false });
  assert.equal(tf.memory().numTensors, before, "after generation");
  model.dispose();
});
