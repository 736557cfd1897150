/**
 * Damaged checkpoints never resume: a flipped byte, a truncated or a missing file, and a
 * state.json overwritten with garbage are each reported, set aside as `checkpoint.corrupt-*`
 * (kept for inspection) and read as "no checkpoint", so the run starts from scratch.
 * A checkpoint that does not fit on the disk fails before writing, keeping the previous one.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { withTempDir } from "../../fixtures.ts";
import type { GPTConfig } from "../../../llm/model/config.ts";
import { GPTModel } from "../../../llm/model/gpt.ts";
import { AdamW } from "../../../llm/train/adamw.ts";
import {
  loadCheckpoint,
  readCheckpointState,
  saveCheckpoint,
} from "../../../llm/train/checkpoint.ts";
import { useCpuBackend } from "../model/tf_setup.ts";

await useCpuBackend();

const CONFIG: GPTConfig = {
  vocab_size: 50,
  context_length: 8,
  emb_dim: 16,
  n_heads: 2,
  n_layers: 1,
  drop_rate: 0,
  qkv_bias: false,
};
const position = { epoch: 0, batch: 3, step: 3, tokensSeen: 30 };

async function writeCheckpoint(dir: string) {
  const model = new GPTModel(CONFIG, { seed: 1 });
  const optimizer = new AdamW(model.trainableParameters(), { lr: 1e-3, weightDecay: 0.1 });
  await saveCheckpoint(join(dir, "checkpoint"), {
    model: model,
    optimizer,
    state: {
      position,
      runId: "r",
      extra: {},
    },
  });
  return join(dir, "checkpoint");
}

async function corruptEntries(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    if (e.name.startsWith("checkpoint.corrupt-")) names.push(e.name);
  }
  return names;
}

const damages: [string, (checkpoint: string) => Promise<void>, RegExp][] = [
  ["a flipped byte in the weights", async (c) => {
    const path = join(c, "model.safetensors");
    const bytes = await Deno.readFile(path);
    bytes[bytes.length - 7] ^= 0xff;
    await Deno.writeFile(path, bytes);
  }, /model\.safetensors has changed since it was written/],
  ["a truncated optimizer file", async (c) => {
    const path = join(c, "optimizer.safetensors");
    const bytes = await Deno.readFile(path);
    await Deno.writeFile(path, bytes.subarray(0, 100));
  }, /optimizer\.safetensors has 100 bytes, \d+ were written/],
  ["a missing weights file", async (c) => {
    await Deno.remove(join(c, "model.safetensors"));
  }, /model\.safetensors is missing/],
  ["garbage over state.json", async (c) => {
    await Deno.writeTextFile(join(c, "state.json"), "\u0000\u0001garbage");
  }, /state\.json is not valid/],
];

for (const [what, damage, expected] of damages) {
  Deno.test(`a checkpoint with ${what} is reported, set aside, and not resumed`, async () => {
    await withTempDir(async (dir) => {
      const checkpoint = await writeCheckpoint(dir);
      assert.equal((await readCheckpointState(checkpoint, () => {}))?.position.step, 3);
      await damage(checkpoint);
      const warnings: string[] = [];
      const state = await readCheckpointState(checkpoint, (line) => warnings.push(line));
      assert.equal(state, undefined, "a damaged checkpoint must not resume");
      assert.equal(warnings.length, 1);
      assert.match(warnings[0], expected);
      assert.match(warnings[0], /moved it to checkpoint\.corrupt-.* and starting from scratch/);
      // Set aside, not deleted; and no checkpoint is left at the old place.
      assert.equal((await corruptEntries(dir)).length, 1);
      await assert.rejects(Deno.stat(checkpoint), Deno.errors.NotFound);
    });
  });
}

Deno.test("an intact checkpoint loads (verified once) and resumes at its step", async () => {
  await withTempDir(async (dir) => {
    const checkpoint = await writeCheckpoint(dir);
    const loaded = await loadCheckpoint(
      checkpoint,
      (model) => new AdamW(model.trainableParameters(), { lr: 1e-3, weightDecay: 0.1 }),
    );
    assert.deepEqual(loaded.state.position, position);
    assert.deepEqual(
      Object.keys(loaded.state.files ?? {}).sort(),
      ["gpt_config.json", "model.safetensors", "optimizer.safetensors"].filter((n) =>
        n in (loaded.state.files ?? {})
      ).sort(),
    );
    assert.ok(loaded.state.files?.["model.safetensors"].size! > 0);
  });
});
