/**
 * GPT-2's real vocabulary matrices on WebGPU. On Mesa's lavapipe a kernel binds at most 128 MiB,
 * and the 50,257 × 768 token embedding / output head take 147 MiB each: unsplit, tfjs computes
 * zeros without a word (measured: every logit 0, the loss ln 50,257 whatever the weights). Built on the device, the model splits them in row
 * shards; its logits and loss must equal those of an unsharded model on the cpu backend with the
 * same weights. (On a GPU that binds the whole table the model stays unsharded and the comparison
 * still holds.) The head is tied to the embedding as in OpenAI's GPT-2 (one table to upload),
 * and one block and four tokens keep it quick on a software GPU. Gradients through the shards
 * are compared with PyTorch's in webgpu_parity_test.ts (at an injected limit); at this size the
 * backward pass alone takes about 35 s on lavapipe.
 */
import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { initEngine, probeWebGpu } from "../../../llm/engine/backend.ts";
import type { GPTConfig } from "../../../llm/model/config.ts";
import { GPTModel } from "../../../llm/model/gpt.ts";
import { backendBindingLimit } from "../../../llm/engine/backend.ts";
import { getStateDict, loadStateDict } from "../../../llm/model/weights_io.ts";
import { calcLossBatch } from "../../../llm/train/trainer.ts";
import { relativeError } from "./parity_suite.ts";

const probe = await probeWebGpu();
if (!probe.adapter) console.warn(`webgpu large-vocabulary test ignored: ${probe.unavailable}`);

const CONFIG: GPTConfig = {
  vocab_size: 50_257,
  context_length: 4,
  emb_dim: 768,
  n_heads: 12,
  n_layers: 1,
  drop_rate: 0,
  qkv_bias: false,
};
// Ids at both ends of the table and on either side of the lavapipe shard boundary (25,129).
const BATCH = { inputs: [[50_256, 0, 25_128, 25_129]], targets: [[0, 25_128, 25_129, 50_000]] };

async function logitsAndLoss(model: GPTModel): Promise<{ logits: Float32Array; loss: number }> {
  const ids = tf.tensor2d(BATCH.inputs, undefined, "int32");
  const targets = tf.tensor2d(BATCH.targets, undefined, "int32");
  const logits = model.forward(ids);
  const loss = calcLossBatch(model, ids, targets);
  const results = { logits: (await logits.data()) as Float32Array, loss: (await loss.data())[0] };
  tf.dispose([ids, targets, logits, loss]);
  return results;
}

Deno.test({
  name: "webgpu: GPT-2's 50,257-row embedding and head, sharded below the binding limit, " +
    "give the cpu backend's logits and loss",
  ignore: !probe.adapter,
  async fn() {
    await initEngine({ backend: "webgpu", log: () => {} });
    const limit = backendBindingLimit();
    const model = new GPTModel(CONFIG, { seed: 11, tiedHead: true });
    const tableBytes = CONFIG.vocab_size * CONFIG.emb_dim * 4;
    assert.equal(model.vocabShards.length, Math.ceil(tableBytes / limit));
    if (limit < tableBytes) assert.ok(model.vocabShards.length >= 2, "lavapipe: sharded");
    const onGpu = await logitsAndLoss(model);
    const weights = await getStateDict(model);
    model.dispose();

    await initEngine({ backend: "cpu", log: () => {} });
    const reference = new GPTModel(CONFIG, { init: "zeros", tiedHead: true });
    assert.equal(reference.vocabShards.length, 1);
    loadStateDict(reference, weights);
    const onCpu = await logitsAndLoss(reference);
    reference.dispose();

    assert.ok(Math.abs(onGpu.loss - onCpu.loss) / onCpu.loss <= 1e-5, `loss ${onGpu.loss}`);
    // Relative: the tied N(0, 1) table makes logits of magnitude ~100, where float32 steps are ~1e-5.
    const logitsError = relativeError(onGpu.logits, onCpu.logits);
    assert.ok(logitsError <= 1e-6, `logits relative error ${logitsError}`);
  },
});
