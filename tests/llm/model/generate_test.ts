import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import type { GPTConfig } from "../../../llm/model/config.ts";
import {
  argmax,
  generate,
  generateTextSimple,
  sampleNextToken,
} from "../../../llm/model/generate.ts";
import { GPTModel } from "../../../llm/model/gpt.ts";
import { SeededRandom } from "../../../llm/random.ts";
import { useCpuBackend } from "./tf_setup.ts";

await useCpuBackend();

const CONFIG: GPTConfig = {
  vocab_size: 53,
  context_length: 12,
  emb_dim: 24,
  n_heads: 3,
  n_layers: 2,
  drop_rate: 0.1,
  qkv_bias: true,
};

Deno.test("cached forward passes give the logits of the full forward pass", async () => {
  const model = new GPTModel(CONFIG, { seed: 5 });
  const tokens = [4, 8, 15, 16, 23, 42, 7, 1, 0];
  const full = model.forward(tf.tensor2d([tokens], undefined, "int32"));
  const fullValues = await full.data();
  const cache = model.newCache();
  // A 4-token prefix, then one token at a time, as generation feeds the cache.
  const chunks = [tokens.slice(0, 4), ...tokens.slice(4).map((t) => [t])];
  let position = 0;
  for (const chunk of chunks) {
    const logits = model.forward(tf.tensor2d([chunk], undefined, "int32"), { cache });
    const got = await logits.data();
    const want = fullValues.subarray(
      position * CONFIG.vocab_size,
      (position + chunk.length) * CONFIG.vocab_size,
    );
    for (let i = 0; i < want.length; i++) {
      assert.ok(Math.abs(got[i] - want[i]) < 1e-5, `position ${position}`);
    }
    position += chunk.length;
    logits.dispose();
  }
  assert.equal(cache.length, tokens.length);
  assert.throws(
    () => model.forward(tf.tensor2d([[1, 2, 3, 4]], undefined, "int32"), { cache }),
    /positions 9\.\.12 exceed context_length 12/,
  );
  cache.dispose();
  full.dispose();
  model.dispose();
});

Deno.test("greedy generation with the cache equals generation without it, past the context length", async () => {
  const model = new GPTModel(CONFIG, { seed: 11 });
  for (const prompt of [[7], [1, 2, 3, 4, 5], Array.from({ length: 12 }, (_, i) => (i * 5) % 53)]) {
    const cached = await generate(model, prompt, { maxNewTokens: 36 });
    const uncached = await generate(model, prompt, { maxNewTokens: 36, useCache: false });
    assert.equal(cached.length, 36);
    assert.deepEqual(cached, uncached, `prompt ${prompt}`);
    const [simple] = await generateTextSimple(model, [prompt], {
      maxNewTokens: 36,
      contextSize: CONFIG.context_length,
    });
    assert.deepEqual(simple.slice(prompt.length), cached, "the book's generate_text_simple");
    assert.ok(new Set(cached).size > 1, "a non-trivial continuation");
  }
  model.dispose();
});

Deno.test("seeded sampling is reproducible, and the same with and without the cache", async () => {
  const model = new GPTModel(CONFIG, { seed: 13 });
  const options = { maxNewTokens: 30, temperature: 1.5, topK: 20, topP: 0.95 };
  const a = await generate(model, [3, 1, 4], { ...options, seed: 1 });
  const b = await generate(model, [3, 1, 4], { ...options, seed: 1, useCache: false });
  const c = await generate(model, [3, 1, 4], { ...options, seed: 2 });
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
  // Resuming from the RNG object continues the same stream: 10 then 20 tokens = 30 tokens.
  const rng = new SeededRandom(1);
  const first = await generate(model, [3, 1, 4], { ...options, maxNewTokens: 10, rng });
  const rest = await generate(model, [3, 1, 4, ...first], { ...options, maxNewTokens: 20, rng });
  assert.deepEqual([...first, ...rest], a);
  model.dispose();
});

Deno.test("a prompt longer than the context is cropped to its last context_length tokens", async () => {
  const model = new GPTModel(CONFIG, { seed: 17 });
  const prompt = Array.from({ length: 20 }, (_, i) => (i * 7 + 3) % 53);
  const long = await generate(model, prompt, { maxNewTokens: 5 });
  const cropped = await generate(model, prompt.slice(-12), { maxNewTokens: 5 });
  assert.deepEqual(long, cropped);
  model.dispose();
});

Deno.test("generation stops at the stop token and streams each token", async () => {
  const model = new GPTModel(CONFIG, { seed: 19 });
  const free = await generate(model, [9, 9], { maxNewTokens: 12 });
  const stopAt = free.findIndex((t) => t !== free[0]);
  assert.ok(stopAt > 0, "the continuation has a second distinct token");
  const streamed: [number, number][] = [];
  const stopped = await generate(model, [9, 9], {
    maxNewTokens: 12,
    eosId: free[stopAt],
    onToken: (token, index) => {
      streamed.push([token, index]);
    },
  });
  assert.deepEqual(stopped, free.slice(0, stopAt));
  assert.deepEqual(streamed, stopped.map((t, i) => [t, i]));
  await assert.rejects(generate(model, [], { maxNewTokens: 1 }), /at least one token/);
  model.dispose();
});

Deno.test("sampling follows softmax(logits / temperature), top-k and top-p", () => {
  const probabilities = [0.5, 0.3, 0.2];
  const logits = Float32Array.from(probabilities, Math.log);
  const frequencies = (options: Parameters<typeof sampleNextToken>[1], draws = 20000) => {
    const rng = new SeededRandom(42);
    const counts = [0, 0, 0];
    for (let i = 0; i < draws; i++) counts[sampleNextToken(logits, options, rng)]++;
    return counts.map((c) => c / draws);
  };
  const near = (got: number[], want: number[]) =>
    got.forEach((g, i) => assert.ok(Math.abs(g - want[i]) < 0.015, `got ${got}, want ${want}`));

  near(frequencies({ temperature: 1 }), probabilities);
  near(frequencies({ temperature: 1, topK: 2 }), [0.5 / 0.8, 0.3 / 0.8, 0]);
  near(frequencies({ temperature: 1, topP: 0.6 }), [0.5 / 0.8, 0.3 / 0.8, 0]);
  near(frequencies({ temperature: 1, topP: 0.4 }), [1, 0, 0]);
  near(frequencies({ temperature: 1, topK: 1 }), [1, 0, 0]);
  near(frequencies({ temperature: 1000 }), [1 / 3, 1 / 3, 1 / 3]);
  // Temperature 0.5 squares the probabilities before renormalising.
  const squared = probabilities.map((p) => p * p);
  near(frequencies({ temperature: 0.5 }), squared.map((p) => p / squared.reduce((a, b) => a + b)));
  assert.equal(sampleNextToken(logits, {}, new SeededRandom(1)), 0, "greedy by default");
  assert.equal(argmax([1, 3, 3, 2]), 1, "first index on ties, as torch.argmax");
});
