/**
 * The library pieces of instruction fine-tuning together: real instruction batches (book
 * collate), a LoRA-wrapped model, the trainer's loss and step, on a small model with GPT-2's
 * vocabulary (the batches hold end-of-text id 50256).
 */
import assert from "node:assert/strict";
import { InstructionLoader } from "../../../llm/data/instruction_batches.ts";
import {
  promptTemplate,
  readInstructionData,
  splitInstructionData,
  tokenizeSplits,
} from "../../../llm/data/instructions.ts";
import { GPTModel } from "../../../llm/model/gpt.ts";
import { applyLora } from "../../../llm/model/lora.ts";
import { Gpt2Tokenizer } from "../../../llm/tokenizer/gpt2.ts";
import { AdamW } from "../../../llm/train/adamw.ts";
import { calcLossLoader, trainStep } from "../../../llm/train/trainer.ts";
import { sharedFixture } from "../../fixtures.ts";
import { initEngine } from "../../../llm/engine/backend.ts";

// The pipelines' engine (BLAS, fused cross-entropy): the 50,257-way head is slow on stock cpu.
await initEngine({ backend: "cpu", log: () => {} });

Deno.test("LoRA steps on real instruction batches lower the loss and leave the base weights alone", async () => {
  const splits = splitInstructionData(
    await readInstructionData(sharedFixture("workshop", "instruction-data.json")),
  );
  // The first 40 training entries are enough for a few batches (tokenizing all takes seconds).
  const { train, val } = tokenizeSplits(
    { ...splits, train: splits.train.slice(0, 40), test: [] },
    promptTemplate("alpaca"),
    new Gpt2Tokenizer(),
  );
  const trainLoader = new InstructionLoader(train.examples, {
    shuffle: true,
    dropLast: true,
    batchSize: 2,
    maskInstructions: true,
  });
  const valLoader = new InstructionLoader(val.examples, { batchSize: 2 });
  const model = new GPTModel({
    vocab_size: 50257,
    context_length: 128,
    emb_dim: 8,
    n_heads: 2,
    n_layers: 1,
    drop_rate: 0,
    qkv_bias: true,
  });
  try {
    const adapters = applyLora(model, { rank: 2, alpha: 4 });
    const frozen = model.trf_blocks[0].att.W_query.namedParameters("")[0][1];
    const frozenBefore = (await frozen.data()).slice();
    const optimizer = new AdamW(model.trainableParameters(), { lr: 1e-2, weightDecay: 0.1 });
    const valBefore = await calcLossLoader(model, valLoader.batches(), 1);
    assert.ok(Number.isFinite(valBefore));
    const batch = trainLoader.batch(0, 0);
    adapters.train(true);
    const first = await trainStep(model, optimizer, batch);
    let last = first;
    for (let i = 0; i < 2; i++) last = await trainStep(model, optimizer, batch);
    adapters.train(false);
    assert.ok(last.loss < first.loss, `loss ${first.loss} → ${last.loss}`);
    assert.deepEqual(await frozen.data(), frozenBefore);
    assert.equal(optimizer.parameters.length, adapters.parameters().length);
  } finally {
    model.dispose();
  }
});
