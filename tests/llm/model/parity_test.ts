/**
 * Our GPT against the book's PyTorch GPTModel on the same weights and inputs
 * (fixtures from tools/torch_reference.py, see tests/fixtures/parity/README.md).
 */
import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { localFixture } from "../../fixtures.ts";
import { validateConfig } from "../../../llm/model/config.ts";
import { generate, generateTextSimple } from "../../../llm/model/generate.ts";
import { GPTModel } from "../../../llm/model/gpt.ts";
import { loadStateDict } from "../../../llm/model/weights_io.ts";
import { AdamW } from "../../../llm/train/adamw.ts";
import { calcLossBatch, computeGradients } from "../../../llm/train/trainer.ts";
import { type NamedTensor, readSafetensorsFile } from "../../../llm/weights/safetensors.ts";
import { useCpuBackend } from "./tf_setup.ts";

await useCpuBackend();

const VARIANTS = ["no_qkv_bias", "qkv_bias"] as const;

interface Fixture {
  model: GPTModel;
  inputs: number[][];
  targets: number[][];
  expected: Map<string, NamedTensor>;
  adamw: { lr: number; betas: [number, number]; eps: number; weight_decay: number };
  generate: {
    weights?: string;
    cases: {
      prompt: number[];
      max_new_tokens: number;
      context_size: number;
      expected_new_tokens: number[];
    }[];
  };
}

async function loadFixture(variant: string): Promise<Fixture> {
  const file = (name: string) => localFixture("parity", variant, name);
  const config = validateConfig(
    JSON.parse(await Deno.readTextFile(file("config.json"))),
    file("config.json"),
  );
  const model = new GPTModel(config, { init: "zeros" });
  const weights = await readSafetensorsFile(file("weights.safetensors"));
  loadStateDict(model, weights.tensors, file("weights.safetensors"));
  const inputs = JSON.parse(await Deno.readTextFile(file("inputs.json")));
  return {
    model,
    inputs: inputs.input_ids,
    targets: inputs.target_ids,
    expected: (await readSafetensorsFile(file("expected.safetensors"))).tensors,
    adamw: JSON.parse(await Deno.readTextFile(file("adamw.json"))),
    generate: JSON.parse(await Deno.readTextFile(file("generate.json"))),
  };
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i] - b[i]));
  return max;
}

/** ‖a − b‖ / ‖b‖. */
function relativeError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let diff = 0;
  let norm = 0;
  for (let i = 0; i < a.length; i++) {
    diff += (a[i] - b[i]) ** 2;
    norm += b[i] ** 2;
  }
  return Math.sqrt(diff) / Math.sqrt(norm);
}

/** The fixture README: W_key.bias has a mathematically zero gradient (softmax ignores q·b). */
const isKeyBias = (name: string) => name.endsWith("att.W_key.bias");

for (const variant of VARIANTS) {
  Deno.test(`parity ${variant}: logits and loss match PyTorch`, async () => {
    const { model, inputs, targets, expected } = await loadFixture(variant);
    try {
      const ids = tf.tensor2d(inputs, undefined, "int32");
      const targetIds = tf.tensor2d(targets, undefined, "int32");
      const logits = model.forward(ids);
      const want = expected.get("logits")!;
      assert.deepEqual(logits.shape, want.shape);
      const logitsError = maxAbsDiff(await logits.data(), want.data);
      assert.ok(logitsError <= 1e-4, `logits max abs error ${logitsError}`);

      const loss = calcLossBatch(model, ids, targetIds);
      const wantLoss = expected.get("loss")!.data[0];
      const lossError = Math.abs((await loss.data())[0] - wantLoss) / Math.abs(wantLoss);
      assert.ok(lossError <= 1e-5, `loss relative error ${lossError}`);
      tf.dispose([ids, targetIds, logits, loss]);
    } finally {
      model.dispose();
    }
  });

  Deno.test(`parity ${variant}: every gradient matches PyTorch`, async () => {
    const { model, inputs, targets, expected } = await loadFixture(variant);
    try {
      const { loss, grads } = computeGradients(model, { inputs, targets }, { training: true });
      const names = model.namedParameters().map(([name]) => name);
      assert.deepEqual(
        [...grads.keys()].sort(),
        [...names].sort(),
        "a gradient for every parameter",
      );
      for (const name of names) {
        const want = expected.get(`grad.${name}`);
        assert.ok(want, `fixture has grad.${name}`);
        const got = await grads.get(name)!.data();
        if (isKeyBias(name)) {
          const error = maxAbsDiff(got, want.data);
          assert.ok(error <= 1e-8, `${name}: gradient should be ~0, max abs diff ${error}`);
        } else {
          const error = relativeError(got, want.data);
          assert.ok(error <= 1e-5, `${name}: gradient relative error ${error}`);
        }
      }
      tf.dispose([loss, ...grads.values()]);
    } finally {
      model.dispose();
    }
  });

  Deno.test(`parity ${variant}: AdamW on PyTorch's gradients reproduces both steps`, async () => {
    const { model, expected, adamw } = await loadFixture(variant);
    try {
      const optimizer = new AdamW(model.trainableParameters(), {
        lr: adamw.lr,
        beta1: adamw.betas[0],
        beta2: adamw.betas[1],
        eps: adamw.eps,
        weightDecay: adamw.weight_decay,
      });
      for (
        const [gradPrefix, afterPrefix] of [["grad.", "after_step."], [
          "grad_step2.",
          "after_step2.",
        ]]
      ) {
        const grads = new Map<string, tf.Tensor>();
        for (const [name, variable] of model.trainableParameters()) {
          grads.set(name, tf.tensor(expected.get(gradPrefix + name)!.data, variable.shape));
        }
        await optimizer.applyGradients(grads);
        tf.dispose([...grads.values()]);
        for (const [name, variable] of model.namedParameters()) {
          const error = relativeError(
            await variable.data(),
            expected.get(afterPrefix + name)!.data,
          );
          assert.ok(error <= 1e-5, `${afterPrefix}${name}: relative error ${error}`);
        }
      }
    } finally {
      model.dispose();
    }
  });

  Deno.test(`parity ${variant}: one training step end to end`, async () => {
    const { model, inputs, targets, expected, adamw } = await loadFixture(variant);
    try {
      const optimizer = new AdamW(model.trainableParameters(), {
        lr: adamw.lr,
        weightDecay: adamw.weight_decay,
      });
      const { loss, grads } = computeGradients(model, { inputs, targets });
      await optimizer.applyGradients(grads);
      tf.dispose([loss, ...grads.values()]);
      // Absolute tolerance, a small fraction of lr: AdamW turns last-bit differences of near-eps
      // gradients into steps of up to lr (fixture README).
      for (const [name, variable] of model.namedParameters()) {
        const error = maxAbsDiff(await variable.data(), expected.get(`after_step.${name}`)!.data);
        assert.ok(error <= 5e-5, `after_step.${name}: max abs error ${error}`);
      }
      const ids = tf.tensor2d(inputs, undefined, "int32");
      const targetIds = tf.tensor2d(targets, undefined, "int32");
      const lossAfter = calcLossBatch(model, ids, targetIds);
      const wantAfter = expected.get("loss_after_step")!.data[0];
      const error = Math.abs((await lossAfter.data())[0] - wantAfter) / wantAfter;
      assert.ok(error <= 1e-5, `loss after the step: relative error ${error}`);
      tf.dispose([ids, targetIds, lossAfter]);
    } finally {
      model.dispose();
    }
  });

  Deno.test(`parity ${variant}: greedy generation equals generate_text_simple, with and without cache`, async () => {
    const { model, expected, generate: cases } = await loadFixture(variant);
    try {
      // tools/torch_reference.py generates after its two AdamW steps, so the model that produced
      // generate.json holds the `after_step2.*` weights (a "weights" key, if the script gains
      // one, names the prefix instead).
      const prefix = cases.weights ?? "after_step2.";
      if (prefix !== "initial") {
        loadStateDict(
          model,
          new Map(model.namedParameters().map(([name]) => [name, expected.get(prefix + name)!])),
          `expected.safetensors (${prefix}*)`,
        );
      }
      for (const c of cases.cases) {
        const [simple] = await generateTextSimple(
          model,
          [c.prompt],
          c.max_new_tokens,
          c.context_size,
        );
        assert.deepEqual(
          simple.slice(c.prompt.length),
          c.expected_new_tokens,
          "generate_text_simple",
        );
        for (const useCache of [true, false]) {
          const tokens = await generate(model, c.prompt, {
            maxNewTokens: c.max_new_tokens,
            contextSize: c.context_size,
            useCache,
          });
          assert.deepEqual(tokens, c.expected_new_tokens, `generate (useCache ${useCache})`);
        }
      }
    } finally {
      model.dispose();
    }
  });
}
