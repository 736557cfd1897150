/**
 * Parity with the reference implementations on tiny random models in exact Hugging Face layout
 * (tests/fixtures/hf/, made by tools/hf_parity_fixtures.py: the book's llama3.py / qwen3.py /
 * Gemma 3 notebook, LitGPT for Phi-2 and Phi-3). For every case, loaded with loadHfModel on
 * plain tfjs `cpu`:
 *   - logits of the whole >= 200-token prompt at the recorded positions within 1e-4 (max abs);
 *   - 24 greedy tokens identical to the reference's, with and without the KV cache;
 *   - a twin folder (BF16 file, shards) loads to exactly the values of the case it copies.
 */
import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { localFixture } from "../../fixtures.ts";
import { loadHfModel } from "../../../llm/families/load.ts";
import { generate } from "../../../llm/model/generate.ts";
import { getStateDict } from "../../../llm/model/weights_io.ts";
import { useCpuBackend } from "../model/tf_setup.ts";

await useCpuBackend();

const HF_FIXTURES = localFixture("hf");
const EXPECTED = join(HF_FIXTURES, "expected");
const TOLERANCE = 1e-4;

/** expected/<case>.json: the reference's outputs, or `same_as` for a twin folder. */
interface Expected {
  case: string;
  family: string;
  reference: string;
  same_as?: string;
  input_ids: number[];
  logits_positions: number[];
  logits: number[][];
  greedy: { prompt_ids: number[]; new_ids: number[] };
  /** Gemma: the embedding scale the reference used (sqrt(hidden) rounded to the dtype). */
  emb_scale?: number;
}

function readExpected(name: string): Expected {
  return JSON.parse(Deno.readTextFileSync(join(EXPECTED, `${name}.json`)));
}

const cases = existsSync(EXPECTED)
  ? readdirSync(EXPECTED).filter((f) => f.endsWith(".json")).map((f) => f.slice(0, -5)).sort()
  : [];

Deno.test("the HF parity fixtures are present", () => {
  assert.ok(cases.length > 0, `no expected/*.json under ${HF_FIXTURES}`);
  for (const name of cases) {
    assert.ok(existsSync(join(HF_FIXTURES, name, "config.json")), `${name}: no model folder`);
  }
});

/** Largest |ours - reference| over the recorded positions. */
async function maxLogitDiff(
  model: Awaited<ReturnType<typeof loadHfModel>>["model"],
  expected: Expected,
): Promise<number> {
  const input = tf.tensor2d([expected.input_ids], undefined, "int32");
  const logits = model.forward(input, { gather: expected.logits_positions });
  const values = (await logits.data()) as Float32Array;
  tf.dispose([input, logits]);
  const vocab = model.config.vocab_size;
  let worst = 0;
  expected.logits_positions.forEach((position, row) => {
    const reference = expected.logits[row];
    assert.equal(reference.length, vocab, `position ${position}: vocabulary size`);
    for (let v = 0; v < vocab; v++) {
      worst = Math.max(worst, Math.abs(values[row * vocab + v] - reference[v]));
    }
  });
  return worst;
}

for (const name of cases) {
  const expected = readExpected(name);
  const twinOf = expected.same_as;
  const reference = twinOf ? readExpected(twinOf) : expected;

  Deno.test(`${name}: logits within ${TOLERANCE} and greedy identical (${reference.reference})`, async () => {
    const { model, family, config } = await loadHfModel(join(HF_FIXTURES, name));
    try {
      assert.equal(family.name, reference.family);
      if (reference.emb_scale !== undefined) assert.equal(config.emb_scale, reference.emb_scale);
      assert.ok(reference.input_ids.length >= 200, "the prompt must be >= 200 tokens");
      const diff = await maxLogitDiff(model, reference);
      console.log(`${name}: max |logit diff| ${diff.toExponential(2)}`);
      assert.ok(diff <= TOLERANCE, `${name}: max abs logit difference ${diff} > ${TOLERANCE}`);

      const { prompt_ids: prompt, new_ids: want } = reference.greedy;
      const maxNewTokens = want.length;
      const cached = await generate(model, prompt, { maxNewTokens, useCache: true });
      const uncached = await generate(model, prompt, { maxNewTokens, useCache: false });
      assert.deepStrictEqual(uncached, want, `${name}: greedy without the KV cache`);
      assert.deepStrictEqual(cached, want, `${name}: greedy with the KV cache`);
    } finally {
      model.dispose();
    }
  });

  if (twinOf) {
    Deno.test(`${name}: loads to exactly the values of ${twinOf}`, async () => {
      const twin = await loadHfModel(join(HF_FIXTURES, name));
      const original = await loadHfModel(join(HF_FIXTURES, twinOf));
      try {
        assert.deepStrictEqual(twin.config, original.config);
        const [a, b] = [await getStateDict(twin.model), await getStateDict(original.model)];
        assert.deepStrictEqual([...a.keys()], [...b.keys()]);
        for (const [key, tensor] of b) {
          assert.deepStrictEqual(a.get(key)!.data, tensor.data, `${name}: ${key}`);
        }
      } finally {
        twin.model.dispose();
        original.model.dispose();
      }
    });
  }
}
