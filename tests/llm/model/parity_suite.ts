/**
 * The PyTorch parity checks (fixtures from tools/torch_reference.py, see
 * tests/fixtures/parity/README.md) as a suite any backend can register: the webgpu tests run it
 * on WebGPU, with and without a sharded vocabulary, and the sharding tests on cpu.
 *
 * Comparisons go through the state_dict view (`GPTModel.stateTensors`, `getStateDict`), so a
 * model whose token embedding and output head are row shards is held to the same tolerances as
 * an unsharded one: logits max abs error ≤ 1e-4, loss ≤ 1e-5 relative, every gradient ≤ 1e-5
 * relative, AdamW steps ≤ 1e-5 relative, greedy tokens identical.
 */
import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { localFixture } from "../../fixtures.ts";
import { validateConfig } from "../../../llm/model/config.ts";
import { generate, generateTextSimple } from "../../../llm/model/generate.ts";
import { GPTModel } from "../../../llm/model/gpt.ts";
import { stateNameOf } from "../../../llm/model/sharded.ts";
import { getStateDict, loadStateDict } from "../../../llm/model/weights_io.ts";
import { AdamW } from "../../../llm/train/adamw.ts";
import { calcLossBatch, computeGradients } from "../../../llm/train/trainer.ts";
import { type NamedTensor, readSafetensorsFile } from "../../../llm/weights/safetensors.ts";

export const PARITY_VARIANTS = ["no_qkv_bias", "qkv_bias"] as const;

export interface ParitySuiteOptions {
  /** Goes into every test name, e.g. "webgpu" or "cpu, vocabulary in 3 shards". */
  label: string;
  /** Passed to GPTModel: a small value forces the vocabulary matrices into row shards. */
  maxTensorBytes?: number;
  /** Number of vocabulary shards the models must have (checked, so sharding cannot go unused). */
  expectShards?: number;
  /** Fixture variants to run (default: all). */
  variants?: readonly (typeof PARITY_VARIANTS)[number][];
  /** Skip every test (Deno.test's `ignore`); the caller prints why. */
  ignore?: boolean;
}

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

async function loadFixture(variant: string, options: ParitySuiteOptions): Promise<Fixture> {
  const file = (name: string) => localFixture("parity", variant, name);
  const config = validateConfig(
    JSON.parse(await Deno.readTextFile(file("config.json"))),
    file("config.json"),
  );
  const model = new GPTModel(config, { init: "zeros", maxTensorBytes: options.maxTensorBytes });
  if (options.expectShards !== undefined) {
    assert.equal(model.vocabShards.length, options.expectShards, "vocabulary shards");
  }
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

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i] - b[i]));
  return max;
}

/** ‖a − b‖ / ‖b‖. */
export function relativeError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let diff = 0;
  let norm = 0;
  for (let i = 0; i < a.length; i++) {
    diff += (a[i] - b[i]) ** 2;
    norm += b[i] ** 2;
  }
  return Math.sqrt(diff) / Math.sqrt(norm);
}

/**
 * Per-parameter tensors (keyed like `computeGradients`' result: parameter names, shards
 * included) joined into state_dict tensors, e.g. the shards' gradients into `tok_emb.weight`'s.
 */
export async function joinByStateName(
  model: GPTModel,
  byParameter: Map<string, tf.Tensor>,
): Promise<Map<string, Float32Array>> {
  const nameOf = new Map<tf.Variable, string>();
  for (const [name, variable] of model.namedParameters()) {
    if (!nameOf.has(variable)) nameOf.set(variable, name);
  }
  const joined = new Map<string, Float32Array>();
  for (const { name, shape, parts } of model.stateTensors()) {
    const out = new Float32Array(shape.reduce((a, b) => a * b, 1));
    let offset = 0;
    for (const part of parts) {
      const tensor = byParameter.get(nameOf.get(part)!);
      assert.ok(tensor, `a value for ${nameOf.get(part)}`);
      out.set((await tensor.data()) as Float32Array, offset);
      offset += part.size;
    }
    joined.set(name, out);
  }
  return joined;
}

/** The slice of a state_dict-named fixture tensor that parameter `name` (maybe a shard) holds. */
function fixtureSlice(
  expected: Map<string, NamedTensor>,
  prefix: string,
  name: string,
  variable: tf.Variable,
): Float32Array {
  const { stateName, startRow } = stateNameOf(name);
  const tensor = expected.get(prefix + stateName);
  assert.ok(tensor, `fixture has ${prefix}${stateName}`);
  const offset = startRow * (variable.size / variable.shape[0]);
  return tensor.data.subarray(offset, offset + variable.size);
}

/** The fixture README: W_key.bias has a mathematically zero gradient (softmax ignores q·b). */
const isKeyBias = (name: string) => name.endsWith("att.W_key.bias");

export function registerParityTests(options: ParitySuiteOptions): void {
  const test = (name: string, fn: () => Promise<void>) =>
    Deno.test({ name: `parity (${options.label}) ${name}`, ignore: options.ignore, fn });

  for (const variant of options.variants ?? PARITY_VARIANTS) {
    test(`${variant}: logits and loss match PyTorch`, async () => {
      const { model, inputs, targets, expected } = await loadFixture(variant, options);
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

    test(`${variant}: every gradient matches PyTorch`, async () => {
      const { model, inputs, targets, expected } = await loadFixture(variant, options);
      try {
        const { loss, grads } = computeGradients(model, { inputs, targets }, { training: true });
        const joined = await joinByStateName(model, grads);
        assert.equal(joined.size, model.stateTensors().length, "a gradient for every tensor");
        for (const [name, got] of joined) {
          const want = expected.get(`grad.${name}`);
          assert.ok(want, `fixture has grad.${name}`);
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

    test(`${variant}: AdamW on PyTorch's gradients reproduces both steps`, async () => {
      const { model, expected, adamw } = await loadFixture(variant, options);
      try {
        const optimizer = new AdamW(model.trainableParameters(), {
          lr: adamw.lr,
          beta1: adamw.betas[0],
          beta2: adamw.betas[1],
          eps: adamw.eps,
          weightDecay: adamw.weight_decay,
        });
        const steps = [["grad.", "after_step."], ["grad_step2.", "after_step2."]];
        for (const [gradPrefix, afterPrefix] of steps) {
          const grads = new Map<string, tf.Tensor>();
          for (const [name, variable] of model.trainableParameters()) {
            const values = fixtureSlice(expected, gradPrefix, name, variable);
            grads.set(name, tf.tensor(values, variable.shape));
          }
          await optimizer.applyGradients(grads);
          tf.dispose([...grads.values()]);
          // Read back through the state_dict view: shards joined as saving joins them.
          for (const [name, { data }] of await getStateDict(model)) {
            const error = relativeError(data, expected.get(afterPrefix + name)!.data);
            assert.ok(error <= 1e-5, `${afterPrefix}${name}: relative error ${error}`);
          }
        }
      } finally {
        model.dispose();
      }
    });

    test(`${variant}: one training step end to end`, async () => {
      const { model, inputs, targets, expected, adamw } = await loadFixture(variant, options);
      try {
        const optimizer = new AdamW(model.trainableParameters(), {
          lr: adamw.lr,
          weightDecay: adamw.weight_decay,
        });
        const { loss, grads } = computeGradients(model, { inputs, targets });
        await optimizer.applyGradients(grads);
        tf.dispose([loss, ...grads.values()]);
        // Absolute tolerance, a small fraction of lr: AdamW turns last-bit differences of
        // near-eps gradients into steps of up to lr (fixture README).
        for (const [name, { data }] of await getStateDict(model)) {
          const error = maxAbsDiff(data, expected.get(`after_step.${name}`)!.data);
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

    test(`${variant}: greedy generation equals generate_text_simple, with and without cache`, async () => {
      const { model, expected, generate: cases } = await loadFixture(variant, options);
      try {
        // The fixture's generations use the weights after two AdamW steps (its `weights` key).
        const prefix = cases.weights ?? "after_step2.";
        if (prefix !== "initial") {
          const weights = new Map(
            model.stateTensors().map(({ name }) => [name, expected.get(prefix + name)!]),
          );
          loadStateDict(model, weights, `expected.safetensors (${prefix}*)`);
        }
        for (const c of cases.cases) {
          const [simple] = await generateTextSimple(model, [c.prompt], {
            maxNewTokens: c.max_new_tokens,
            contextSize: c.context_size,
          });
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
}
