/**
 * The training loop: exact resume after an interrupt, the checkpoint hook the caller owns,
 * non-finite losses, and batches of varying length with ignored (-100) targets, as instruction
 * fine-tuning will feed it.
 */
import assert from "node:assert/strict";
import { type Batch, batchFromRows } from "../../../llm/data/batch.ts";
import type { GPTConfig } from "../../../llm/model/config.ts";
import { GPTModel } from "../../../llm/model/gpt.ts";
import { getStateDict } from "../../../llm/model/weights_io.ts";
import { AdamW } from "../../../llm/train/adamw.ts";
import {
  type EpochBatches,
  NonFiniteLossError,
  TrainingInterrupted,
  type TrainingState,
  trainModel,
} from "../../../llm/train/loop.ts";
import { useCpuBackend } from "../model/tf_setup.ts";

await useCpuBackend();

const CONFIG: GPTConfig = {
  vocab_size: 40,
  context_length: 12,
  emb_dim: 16,
  n_heads: 2,
  n_layers: 1,
  drop_rate: 0.1,
  qkv_bias: false,
};

/** Deterministic batches whose length varies from batch to batch, padded targets = -100. */
function ragged(epoch: number, index: number): Batch {
  const len = 4 + ((epoch * 3 + index) % 5);
  const rows = [0, 1].map((r) =>
    Array.from({ length: len }, (_, t) => (r * 7 + t * 3 + index) % 40)
  );
  const targets = rows.map((row, r) =>
    row.map((_, t) => (r === 1 && t >= len - 2 ? -100 : row[(t + 1) % len]))
  );
  return batchFromRows(rows, targets);
}

const source = (numBatches: number): EpochBatches => ({
  numBatches,
  *batches(epoch, start = 0) {
    for (let i = start; i < numBatches; i++) yield ragged(epoch, i);
  },
});

const fresh = () => {
  const model = new GPTModel(CONFIG, { seed: 5 });
  return { model, optimizer: new AdamW(model.trainableParameters(), { lr: 1e-2 }) };
};

const base = { train: source(4), val: source(2), epochs: 2, evalFreq: 3, evalIter: 2 };

async function weights(model: GPTModel): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  for (const [name, tensor] of await getStateDict(model)) out.set(name, tensor.data);
  return out;
}

Deno.test("loop: an interrupted run checkpoints through the caller's hook and resumes exactly", async () => {
  const straight = fresh();
  const whole = await trainModel({ ...straight, ...base, sample: () => Promise.resolve("s") });
  const expected = await weights(straight.model);
  straight.model.dispose();

  // Interrupt after step 3: the loop finishes that step, asks for a checkpoint, then throws.
  const first = fresh();
  const abort = new AbortController();
  let saved: { state: TrainingState; weights: Map<string, Float32Array> } | undefined;
  const error = await trainModel({
    ...first,
    ...base,
    sample: () => Promise.resolve("s"),
    progress: {
      start() {},
      update: (done) => done === 3 && abort.abort(),
      finish() {},
    },
    signal: abort.signal,
    saveCheckpoint: async (state) => {
      saved = { state: structuredClone(state), weights: await weights(first.model) };
      return "/where/it/is";
    },
  }).then(() => undefined, (e) => e);
  assert.ok(error instanceof TrainingInterrupted, String(error));
  assert.equal(error.step, 3);
  assert.match(error.message, /checkpoint saved in \/where\/it\/is; run again to resume/);
  assert.equal(saved?.state.position.step, 3);

  // Resume in the same model/optimizer (what loading the checkpoint restores, RNG included).
  const resumed = await trainModel({
    ...first,
    ...base,
    sample: () => Promise.resolve("s"),
    resume: saved!.state,
  });
  assert.deepEqual(resumed.history, whole.history);
  assert.deepEqual(resumed.samples, whole.samples);
  assert.deepEqual(await weights(first.model), expected);
  first.model.dispose();
});

Deno.test("loop: a non-finite loss stops the run, names the step and saves nothing", async () => {
  const { model, optimizer } = fresh();
  const saves: number[] = [];
  const error = await trainModel({
    model,
    optimizer,
    ...base,
    lrAt: (step) => (step >= 2 ? 1e30 : 1e-3),
    saveCheckpoint: (state) => {
      saves.push(state.position.step);
      return Promise.resolve("ckpt");
    },
    checkpointDue: () => true,
  }).then(() => undefined, (e) => e);
  model.dispose();
  assert.ok(error instanceof NonFiniteLossError, String(error));
  assert.match(error.message, /loss is (NaN|-?Infinity) at step \d+.*learning rate/);
  // Checkpoints were written while the losses were finite, never after.
  assert.ok(saves.every((step) => step <= error.step), `${saves} vs ${error.step}`);
});

Deno.test("loop: batches of varying length with ignored targets train and evaluate", async () => {
  const { model, optimizer } = fresh();
  const state = await trainModel({ model, optimizer, ...base, initialEval: true });
  model.dispose();
  assert.equal(state.position.step, 8);
  assert.equal(
    state.position.tokensSeen,
    [0, 1].flatMap((e) => [0, 1, 2, 3].map((i) => ragged(e, i).inputs.length)).reduce((a, b) =>
      a + b
    ),
  );
  assert.deepEqual(state.history.map((h) => h.step), [0, 3, 6]);
  assert.ok(state.initial && state.history.every((h) => Number.isFinite(h.train_loss)));
  assert.ok(state.history.at(-1)!.train_loss < state.initial.train_loss);
});
