/**
 * The HF parity fixtures (tests/fixtures/hf: Llama 3, SmolLM2, Qwen3, Gemma 3, Phi-3, Phi-2) on
 * tfjs's `webgpu` backend, Mesa's lavapipe in CI (deno needs `--unstable-webgpu` and
 * `XDG_RUNTIME_DIR`): RoPE, RMSNorm, grouped-query attention, gated MLPs and sliding windows
 * run there as tfjs ops (the cpu engine's fused kernels and in-place cache are cpu-only), so
 * their logits must stay within 1e-4 of the references and the greedy tokens, with the KV cache
 * (the tensor store), equal the references'. Without an adapter the tests are ignored, saying why.
 */
import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { join } from "node:path";
import { initEngine, probeWebGpu } from "../../../llm/engine/backend.ts";
import { loadHfModel } from "../../../llm/families/load.ts";
import { generate } from "../../../llm/model/generate.ts";
import { localFixture } from "../../fixtures.ts";

const probe = await probeWebGpu();
if (probe.adapter) {
  await initEngine({ backend: "webgpu", log: () => {} });
} else {
  console.warn(`webgpu HF parity tests ignored: ${probe.unavailable}`);
}

const TOLERANCE = 1e-4;

for (const name of ["llama3", "smollm2", "qwen3", "gemma3", "phi3", "phi2"]) {
  Deno.test({
    name:
      `[webgpu] ${name}: logits within ${TOLERANCE} of the reference, greedy identical with the KV cache`,
    ignore: !probe.adapter,
    async fn() {
      assert.equal(tf.getBackend(), "webgpu");
      const expected = JSON.parse(
        await Deno.readTextFile(localFixture("hf", "expected", `${name}.json`)),
      );
      const { model } = await loadHfModel(join(localFixture("hf"), name));
      try {
        const input = tf.tensor2d([expected.input_ids], undefined, "int32");
        const logits = model.forward(input, { gather: expected.logits_positions });
        const values = (await logits.data()) as Float32Array;
        tf.dispose([input, logits]);
        const vocab = model.config.vocab_size;
        let worst = 0;
        (expected.logits as number[][]).forEach((reference, row) => {
          for (let v = 0; v < vocab; v++) {
            worst = Math.max(worst, Math.abs(values[row * vocab + v] - reference[v]));
          }
        });
        assert.ok(worst <= TOLERANCE, `${name}: max |logit diff| ${worst}`);
        const { prompt_ids: prompt, new_ids: want } = expected.greedy;
        assert.equal(model.newCache().inPlace, false, "webgpu keeps the tensor store");
        const got = await generate(model, prompt, { maxNewTokens: want.length });
        assert.deepEqual(got, want, `${name}: greedy with the KV cache`);
      } finally {
        model.dispose();
      }
    },
  });
}
