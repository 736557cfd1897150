/**
 * Generation checks for every family-shaped config, registered on the stock cpu backend
 * (open_generation_test.ts) and on the cpu engine with BLAS and the fused causal softmax
 * (open_generation_engine_test.ts): greedy ids are the same with and without the KV cache, and
 * batched (left-padded rows of different lengths, continuous batching) as one by one. RoPE
 * positions must follow the cache and each row's padding, and sliding windows must count slots
 * the same way in every path, or the ids part.
 */
import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { batchGenerate } from "../../../llm/infer/batch_generate.ts";
import { generate } from "../../../llm/model/generate.ts";
import { GPTModel } from "../../../llm/model/gpt.ts";
import { FAMILY_CONFIGS } from "./open_families.ts";

function prompts(lengths: number[], vocab: number, salt: number): number[][] {
  return lengths.map((n, r) =>
    Array.from({ length: n }, (_, i) => (i * 7919 + r * 104729 + salt * 31 + 3) % vocab)
  );
}

export function registerOpenGenerationTests(label: string, checkEngine: () => void): void {
  for (const { name, config, tiedHead } of FAMILY_CONFIGS) {
    Deno.test(`[${label}] ${name}: greedy ids equal with and without the KV cache, batched and one by one`, async () => {
      checkEngine();
      const model = new GPTModel(config, { tiedHead, seed: 11 });
      try {
        const rows = prompts([6, 1, 11, 3], config.vocab_size, name.length);
        const maxNewTokens = 12;
        const cached: number[][] = [];
        for (const prompt of rows) {
          const withCache = await generate(model, prompt, { maxNewTokens });
          const without = await generate(model, prompt, { maxNewTokens, useCache: false });
          assert.deepEqual(withCache, without, `${name}: prompt of ${prompt.length}`);
          cached.push(withCache);
        }
        // A model that always answers the same token would pass trivially.
        assert.ok(new Set(cached.flat()).size > 3, `${name}: varied output ${cached}`);
        assert.deepEqual(await batchGenerate(model, rows, { maxNewTokens }), cached, "batched");
        // Continuous batching joins caches with different padding.
        assert.deepEqual(
          await batchGenerate(model, rows, { maxNewTokens, maxRows: 2 }),
          cached,
          "maxRows 2",
        );
      } finally {
        model.dispose();
      }
    });
  }

  Deno.test(`[${label}] logits with the KV cache (prefill, then one token at a time) equal one full pass`, async () => {
    checkEngine();
    for (const { name, config, tiedHead } of FAMILY_CONFIGS) {
      const model = new GPTModel(config, { tiedHead, seed: 5 });
      const [ids] = prompts([14], config.vocab_size, 2);
      const full = await model.forward(tf.tensor2d([ids], undefined, "int32")).data();
      const cache = model.newCache();
      const parts = [ids.slice(0, 9), ...ids.slice(9).map((id) => [id])];
      const stepped: number[] = [];
      for (const part of parts) {
        stepped.push(
          ...await model.forward(tf.tensor2d([part], undefined, "int32"), { cache }).data(),
        );
      }
      let max = 0;
      for (let i = 0; i < full.length; i++) max = Math.max(max, Math.abs(full[i] - stepped[i]));
      assert.ok(max < 1e-4, `${name}: max diff ${max}`);
      cache.dispose();
      model.dispose();
    }
  });

  Deno.test(`[${label}] a left-padded RoPE row gets the logits it gets alone`, async () => {
    checkEngine();
    for (const { name, config, tiedHead } of FAMILY_CONFIGS.filter((f) => f.config.pos_emb)) {
      const model = new GPTModel(config, { tiedHead, seed: 3 });
      const [short, long] = prompts([4, 9], config.vocab_size, 1);
      const alone = await model.forward(tf.tensor2d([short], undefined, "int32")).data();
      const padded = await model.forward(
        tf.tensor2d([[0, 0, 0, 0, 0, ...short], long], undefined, "int32"),
        { padding: [5, 0] },
      ).data();
      const v = config.vocab_size;
      const got = padded.subarray(5 * v, 9 * v);
      let max = 0;
      for (let i = 0; i < got.length; i++) max = Math.max(max, Math.abs(got[i] - alone[i]));
      assert.ok(max < 1e-5, `${name}: max diff ${max}`);
      model.dispose();
    }
  });
}
