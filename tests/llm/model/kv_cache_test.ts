/**
 * The key/value cache on the cpu engine (BLAS + fused ops): the in-place store (written at each
 * row's own length, attention read where it lies) and the tensor store must both give every row
 * the logits of one full pass over its tokens, through ragged rows, dropped and appended rows,
 * sliding windows (a ring of window slots in place), grouped-query heads and a cache that
 * outgrows its reserve. The gemma3 HF fixture decodes the reference's greedy tokens with the ring.
 */
import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { initEngine } from "../../../llm/engine/backend.ts";
import { blasInUse } from "../../../llm/engine/cpu_kernels.ts";
import { GPTModel } from "../../../llm/model/gpt.ts";
import type { KVCache } from "../../../llm/model/kv_cache.ts";
import { FAMILY_CONFIGS } from "./open_families.ts";
import { localFixture } from "../../fixtures.ts";
import { loadHfModel } from "../../../llm/families/load.ts";
import { generate } from "../../../llm/model/generate.ts";
import { batchGenerate } from "../../../llm/infer/batch_generate.ts";

await initEngine({ backend: "cpu", log: () => {} });

/** gpt2 (learned positions), qwen3 (GQA, head_dim ≠ dim/heads), gemma3 (window 3 < prompts). */
const CASES = FAMILY_CONFIGS.filter((f) => ["gpt2", "qwen3", "gemma3"].includes(f.name));

function sequence(length: number, vocab: number, salt: number): number[] {
  return Array.from({ length }, (_, i) => (i * 7919 + salt * 104729 + 3) % vocab);
}

/** Logits of the last position of one full pass over `ids` (no cache). */
async function fullPassLast(model: GPTModel, ids: number[]): Promise<Float32Array> {
  const input = tf.tensor2d([ids], undefined, "int32");
  const logits = model.forward(input, { lastTokenOnly: true });
  const values = (await logits.data()) as Float32Array;
  tf.dispose([input, logits]);
  return values;
}

/** Feeds `feed` (one list per cache row) and returns each row's last-position logits. */
async function step(model: GPTModel, cache: KVCache, feed: number[][]): Promise<Float32Array[]> {
  const input = tf.tensor2d(feed, undefined, "int32");
  const logits = model.forward(input, { cache, lastTokenOnly: true });
  const values = (await logits.data()) as Float32Array;
  tf.dispose([input, logits]);
  const vocab = model.config.vocab_size;
  return feed.map((_, r) => values.slice(r * vocab, (r + 1) * vocab));
}

function maxDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i] - b[i]));
  return max;
}

Deno.test("the cpu engine keeps its cache in place by default", () => {
  assert.ok(blasInUse(), "initEngine loaded a BLAS library");
  const model = new GPTModel(CASES[0].config, { seed: 1 });
  assert.equal(model.newCache().inPlace, true);
  assert.equal(model.newCache({ inPlace: false }).inPlace, false);
  model.dispose();
});

for (const inPlace of [true, false]) {
  const store = inPlace ? "in place" : "tensors";
  for (const { name, config, tiedHead } of CASES) {
    Deno.test(`[${store}] ${name}: ragged rows, dropped and appended, get their full-pass logits`, async () => {
      const model = new GPTModel(config, { tiedHead, seed: 4 });
      const vocab = config.vocab_size;
      // Three prompts of different lengths, each prefilled alone, then joined.
      const rows = [sequence(5, vocab, 1), sequence(9, vocab, 2), sequence(2, vocab, 3)];
      // A reserve of 2 slots: the cache must grow (twice) while prefilling and decoding.
      const cache = model.newCache({ inPlace, capacity: 2 });
      const tensorsBefore = tf.memory().numTensors;
      for (const prompt of rows) {
        const own = model.newCache({ inPlace, rows: 1 });
        const [got] = await step(model, own, [prompt]);
        assert.ok(maxDiff(got, await fullPassLast(model, prompt)) < 1e-4, `${name} prefill`);
        cache.appendRows(own);
        own.dispose();
      }
      assert.deepEqual(cache.lengths, [5, 9, 2]);
      for (let t = 0; t < 6; t++) {
        if (t === 3) {
          // The middle row finishes: the others go on from where they were.
          cache.keepRows([0, 2]);
          rows.splice(1, 1);
        }
        const feed = rows.map((row, r) => [(row[row.length - 1] * 13 + r + t) % vocab]);
        const got = await step(model, cache, feed);
        for (let r = 0; r < rows.length; r++) {
          rows[r].push(feed[r][0]);
          const want = await fullPassLast(model, rows[r]);
          const diff = maxDiff(got[r], want);
          assert.ok(diff < 1e-4, `${name} step ${t} row ${r}: max diff ${diff}`);
        }
      }
      assert.deepEqual(cache.lengths, rows.map((row) => row.length));
      if (inPlace) {
        assert.equal(tf.memory().numTensors, tensorsBefore, "the in-place store holds no tensors");
      }
      // A row appended after others were dropped and decoded lines up with them.
      const late = sequence(4, vocab, 9);
      const own = model.newCache({ inPlace });
      await step(model, own, [late]);
      cache.appendRows(own);
      own.dispose();
      rows.push(late);
      const feed = rows.map((row) => [row[0]]);
      const got = await step(model, cache, feed);
      for (let r = 0; r < rows.length; r++) {
        rows[r].push(feed[r][0]);
        const diff = maxDiff(got[r], await fullPassLast(model, rows[r]));
        assert.ok(diff < 1e-4, `${name} after appending, row ${r}: max diff ${diff}`);
      }
      cache.dispose();
      model.dispose();
    });
  }
}

Deno.test("a cache refuses what it cannot hold, with the reason", async () => {
  const { config } = CASES[0]; // context_length 40
  const model = new GPTModel(config, { seed: 2 });
  const cache = model.newCache();
  await step(model, cache, [[1, 2, 3], [4, 5, 6]]);
  assert.throws(() => model.forward(tf.tensor2d([[1]], undefined, "int32"), { cache }), {
    message: "KVCache: it holds 2 rows; the input has 1",
  });
  assert.throws(
    () => model.forward(tf.tensor2d([[1], [2]], undefined, "int32"), { cache, padding: [0, 0] }),
    /padding is for passes without a cache/,
  );
  assert.throws(() => cache.keepRows([1, 0]), /rows must ascend within 0\.\.1/);
  assert.throws(() => cache.truncate([3, 4]), /each within the row's \[3,3\]/);
  cache.truncate([3, 1]);
  assert.deepEqual(cache.lengths, [3, 1]);
  const long = new Array(38).fill(7);
  assert.throws(
    () => model.forward(tf.tensor2d([long, long], undefined, "int32"), { cache }),
    /positions 3\.\.40 exceed context_length 40/,
  );
  cache.nextPassKeeps([1, 3]);
  assert.throws(
    () => model.forward(tf.tensor2d([[1, 2], [3, 4]], undefined, "int32"), { cache }),
    /nextPassKeeps gave lengths \[1,3\]; the pass has 2 rows of 2 tokens/,
  );
  assert.throws(() => model.newCache({ inPlace: false }).nextPassKeeps([1]), /only the in-place/);
  cache.dispose();
  model.dispose();
});

Deno.test("[in place] gemma3: sliding layers hold a ring of window slots; rows longer than it keep their full-pass logits", async () => {
  const { config, tiedHead } = CASES.find((c) => c.name === "gemma3")!;
  const window = config.sliding_window!; // 3, layers sliding, sliding, full
  const model = new GPTModel(config, { tiedHead, seed: 6 });
  const vocab = config.vocab_size;
  // Prompts longer and shorter than the window, prefilled together right-padded (the pads must
  // never enter a ring), then decoded past the window with rows dropped and appended.
  const rows = [sequence(7, vocab, 1), sequence(2, vocab, 2), sequence(5, vocab, 3)];
  const width = 7;
  const cache = model.newCache({ capacity: 4 });
  cache.nextPassKeeps(rows.map((r) => r.length));
  const padded = rows.map((r) => [...r, ...new Array(width - r.length).fill(r[0])]);
  const input = tf.tensor2d(padded, undefined, "int32");
  const logits = model.forward(input, {
    cache,
    gather: rows.map((r, b) => b * width + r.length - 1),
  });
  const prefilled = (await logits.data()) as Float32Array;
  tf.dispose([input, logits]);
  assert.deepEqual(cache.lengths, [7, 2, 5]);
  for (const [b, row] of rows.entries()) {
    const diff = maxDiff(
      prefilled.slice(b * vocab, (b + 1) * vocab),
      await fullPassLast(model, row),
    );
    assert.ok(diff < 1e-4, `prefill row ${b}: max diff ${diff}`);
  }
  assert.deepEqual([0, 1, 2].map((l) => cache.slots(l)), [window, window, 8], "ring, ring, full");
  for (let t = 0; t < 8; t++) {
    if (t === 2) {
      cache.keepRows([0, 2]);
      rows.splice(1, 1);
    }
    if (t === 4) {
      const late = sequence(6, vocab, 7);
      const own = model.newCache({ rows: 1 });
      await step(model, own, [late]);
      cache.appendRows(own);
      own.dispose();
      rows.push(late);
    }
    const feed = rows.map((row, r) => [(row[row.length - 1] * 11 + r + t) % vocab]);
    const got = await step(model, cache, feed);
    for (let r = 0; r < rows.length; r++) {
      rows[r].push(feed[r][0]);
      const diff = maxDiff(got[r], await fullPassLast(model, rows[r]));
      assert.ok(diff < 1e-4, `step ${t} row ${r} (${rows[r].length} tokens): max diff ${diff}`);
    }
  }
  assert.deepEqual(cache.lengths, rows.map((row) => row.length));
  assert.equal(cache.slots(0), window, "the ring never grows past the window");
  // A row that went round its ring cannot be cut back (its old positions are overwritten).
  assert.throws(() => cache.truncate(cache.lengths.map((n) => n - 1)), /went round .* ring of 3/);
  cache.dispose();
  model.dispose();
});

Deno.test("[in place] gemma3 HF fixture: the ring decodes the reference's greedy tokens, as the tensor store does", async () => {
  const name = "gemma3";
  const expected = JSON.parse(
    await Deno.readTextFile(localFixture("hf", "expected", `${name}.json`)),
  );
  const { model } = await loadHfModel(localFixture("hf", name), { maxContext: 256 });
  try {
    const { prompt_ids: prompt, new_ids: want } = expected.greedy;
    // The prompt (12) + answer (24) run past the fixture's window of 32.
    assert.ok(prompt.length + want.length > model.resolved.sliding_window);
    assert.equal(model.newCache().inPlace, true, "sliding layers are no longer forced off");
    const ring = await generate(model, prompt, { maxNewTokens: want.length });
    assert.deepEqual(ring, want, "in place (ring)");
    // A longer prompt (60 > window), batched with the short one; then the tensor store.
    const long = (expected.input_ids as number[]).slice(0, 60);
    const batched = await batchGenerate(model, [long, prompt], { maxNewTokens: 12 });
    const alone = await generate(model, long, { maxNewTokens: 12 });
    assert.deepEqual(batched, [alone, want.slice(0, 12)], "batched ring = one by one");
    const newCache = model.newCache.bind(model);
    model.newCache = (options = {}) => newCache({ ...options, inPlace: false });
    try {
      assert.deepEqual(
        await generate(model, prompt, { maxNewTokens: want.length }),
        want,
        "tensors",
      );
      assert.deepEqual(await generate(model, long, { maxNewTokens: 12 }), alone, "tensors, long");
    } finally {
      model.newCache = newCache;
    }
  } finally {
    model.dispose();
  }
});
