/**
 * Packed (quantized) weights on the backends without packed kernels: tfjs's wasm backend (and
 * webgpu where an adapter exists: deno needs --unstable-webgpu and XDG_RUNTIME_DIR, lavapipe in
 * CI) decode each matrix to float32 for the call. Same model, same
 * logits as the float32 model rounded by `applyPrecision` on that backend.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { initEngine, probeWebGpu } from "../../../llm/engine/backend.ts";
import { loadHfModel } from "../../../llm/families/load.ts";
import type { GPTModel } from "../../../llm/model/gpt.ts";
import { applyPrecision, isPacked } from "../../../llm/model/precision.ts";

const FIXTURES = new URL("../../fixtures/hf/", import.meta.url).pathname;
const probe = await probeWebGpu();

async function logitsOf(model: GPTModel, prompt: number[]): Promise<Float32Array> {
  const logits = tf.tidy(() => model.forward(tf.tensor2d([prompt], undefined, "int32")));
  const values = await logits.data() as Float32Array;
  logits.dispose();
  return values;
}

for (const backend of ["wasm", "webgpu"] as const) {
  Deno.test({
    name: `${backend}: qwen3 with quantize int8 = float32 + applyPrecision`,
    ignore: backend === "webgpu" && !probe.adapter,
    fn: async () => {
      await initEngine({ backend, log: () => {} });
      const dir = join(FIXTURES, "qwen3");
      const { model: reference } = await loadHfModel(dir);
      applyPrecision(reference, "int8");
      const { model: packed } = await loadHfModel(dir, { quantize: "int8" });
      try {
        assert.ok(isPacked(packed));
        const prompt = [3, 17, 42, 8, 99];
        const [a, b] = [await logitsOf(packed, prompt), await logitsOf(reference, prompt)];
        const scale = Math.max(...b.map(Math.abs));
        const diff = Math.max(...a.map((x, i) => Math.abs(x - b[i])));
        assert.ok(diff / scale < 1e-4, `${backend}: logits differ by ${diff / scale}`);
      } finally {
        reference.dispose();
        packed.dispose();
      }
    },
  });
}
