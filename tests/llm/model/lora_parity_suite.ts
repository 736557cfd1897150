/**
 * LoRA against the book's PyTorch `LinearWithLoRA` (fixtures from tools/torch_lora_reference.py,
 * tests/fixtures/parity/lora/): the tiny model with every linear layer wrapped (rank 4, alpha 8),
 * one batch from the book's `custom_collate_fn` with `mask_instructions`: the collated ids,
 * logits, the loss over the kept targets, the gradients of every lora.A / lora.B, and two AdamW
 * steps on the LoRA parameters only. Tolerances as the main parity suite's.
 */
import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { localFixture } from "../../fixtures.ts";
import { collateInstructions } from "../../../llm/data/instruction_batches.ts";
import { validateConfig } from "../../../llm/model/config.ts";
import { GPTModel } from "../../../llm/model/gpt.ts";
import { applyLora, type LoraAdapters } from "../../../llm/model/lora.ts";
import { loadStateDict } from "../../../llm/model/weights_io.ts";
import { AdamW } from "../../../llm/train/adamw.ts";
import { calcLossBatch, computeGradients } from "../../../llm/train/trainer.ts";
import { type NamedTensor, readSafetensorsFile } from "../../../llm/weights/safetensors.ts";
import { maxAbsDiff, relativeError } from "./parity_suite.ts";

const file = (name: string) => localFixture("parity", "lora", name);

interface LoraFixture {
  model: GPTModel;
  adapters: LoraAdapters;
  inputs: {
    examples: { ids: number[]; promptLength: number }[];
    pad_token_id: number;
    input_ids: number[][];
    target_ids: number[][];
  };
  expected: Map<string, NamedTensor>;
  adamw: { lr: number; betas: [number, number]; eps: number; weight_decay: number };
}

async function loadLoraFixture(): Promise<LoraFixture> {
  const { lora, ...config } = JSON.parse(await Deno.readTextFile(file("config.json")));
  const model = new GPTModel(validateConfig(config, file("config.json")), { init: "zeros" });
  const base = localFixture("parity", "qkv_bias", "weights.safetensors");
  loadStateDict(model, (await readSafetensorsFile(base)).tensors, base);
  const adapters = applyLora(model, { rank: lora.rank, alpha: lora.alpha, scaling: lora.scaling });
  const saved = (await readSafetensorsFile(file("adapter.safetensors"))).tensors;
  const params = adapters.parameters();
  assert.deepEqual(params.map(([n]) => n).sort(), [...saved.keys()].sort(), "adapter names");
  for (const [name, variable] of params) {
    const { shape, data } = saved.get(name)!;
    assert.deepEqual(variable.shape, shape, name);
    variable.assign(tf.tensor(data, shape));
  }
  return {
    model,
    adapters,
    inputs: JSON.parse(await Deno.readTextFile(file("inputs.json"))),
    expected: (await readSafetensorsFile(file("expected.safetensors"))).tensors,
    adamw: JSON.parse(await Deno.readTextFile(file("adamw.json"))),
  };
}

function optimizerFor(fixture: LoraFixture): AdamW {
  const { adamw, model } = fixture;
  return new AdamW(model.trainableParameters(), {
    lr: adamw.lr,
    beta1: adamw.betas[0],
    beta2: adamw.betas[1],
    eps: adamw.eps,
    weightDecay: adamw.weight_decay,
  });
}

async function checkParameters(
  fixture: LoraFixture,
  prefix: string,
  tolerance: "relative" | number,
) {
  for (const [name, variable] of fixture.adapters.parameters()) {
    const got = (await variable.data()) as Float32Array;
    const want = fixture.expected.get(prefix + name)!.data;
    if (tolerance === "relative") {
      const error = relativeError(got, want);
      assert.ok(error <= 1e-5, `${prefix}${name}: relative error ${error}`);
    } else {
      const error = maxAbsDiff(got, want);
      assert.ok(error <= tolerance, `${prefix}${name}: max abs error ${error}`);
    }
  }
}

export function registerLoraParityTests(options: { label: string }): void {
  const test = (name: string, fn: () => Promise<void>) =>
    Deno.test({ name: `LoRA parity (${options.label}) ${name}`, fn });

  test("the book's collate with mask_instructions gives the fixture's batch", async () => {
    const { model, inputs } = await loadLoraFixture();
    model.dispose();
    const batch = collateInstructions(inputs.examples, {
      padTokenId: inputs.pad_token_id,
      maskInstructions: true,
      allowedMaxLength: 1024,
    });
    assert.deepEqual([batch.batchSize, batch.seqLen], [2, inputs.input_ids[0].length]);
    assert.deepEqual([...batch.inputs], inputs.input_ids.flat());
    assert.deepEqual([...batch.targets], inputs.target_ids.flat());
  });

  test("logits and the loss over the kept targets match PyTorch", async () => {
    const { model, inputs, expected } = await loadLoraFixture();
    try {
      const ids = tf.tensor2d(inputs.input_ids, undefined, "int32");
      const targets = tf.tensor2d(inputs.target_ids, undefined, "int32");
      const logits = model.forward(ids);
      const error = maxAbsDiff(await logits.data(), expected.get("logits")!.data);
      assert.ok(error <= 1e-4, `logits max abs error ${error}`);
      const loss = calcLossBatch(model, ids, targets);
      const want = expected.get("loss")!.data[0];
      const lossError = Math.abs((await loss.data())[0] - want) / want;
      assert.ok(lossError <= 1e-5, `loss relative error ${lossError}`);
      tf.dispose([ids, targets, logits, loss]);
    } finally {
      model.dispose();
    }
  });

  test("gradients: every lora.A and lora.B matches PyTorch, nothing else gets one", async () => {
    const { model, adapters, inputs, expected } = await loadLoraFixture();
    try {
      const { loss, grads } = computeGradients(model, {
        inputs: inputs.input_ids,
        targets: inputs.target_ids,
      });
      assert.deepEqual([...grads.keys()], adapters.parameters().map(([n]) => n));
      for (const [name, grad] of grads) {
        const error = relativeError(await grad.data(), expected.get(`grad.${name}`)!.data);
        assert.ok(error <= 1e-5, `${name}: gradient relative error ${error}`);
      }
      tf.dispose([loss, ...grads.values()]);
    } finally {
      model.dispose();
    }
  });

  test("AdamW on PyTorch's gradients reproduces both steps on the LoRA parameters", async () => {
    const fixture = await loadLoraFixture();
    try {
      const optimizer = optimizerFor(fixture);
      for (
        const [gradPrefix, afterPrefix] of [["grad.", "after_step."], [
          "grad_step2.",
          "after_step2.",
        ]]
      ) {
        const grads = new Map(
          fixture.adapters.parameters().map(([name, v]) => [
            name,
            tf.tensor(fixture.expected.get(gradPrefix + name)!.data, v.shape),
          ]),
        );
        await optimizer.applyGradients(grads);
        tf.dispose([...grads.values()]);
        await checkParameters(fixture, afterPrefix, "relative");
      }
    } finally {
      fixture.model.dispose();
    }
  });

  test("two training steps end to end (frozen base unchanged)", async () => {
    const fixture = await loadLoraFixture();
    const { model, inputs, expected } = fixture;
    try {
      const frozenBefore = (await model.trf_blocks[0].att.out_proj.namedParameters("")[0][1].data())
        .slice();
      const optimizer = optimizerFor(fixture);
      const batch = { inputs: inputs.input_ids, targets: inputs.target_ids };
      for (const [step, prefix] of [[1, "after_step."], [2, "after_step2."]] as const) {
        const { loss, grads } = computeGradients(model, batch);
        if (step === 2) {
          const want = expected.get("loss_after_step")!.data[0];
          const error = Math.abs((await loss.data())[0] - want) / want;
          assert.ok(error <= 1e-5, `loss after one step: relative error ${error}`);
        }
        await optimizer.applyGradients(grads);
        tf.dispose([loss, ...grads.values()]);
        // Absolute, a small fraction of lr (1e-3): near-eps gradients amplify rounding.
        await checkParameters(fixture, prefix, 1e-4);
      }
      const frozenAfter = await model.trf_blocks[0].att.out_proj.namedParameters("")[0][1].data();
      assert.deepEqual(frozenAfter, frozenBefore);
    } finally {
      model.dispose();
    }
  });
}
