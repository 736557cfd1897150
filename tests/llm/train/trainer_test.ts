import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { join } from "node:path";
import { getEncoding } from "js-tiktoken";
import { sharedFixture, withTempDir } from "../../fixtures.ts";
import type { GPTConfig } from "../../../llm/model/config.ts";
import { GPTModel } from "../../../llm/model/gpt.ts";
import { getStateDict, loadModel, saveModel } from "../../../llm/model/weights_io.ts";
import { AdamW } from "../../../llm/train/adamw.ts";
import { loadAdamWState, saveAdamWState } from "../../../llm/train/optimizer_io.ts";
import {
  calcLossBatch,
  calcLossLoader,
  evaluateModel,
  toIdTensor,
  type TokenBatch as Batch,
  trainStep,
} from "../../../llm/train/trainer.ts";
import { useCpuBackend } from "../model/tf_setup.ts";

await useCpuBackend();

const TOKENS = 16;

/**
 * Batches of the opening of "The Verdict" (GPT-2 BPE), with the token ids renumbered densely
 * so a tiny model can use a small vocabulary: [batch 2, 16 tokens] windows, stride 16.
 */
async function verdictBatches(): Promise<{ batches: Batch[]; vocabSize: number }> {
  const text = await Deno.readTextFile(sharedFixture("workshop", "the-verdict.txt"));
  const ids = getEncoding("gpt2").encode(text.slice(0, 2000));
  const dense = new Map<number, number>();
  const compact = ids.map((id) => dense.get(id) ?? dense.set(id, dense.size).get(id)!);
  const batches: Batch[] = [];
  for (
    let start = 0;
    start + 2 * TOKENS + 1 <= compact.length && batches.length < 4;
    start += 2 * TOKENS
  ) {
    const rows = [0, 1].map((r) => start + r * TOKENS);
    batches.push({
      inputs: rows.map((s) => compact.slice(s, s + TOKENS)),
      targets: rows.map((s) => compact.slice(s + 1, s + TOKENS + 1)),
    });
  }
  return { batches, vocabSize: dense.size };
}

const configFor = (vocabSize: number): GPTConfig => ({
  vocab_size: vocabSize,
  context_length: TOKENS,
  emb_dim: 32,
  n_heads: 4,
  n_layers: 2,
  drop_rate: 0.1,
  qkv_bias: false,
});

Deno.test("training on The Verdict drives the loss down (and dropout stays off in evaluation)", async () => {
  const { batches, vocabSize } = await verdictBatches();
  assert.equal(batches.length, 4);
  const model = new GPTModel(configFor(vocabSize), { seed: 123 });
  const optimizer = new AdamW(model.trainableParameters(), { lr: 1e-2, weightDecay: 0.1 });
  const initial = await evaluateModel(model, batches, batches.slice(0, 1), 4);
  // Untrained: close to ln(vocab) (REFERENCE.md's 10.99 for 50,257 is the same effect).
  assert.ok(
    Math.abs(initial.trainLoss - Math.log(vocabSize)) < 1.5,
    `initial ${initial.trainLoss}`,
  );
  assert.deepEqual(
    await evaluateModel(model, batches, batches.slice(0, 1), 4),
    initial,
    "evaluation is deterministic",
  );
  for (let epoch = 0; epoch < 6; epoch++) {
    for (const batch of batches) {
      const { loss } = await trainStep(model, optimizer, batch);
      assert.ok(Number.isFinite(loss));
    }
  }
  const trained = await evaluateModel(model, batches, batches.slice(0, 1), 4);
  assert.ok(
    trained.trainLoss < initial.trainLoss / 2,
    `train loss ${initial.trainLoss} → ${trained.trainLoss}`,
  );
  model.dispose();
});

Deno.test("calcLossLoader averages the first numBatches batches, from sync or async sources", async () => {
  const { batches, vocabSize } = await verdictBatches();
  const model = new GPTModel(configFor(vocabSize), { seed: 1 });
  const each: number[] = [];
  for (const batch of batches) {
    const { inputs, targets } = batch as { inputs: number[][]; targets: number[][] };
    const [x, y] = [toIdTensor(inputs), toIdTensor(targets)];
    const loss = calcLossBatch(model, x, y);
    each.push((await loss.data())[0]);
    tf.dispose([x, y, loss]);
  }
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const close = (a: number, b: number) => assert.ok(Math.abs(a - b) < 1e-6, `${a} vs ${b}`);
  close(await calcLossLoader(model, batches), mean(each));
  close(await calcLossLoader(model, batches, 2), mean(each.slice(0, 2)));
  close(await calcLossLoader(model, batches, 99), mean(each));
  async function* slowly() {
    for (const batch of batches) yield batch;
  }
  close(await calcLossLoader(model, slowly(), 3), mean(each.slice(0, 3)));
  // Pairs and flat typed arrays are accepted too.
  const { inputs, targets } = batches[0] as { inputs: number[][]; targets: number[][] };
  const flat = { shape: [2, TOKENS] as const, data: Int32Array.from(inputs.flat()) };
  close(await calcLossLoader(model, [[flat, targets]]), each[0]);
  assert.ok(Number.isNaN(await calcLossLoader(model, [])));
  assert.ok(Number.isNaN(await calcLossLoader(model, batches, 0)));
  model.dispose();
});

Deno.test("training resumed from saved weights, optimizer state file and RNG state ends bit-identical", async () => {
  const { batches, vocabSize } = await verdictBatches();
  const config = configFor(vocabSize); // drop_rate 0.1: the dropout RNG state matters
  const straight = new GPTModel(config, { seed: 7 });
  const straightOptimizer = new AdamW(straight.trainableParameters(), {
    lr: 1e-3,
    weightDecay: 0.1,
  });
  for (const batch of batches) {
    await trainStep(straight, straightOptimizer, batch, { maxGradNorm: 1 });
  }

  await withTempDir(async (dir) => {
    const first = new GPTModel(config, { seed: 7 });
    const firstOptimizer = new AdamW(first.trainableParameters(), { lr: 1e-3, weightDecay: 0.1 });
    for (const batch of batches.slice(0, 2)) {
      await trainStep(first, firstOptimizer, batch, { maxGradNorm: 1 });
    }
    await saveModel(dir, first);
    const optimizerPath = join(dir, "optimizer.safetensors");
    const shapes = new Map(first.namedParameters().map(([name, v]) => [name, v.shape]));
    await saveAdamWState(optimizerPath, firstOptimizer.getState(), shapes);
    const rngState = first.dropoutRng.state;
    first.dispose();

    const resumed = await loadModel(dir);
    resumed.dropoutRng.state = rngState;
    const optimizer = new AdamW(resumed.trainableParameters(), { lr: 1e-3, weightDecay: 0.1 });
    optimizer.setState(await loadAdamWState(optimizerPath), optimizerPath);
    assert.equal(optimizer.step, 2);
    for (const batch of batches.slice(2)) {
      await trainStep(resumed, optimizer, batch, { maxGradNorm: 1 });
    }

    const want = await getStateDict(straight);
    for (const [name, tensor] of await getStateDict(resumed)) {
      assert.deepEqual(tensor.data, want.get(name)!.data, name);
    }
    resumed.dispose();
  });
  straight.dispose();
});
