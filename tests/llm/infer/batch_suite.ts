/**
 * Batched generation checks that every engine runs (registered by batch_generate_test.ts on the
 * stock cpu backend and by batch_generate_fast_engine_test.ts on the cpu engine with BLAS and the
 * fused causal softmax): padding must not change any row's tokens.
 */
import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { batchGenerate, batchGenerateRows } from "../../../llm/infer/batch_generate.ts";
import type { GPTConfig } from "../../../llm/model/config.ts";
import { generate } from "../../../llm/model/generate.ts";
import { GPTModel } from "../../../llm/model/gpt.ts";

export const TINY: GPTConfig = {
  vocab_size: 61,
  context_length: 24,
  emb_dim: 24,
  n_heads: 3,
  n_layers: 2,
  drop_rate: 0.1,
  qkv_bias: true,
};

/** GPT-2 124M's dimensions with two blocks: realistic matrix shapes, quick to build. */
export const REALISTIC: GPTConfig = {
  vocab_size: 50257,
  context_length: 1024,
  emb_dim: 768,
  n_heads: 12,
  n_layers: 2,
  drop_rate: 0.0,
  qkv_bias: false,
};

/** Deterministic pseudo-random prompts of the given lengths. */
export function prompts(lengths: number[], vocab: number, salt = 0): number[][] {
  return lengths.map((n, r) =>
    Array.from({ length: n }, (_, i) => (i * 7919 + r * 104729 + salt * 31 + 3) % vocab)
  );
}

async function oneByOne(
  model: GPTModel,
  rows: number[][],
  options: Parameters<typeof generate>[2],
): Promise<number[][]> {
  const out = [];
  for (const prompt of rows) out.push(await generate(model, prompt, options));
  return out;
}

/**
 * An end-of-text id that stops some rows early and not others: the token one row produces at
 * its third step in a run without a stop token, provided some other row never produces it.
 */
function pickStopToken(runs: number[][]): number | undefined {
  for (const run of runs) {
    const candidate = run[2];
    if (candidate === undefined) continue;
    if (runs.some((other) => !other.includes(candidate))) return candidate;
  }
  return undefined;
}

export function registerBatchTests(
  label: string,
  checkEngine: () => void,
  options: { realisticDims?: boolean } = {},
): void {
  Deno.test(`[${label}] a left-padded row gets the logits it gets alone`, async () => {
    checkEngine();
    const model = new GPTModel(TINY, { seed: 3 });
    const [short, long] = prompts([3, 9], TINY.vocab_size);
    const alone = model.forward(tf.tensor2d([short], undefined, "int32"));
    const padded = model.forward(
      tf.tensor2d([[0, 0, 0, 0, 0, 0, ...short], long], undefined, "int32"),
      { padding: [6, 0] },
    );
    const aloneValues = await alone.data();
    const paddedValues = await padded.data();
    const v = TINY.vocab_size;
    // Real positions of row 0 are slots 6..8.
    const got = paddedValues.subarray(6 * v, 9 * v);
    for (let i = 0; i < got.length; i++) {
      assert.ok(
        Math.abs(got[i] - aloneValues[i]) < 1e-5,
        `logit ${i}: ${got[i]} vs ${aloneValues[i]}`,
      );
    }
    const longAlone = await model.forward(tf.tensor2d([long], undefined, "int32")).data();
    const longPadded = paddedValues.subarray(9 * v, 18 * v);
    for (let i = 0; i < longPadded.length; i++) {
      assert.ok(Math.abs(longPadded[i] - longAlone[i]) < 1e-5, `long row logit ${i}`);
    }
    assert.ok(paddedValues.every(Number.isFinite), "pad slots stay finite");
    tf.dispose([alone, padded]);
    model.dispose();
  });

  Deno.test(`[${label}] bad padding is refused with the reason`, () => {
    checkEngine();
    const model = new GPTModel(TINY, { seed: 3 });
    const ids = tf.tensor2d([[1, 2, 3], [4, 5, 6]], undefined, "int32");
    assert.throws(() => model.forward(ids, { padding: [0] }), /padding has 1 entries for 2 rows/);
    assert.throws(() => model.forward(ids, { padding: [0, 3] }), /padding\[1\] = 3, expected/);
    ids.dispose();
    model.dispose();
  });

  Deno.test(`[${label}] greedy batched decoding equals one-by-one, rows stopping early`, async () => {
    checkEngine();
    const model = new GPTModel(TINY, { seed: 7 });
    const rows = prompts([5, 1, 9, 3, 12, 2], TINY.vocab_size);
    const maxNewTokens = 10;
    const free = await oneByOne(model, rows, { maxNewTokens });
    assert.deepEqual(await batchGenerate(model, rows, { maxNewTokens }), free);

    const eosId = pickStopToken(free);
    assert.ok(eosId !== undefined, "some token stops one row and not another");
    const stopped = await oneByOne(model, rows, { maxNewTokens, eosId });
    const lengths = stopped.map((r) => r.length);
    assert.ok(Math.min(...lengths) < maxNewTokens && Math.max(...lengths) === maxNewTokens);
    const order: number[] = [];
    const batched: number[][] = [];
    for await (const { row, tokens } of batchGenerateRows(model, rows, { maxNewTokens, eosId })) {
      order.push(row);
      batched[row] = tokens;
    }
    assert.deepEqual(batched, stopped);
    // Rows are yielded as they finish: the shortest first.
    assert.equal(stopped[order[0]].length, Math.min(...lengths));
    model.dispose();
  });

  Deno.test(`[${label}] continuous batching (maxRows): freed rows take waiting prompts`, async () => {
    checkEngine();
    const model = new GPTModel(TINY, { seed: 7 });
    // Lengths vary both ways, so joined caches are padded on either side.
    const rows = prompts([5, 1, 9, 3, 12, 2, 7], TINY.vocab_size, 3);
    const maxNewTokens = 9;
    const free = await oneByOne(model, rows, { maxNewTokens });
    const eosId = pickStopToken(free);
    assert.ok(eosId !== undefined, "some token stops one row and not another");
    const options = { maxNewTokens, eosId };
    const stopped = await oneByOne(model, rows, options);
    assert.ok(stopped.some((r) => r.length < maxNewTokens), "a row stops early");
    for (const maxRows of [1, 2, 3, 5]) {
      let widest = 0;
      const got = await batchGenerate(model, rows, {
        ...options,
        maxRows,
        onStep: ({ activeRows }) => widest = Math.max(widest, activeRows),
      });
      assert.deepEqual(got, stopped, `maxRows ${maxRows}`);
      assert.ok(widest <= maxRows, `at most ${maxRows} rows at once, saw ${widest}`);
    }
    // The same without a stop token: every row runs its full budget.
    assert.deepEqual(await batchGenerate(model, rows, { maxNewTokens, maxRows: 3 }), free);
    model.dispose();
  });

  Deno.test(`[${label}] seeded sampling: each row draws as it would alone`, async () => {
    checkEngine();
    const model = new GPTModel(TINY, { seed: 9 });
    const rows = prompts([4, 7, 1], TINY.vocab_size, 1);
    const options = { maxNewTokens: 8, temperature: 1.4, topK: 10, seed: 42 };
    const alone = await oneByOne(model, rows, options);
    assert.deepEqual(await batchGenerate(model, rows, options), alone);
    // And the seed matters (a check that sampling is on).
    const other = await batchGenerate(model, rows, { ...options, seed: 43 });
    assert.notDeepEqual(other, alone);
    model.dispose();
  });

  Deno.test(`[${label}] rows that outgrow the window are decoded with the sliding window`, async () => {
    checkEngine();
    const model = new GPTModel(TINY, { seed: 2 });
    // context 24: 30 > window (cropped), 20 + 8 - 1 > 24 (slides), 4 fits.
    const rows = prompts([30, 20, 4], TINY.vocab_size, 2);
    const options = { maxNewTokens: 8 };
    assert.deepEqual(
      await batchGenerate(model, rows, options),
      await oneByOne(model, rows, options),
    );
    model.dispose();
  });

  Deno.test(`[${label}] an aborted batch stops with the signal's reason`, async () => {
    checkEngine();
    const model = new GPTModel(TINY, { seed: 2 });
    const controller = new AbortController();
    const before = tf.memory().numTensors;
    let steps = 0;
    await assert.rejects(
      batchGenerate(model, prompts([3, 5], TINY.vocab_size), {
        maxNewTokens: 10,
        signal: controller.signal,
        onStep: () => {
          if (++steps === 3) controller.abort(new Error("stop here"));
        },
      }),
      /stop here/,
    );
    assert.equal(steps, 3);
    assert.equal(tf.memory().numTensors, before, "the cache is freed");
    model.dispose();
  });

  Deno.test({
    name: `[${label}] realistic dims (768 wide, 50,257 vocab, 2 blocks): batched = one-by-one`,
    ignore: !options.realisticDims,
    fn: async () => {
      checkEngine();
      const model = new GPTModel(REALISTIC, { seed: 123 });
      const rows = prompts([17, 4, 30, 9], REALISTIC.vocab_size, 5);
      const maxNewTokens = 6;
      const free = await oneByOne(model, rows, { maxNewTokens });
      assert.deepEqual(await batchGenerate(model, rows, { maxNewTokens }), free);
      const eosId = pickStopToken(free);
      assert.ok(eosId !== undefined, "some token stops one row and not another");
      const options = { maxNewTokens, eosId };
      const stopped = await oneByOne(model, rows, options);
      assert.ok(stopped.some((r) => r.length < maxNewTokens), "a row stops early");
      assert.deepEqual(await batchGenerate(model, rows, options), stopped);
      model.dispose();
    },
  });
}
