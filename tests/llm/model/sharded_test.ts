/**
 * Row shards of the vocabulary matrices (llm/model/sharded.ts) on the cpu backend, with an
 * injected binding limit: a sharded model is the unsharded model, split. The same checks run on
 * WebGPU in webgpu_parity_test.ts and webgpu_large_vocab_test.ts.
 */
import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { join } from "node:path";
import { withTempDir } from "../../fixtures.ts";
import type { GPTConfig } from "../../../llm/model/config.ts";
import { GPTModel } from "../../../llm/model/gpt.ts";
import { groupShards, planRowShards, stateNameOf } from "../../../llm/model/sharded.ts";
import {
  getStateDict,
  loadModel,
  loadStateDict,
  saveModel,
} from "../../../llm/model/weights_io.ts";
import { computeGradients } from "../../../llm/train/trainer.ts";
import { readSafetensorsFile } from "../../../llm/weights/safetensors.ts";
import { joinByStateName, maxAbsDiff, registerParityTests } from "./parity_suite.ts";
import { useCpuBackend } from "./tf_setup.ts";

await useCpuBackend();

// 101 × 64 vocabulary matrices take 25,856 bytes; at 4,100 bytes a shard holds at most 16 rows,
// so they split into 7 shards (15, 15, 15, 14, 14, 14, 14 rows), while 10 positions of logits (4,040 bytes) fit.
const CONFIG: GPTConfig = {
  vocab_size: 101,
  context_length: 8,
  emb_dim: 64,
  n_heads: 4,
  n_layers: 2,
  drop_rate: 0,
  qkv_bias: true,
};
const LIMIT = 4_100;
const INPUTS = [[0, 5, 16, 17, 100], [31, 32, 33, 99, 48]]; // shard edges and both table ends
const TARGETS = [[5, 16, 17, 100, 3], [-100, 33, 99, 48, 0]];

Deno.test("planRowShards: fewest near-equal blocks that fit, or one when the matrix fits", () => {
  assert.deepEqual(planRowShards(101, 64, 25_856), [101]);
  assert.deepEqual(planRowShards(101, 64, 4_100), [15, 15, 15, 14, 14, 14, 14]);
  // GPT-2's embedding on lavapipe: 147 MiB in two blocks under 128 MiB.
  assert.deepEqual(planRowShards(50_257, 768, 128 * 2 ** 20), [25_129, 25_128]);
  // gpt2-xl's: 321 MB in three.
  assert.deepEqual(planRowShards(50_257, 1_600, 128 * 2 ** 20), [16_753, 16_752, 16_752]);
  for (const [rows, cols, limit] of [[101, 64, 4_100], [50_257, 1_600, 128 * 2 ** 20]]) {
    const shards = planRowShards(rows, cols, limit);
    assert.equal(shards.reduce((a, b) => a + b, 0), rows);
    assert.ok(shards.every((n) => n * cols * 4 <= limit));
  }
  assert.throws(() => planRowShards(10, 2_000, 4_000), /one row of 2000 float32 values/);
});

Deno.test("groupShards joins consecutive shards into one state_dict tensor, and refuses gaps", () => {
  const v = (rows: number) => tf.variable(tf.zeros([rows, 3]));
  const [a, b, c] = [v(2), v(3), v(4)];
  const grouped = groupShards([["w[0:2]", a], ["w[2:5]", b], ["bias", c]]);
  assert.deepEqual(grouped.map((t) => [t.name, t.shape, t.parts.length]), [
    ["w", [5, 3], 2],
    ["bias", [4, 3], 1],
  ]);
  assert.deepEqual(stateNameOf("w[2:5]"), { stateName: "w", startRow: 2 });
  assert.deepEqual(stateNameOf("bias"), { stateName: "bias", startRow: 0 });
  assert.throws(() => groupShards([["w[0:2]", a], ["w[3:6]", b]]), /must start at row 0/);
  assert.throws(() => groupShards([["w[0:3]", a]]), /not 3-0 rows/);
  tf.dispose([a, b, c]);
});

for (const tiedHead of [false, true]) {
  Deno.test(`a sharded model (tiedHead ${tiedHead}) is the unsharded one split: init, logits, loss, gradients`, async () => {
    const whole = new GPTModel(CONFIG, { seed: 7, tiedHead });
    const sharded = new GPTModel(CONFIG, { seed: 7, tiedHead, maxTensorBytes: LIMIT });
    try {
      assert.equal(whole.vocabShards.length, 1);
      assert.equal(sharded.vocabShards.length, 7);
      assert.deepEqual(
        sharded.namedParameters().slice(0, 2).map(([name]) => name),
        ["tok_emb.weight[0:15]", "tok_emb.weight[15:30]"],
      );
      assert.equal(sharded.numParameters(), whole.numParameters());
      assert.equal(sharded.numParameters(), sharded.expectedNumParameters());

      // The seeded init draws the same numbers: identical state dicts, bit for bit.
      const wholeState = await getStateDict(whole);
      const shardedState = await getStateDict(sharded);
      assert.deepEqual([...shardedState.keys()], [...wholeState.keys()]);
      for (const [name, tensor] of wholeState) {
        assert.deepEqual(shardedState.get(name), tensor, name);
      }

      const ids = tf.tensor2d(INPUTS, undefined, "int32");
      const [wholeLogits, shardedLogits] = [whole.forward(ids), sharded.forward(ids)];
      assert.ok(maxAbsDiff(await shardedLogits.data(), await wholeLogits.data()) <= 1e-6);
      tf.dispose([ids, wholeLogits, shardedLogits]);

      const batch = { inputs: INPUTS, targets: TARGETS };
      const a = computeGradients(whole, batch);
      const b = computeGradients(sharded, batch);
      assert.ok(Math.abs((await a.loss.data())[0] - (await b.loss.data())[0]) <= 1e-6);
      const wholeGrads = await joinByStateName(whole, a.grads);
      const shardedGrads = await joinByStateName(sharded, b.grads);
      for (const [name, grad] of wholeGrads) {
        const error = maxAbsDiff(shardedGrads.get(name)!, grad);
        assert.ok(error <= 1e-6, `${name}: max abs diff ${error}`);
      }
      // The embedding gradient is non-zero in the rows the inputs use, in every shard they touch.
      const embGrad = shardedGrads.get("tok_emb.weight")!;
      for (const id of INPUTS.flat()) {
        assert.ok(embGrad.subarray(id * 64, id * 64 + 64).some((g) => g !== 0), `row ${id}`);
      }
      tf.dispose([a.loss, b.loss, ...a.grads.values(), ...b.grads.values()]);
    } finally {
      whole.dispose();
      sharded.dispose();
    }
  });
}

Deno.test("a sharded model saves the book's state_dict and loads files of either kind", async () => {
  await withTempDir(async (dir) => {
    const whole = new GPTModel(CONFIG, { seed: 3 });
    const sharded = new GPTModel(CONFIG, { seed: 3, maxTensorBytes: LIMIT });
    await saveModel(join(dir, "whole"), whole);
    await saveModel(join(dir, "sharded"), sharded);
    const wholeFile = await readSafetensorsFile(join(dir, "whole", "model.safetensors"));
    const shardedFile = await readSafetensorsFile(join(dir, "sharded", "model.safetensors"));
    assert.deepEqual([...shardedFile.tensors.keys()], [...wholeFile.tensors.keys()]);
    assert.ok(shardedFile.tensors.has("out_head.weight"));
    for (const [name, tensor] of wholeFile.tensors) {
      assert.deepEqual(shardedFile.tensors.get(name), tensor, name);
    }
    // loadModel builds for the current backend (cpu: whole); a sharded model loads the file too.
    const reloaded = await loadModel(join(dir, "sharded"));
    const target = new GPTModel(CONFIG, { init: "zeros", maxTensorBytes: LIMIT });
    loadStateDict(target, wholeFile.tensors, "whole/model.safetensors");
    const ids = tf.tensor2d(INPUTS, undefined, "int32");
    const logits = [whole.forward(ids), reloaded.forward(ids), target.forward(ids)];
    const [want, ...got] = await Promise.all(logits.map((t) => t.data()));
    for (const values of got) assert.ok(maxAbsDiff(values, want) <= 1e-6);
    tf.dispose([ids, ...logits]);
    for (const model of [whole, sharded, reloaded, target]) model.dispose();
  });
});

Deno.test("logits beyond the binding limit are an error saying how many positions fit", () => {
  const model = new GPTModel(CONFIG, { maxTensorBytes: LIMIT });
  const ids = tf.tensor2d([[1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6]], undefined, "int32");
  try {
    assert.throws(
      () => model.forward(ids),
      /logits \[12 positions, 101\] take 0\.0 MiB, more than .* use at most 10 positions/,
    );
    // Generation needs only the last position's logits, which fit.
    const last = model.forward(ids, { lastTokenOnly: true });
    assert.deepEqual(last.shape, [2, 1, 101]);
    last.dispose();
  } finally {
    ids.dispose();
    model.dispose();
  }
});

// The PyTorch parity suite with the fixture's 97 × 32 matrices in two shards (see
// webgpu_parity_test.ts for why two).
registerParityTests({
  label: "cpu, vocabulary in 2 shards",
  maxTensorBytes: 10_000,
  expectShards: 2,
});
