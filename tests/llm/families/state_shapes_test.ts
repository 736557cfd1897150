/**
 * expectedStateShapes (what a checkpoint is checked against before any allocation) lists
 * exactly the tensors a model built from the same config holds, names and shapes, for every
 * family's fixture and for GPT-2.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { readHfConfig } from "../../../llm/families/load.ts";
import { detectFamily } from "../../../llm/families/mod.ts";
import { expectedStateShapes } from "../../../llm/families/state_shapes.ts";
import { type GPTConfig, loadModelConfig } from "../../../llm/model/config.ts";
import { GPTModel } from "../../../llm/model/gpt.ts";
import { localFixture } from "../../fixtures.ts";

function modelShapes(config: GPTConfig, tiedHead: boolean): Map<string, number[]> {
  const model = new GPTModel(config, { init: "zeros", tiedHead });
  try {
    return new Map(model.stateTensors().map((t) => [t.name, [...t.shape]]));
  } finally {
    model.dispose();
  }
}

for (const name of ["llama3", "smollm2", "qwen3", "gemma3", "phi3", "phi2"]) {
  Deno.test(`expectedStateShapes: the ${name} fixture's model, tensor for tensor`, async () => {
    const dir = localFixture("hf", name);
    const hf = await readHfConfig(dir);
    const { config, tiedHead } = detectFamily(hf, join(dir, "config.json")).toConfig(hf, dir);
    assert.deepEqual(expectedStateShapes(config), modelShapes(config, tiedHead));
  });
}

Deno.test("expectedStateShapes: GPT-2 (learned positions, biases, LayerNorm)", async () => {
  for (const qkv_bias of [false, true]) {
    const config = await loadModelConfig("tiny", { qkv_bias });
    assert.deepEqual(expectedStateShapes(config), modelShapes(config, false));
  }
});
