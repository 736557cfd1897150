/**
 * Training checkpoints across backends: a model whose vocabulary matrices are row shards (as on
 * WebGPU, forced here on cpu with a small binding limit) saves its AdamW moments under the
 * state_dict names, so the checkpoint resumes in an unsharded model (cpu) and continues exactly
 * as the sharded run does.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { withTempDir } from "../../fixtures.ts";
import type { GPTConfig } from "../../../llm/model/config.ts";
import { GPTModel } from "../../../llm/model/gpt.ts";
import { readStateTensor } from "../../../llm/model/sharded.ts";
import { AdamW } from "../../../llm/train/adamw.ts";
import {
  joinShardedState,
  loadCheckpoint,
  saveCheckpoint,
  splitShardedState,
} from "../../../llm/train/checkpoint.ts";
import { trainStep } from "../../../llm/train/trainer.ts";
import { readSafetensorsFile } from "../../../llm/weights/safetensors.ts";
import { useCpuBackend } from "../model/tf_setup.ts";

await useCpuBackend();

const CONFIG: GPTConfig = {
  vocab_size: 101,
  context_length: 8,
  emb_dim: 64,
  n_heads: 4,
  n_layers: 1,
  drop_rate: 0,
  qkv_bias: false,
};
// 101 × 64 floats = 25,856 bytes: 7 row shards at this limit.
const LIMIT = 4_100;
const batch = (step: number) => ({
  inputs: [[0, 5, 16, 17, 100], [31, 32, 33, 99, (48 + step) % 101]],
  targets: [[5, 16, 17, 100, 3], [32, 33, 99, 48, step % 101]],
});

Deno.test("a checkpoint of a sharded-vocabulary run stores whole moments and resumes unsharded, step for step", async () => {
  await withTempDir(async (dir) => {
    const sharded = new GPTModel(CONFIG, { seed: 5, maxTensorBytes: LIMIT });
    assert.ok(sharded.vocabShards.length > 1);
    const optimizer = new AdamW(sharded.trainableParameters(), { lr: 1e-2, weightDecay: 0.1 });
    for (let step = 0; step < 2; step++) await trainStep(sharded, optimizer, batch(step));
    const position = { epoch: 0, batch: 2, step: 2, tokensSeen: 20 };
    await saveCheckpoint(join(dir, "ckpt"), {
      model: sharded,
      optimizer,
      state: {
        position,
        runId: "t",
        extra: {},
      },
    });

    const file = await readSafetensorsFile(join(dir, "ckpt", "optimizer.safetensors"));
    assert.deepEqual(file.tensors.get("m.tok_emb.weight")?.shape, [101, 64]);
    assert.deepEqual(file.tensors.get("v.out_head.weight")?.shape, [101, 64]);
    assert.ok(![...file.tensors.keys()].some((name) => name.includes("[")), "no shard names");

    // Resume where the binding limit is the cpu's (no shards), then one more step on each.
    const resumed = await loadCheckpoint(
      join(dir, "ckpt"),
      (model) => new AdamW(model.trainableParameters(), { lr: 1e-2, weightDecay: 0.1 }),
    );
    assert.equal(resumed.model.vocabShards.length, 1);
    assert.equal(resumed.optimizer.step, 2);
    await trainStep(sharded, optimizer, batch(2));
    await trainStep(resumed.model, resumed.optimizer, batch(2));
    const a = joinShardedState(optimizer.getState(), optimizer.parameters).state;
    const b = resumed.optimizer.getState();
    for (const name of ["tok_emb.weight", "out_head.weight", "trf_blocks.0.ff.layers.0.weight"]) {
      const [ma, mb] = [a.m.get(name)!, b.m.get(name)!];
      assert.equal(ma.length, mb.length, name);
      let worst = 0;
      for (let i = 0; i < ma.length; i++) worst = Math.max(worst, Math.abs(ma[i] - mb[i]));
      assert.ok(worst < 1e-6, `${name}: first moments differ by ${worst}`);
    }
    const whole = (model: GPTModel) =>
      readStateTensor(model.stateTensors().find((t) => t.name === "tok_emb.weight")!);
    const [wa, wb] = [await whole(sharded), await whole(resumed.model)];
    let worst = 0;
    for (let i = 0; i < wa.length; i++) worst = Math.max(worst, Math.abs(wa[i] - wb[i]));
    assert.ok(worst < 1e-6, `tok_emb.weight differs by ${worst} after the resumed step`);
    sharded.dispose();
    resumed.model.dispose();
  });
});

Deno.test("joining and splitting sharded optimizer state round-trips; unknown entries are kept for setState to reject", () => {
  const sharded = new GPTModel(CONFIG, { seed: 6, maxTensorBytes: LIMIT });
  const params = sharded.trainableParameters();
  const state = {
    step: 3,
    m: new Map(params.map(([name, v], i) => [name, new Float32Array(v.size).fill(i)])),
    v: new Map(params.map(([name, v], i) => [name, new Float32Array(v.size).fill(-i)])),
  };
  const { state: joined, shapes } = joinShardedState(state, params);
  assert.deepEqual(shapes.get("tok_emb.weight"), [101, 64]);
  assert.ok(joined.m.size < state.m.size);
  const back = splitShardedState(joined, params);
  assert.deepEqual([...back.m.keys()].sort(), [...state.m.keys()].sort());
  for (const [name, values] of state.m) assert.deepEqual(back.m.get(name), values, name);
  for (const [name, values] of state.v) assert.deepEqual(back.v.get(name), values, name);
  joined.m.set("no.such.weight", new Float32Array(2));
  assert.ok(splitShardedState(joined, params).m.has("no.such.weight"));
  sharded.dispose();
});
