/**
 * DPO against the book's own functions (`custom_collate_fn`, `compute_logprobs`,
 * `compute_dpo_loss`, `compute_dpo_loss_batch` run from dpo-from-scratch.ipynb by
 * tools/torch_dpo_reference.py; fixtures in tests/fixtures/parity/dpo/): on the tiny GPT, the
 * collated batch, the untrained loss (policy = reference: ln 2), the log-probabilities, loss and
 * rewards of a policy that differs from the reference, the gradient of every policy parameter
 * and one AdamW step.
 */
import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import { localFixture } from "../../fixtures.ts";
import { collatePreferences, type TokenizedPair } from "../../../llm/data/preferences.ts";
import { validateConfig } from "../../../llm/model/config.ts";
import { GPTModel } from "../../../llm/model/gpt.ts";
import { loadStateDict } from "../../../llm/model/weights_io.ts";
import { AdamW } from "../../../llm/train/adamw.ts";
import {
  dpoBatchLoss,
  dpoGradients,
  dpoTrainStep,
  referenceLogprobs,
  sequenceLogprobs,
} from "../../../llm/train/dpo.ts";
import { type NamedTensor, readSafetensorsFile } from "../../../llm/weights/safetensors.ts";
import { maxAbsDiff, relativeError } from "../model/parity_suite.ts";

const file = (name: string) => localFixture("parity", "dpo", name);

/** W_key.bias has a mathematically zero gradient (softmax ignores q·b): compare near 0. */
const isKeyBias = (name: string) => name.endsWith("att.W_key.bias");

interface DpoFixture {
  reference: GPTModel;
  policy: GPTModel;
  beta: number;
  pad: number;
  pairs: TokenizedPair[];
  collated: Record<"chosen" | "rejected" | "chosen_mask" | "rejected_mask", number[][]>;
  expected: Map<string, NamedTensor>;
  adamw: { lr: number; betas: [number, number]; eps: number; weight_decay: number };
}

async function modelFrom(config: unknown, weights: string): Promise<GPTModel> {
  const model = new GPTModel(validateConfig(config, file("config.json")), { init: "zeros" });
  loadStateDict(model, (await readSafetensorsFile(weights)).tensors, weights);
  return model;
}

async function loadFixture(): Promise<DpoFixture> {
  const { beta, pad_token_id, ...config } = JSON.parse(
    await Deno.readTextFile(file("config.json")),
  );
  const inputs = JSON.parse(await Deno.readTextFile(file("inputs.json")));
  return {
    reference: await modelFrom(config, localFixture("parity", "qkv_bias", "weights.safetensors")),
    policy: await modelFrom(config, file("policy.safetensors")),
    beta,
    pad: pad_token_id,
    pairs: inputs.pairs.map((
      p: { chosen: number[]; rejected: number[]; promptLength: number },
    ) => ({
      chosen: { ids: p.chosen, promptLength: p.promptLength },
      rejected: { ids: p.rejected, promptLength: p.promptLength },
    })),
    collated: inputs.collated,
    expected: (await readSafetensorsFile(file("expected.safetensors"))).tensors,
    adamw: JSON.parse(await Deno.readTextFile(file("adamw.json"))),
  };
}

function batchOf(f: DpoFixture) {
  return collatePreferences(f.pairs, {
    padTokenId: f.pad,
    allowedMaxLength: f.reference.config.context_length,
  });
}

const scalar = (f: DpoFixture, name: string) => f.expected.get(name)!.data[0];

function close(got: number, want: number, tolerance: number, what: string) {
  const error = Math.abs(got - want) / Math.max(Math.abs(want), 1e-6);
  assert.ok(error <= tolerance, `${what}: ${got} vs ${want} (relative error ${error})`);
}

async function withFixture(fn: (f: DpoFixture) => Promise<void>) {
  const f = await loadFixture();
  try {
    await fn(f);
  } finally {
    f.reference.dispose();
    f.policy.dispose();
  }
}

export function registerDpoParityTests(options: { label: string }): void {
  const test = (name: string, fn: () => Promise<void>) =>
    Deno.test({ name: `DPO parity (${options.label}) ${name}`, fn });

  test("the book's custom_collate_fn gives the fixture's ids and masks", async () => {
    await withFixture((f) => {
      const batch = batchOf(f);
      const rows = <T extends ArrayLike<number>>(a: T) =>
        Array.from(
          { length: batch.batchSize },
          (_, r) => Array.from(a).slice(r * batch.seqLen, (r + 1) * batch.seqLen),
        );
      assert.deepEqual(rows(batch.chosen), f.collated.chosen);
      assert.deepEqual(rows(batch.rejected), f.collated.rejected);
      assert.deepEqual(rows(batch.chosenMask), f.collated.chosen_mask);
      assert.deepEqual(rows(batch.rejectedMask), f.collated.rejected_mask);
      return Promise.resolve();
    });
  });

  test("the untrained loss (policy = reference) is ln 2, as the book's", async () => {
    await withFixture(async (f) => {
      const batch = batchOf(f);
      const ref = await referenceLogprobs(f.reference, batch);
      const { loss, chosenRewards, rejectedRewards } = dpoBatchLoss(f.reference, batch, ref, {
        beta: f.beta,
      });
      const [l, c, r] = [
        (await loss.data())[0],
        (await chosenRewards.data())[0],
        (await rejectedRewards.data())[0],
      ];
      tf.dispose([loss, chosenRewards, rejectedRewards]);
      close(l, Math.LN2, 1e-7, "untrained loss vs ln 2");
      close(l, scalar(f, "untrained_loss"), 1e-7, "untrained loss vs PyTorch");
      assert.equal(c, 0);
      assert.equal(r, 0);
    });
  });

  test("log-probabilities, loss and rewards of a policy ≠ reference match PyTorch", async () => {
    await withFixture(async (f) => {
      const batch = batchOf(f);
      const n = batch.batchSize;
      for (const [who, model] of [["policy", f.policy], ["reference", f.reference]] as const) {
        const both = sequenceLogprobs(model, batch);
        const values = await both.data() as Float32Array;
        both.dispose();
        const parts: [string, Float32Array][] = [
          ["chosen", values.slice(0, n)],
          ["rejected", values.slice(n)],
        ];
        for (const [side, part] of parts) {
          const want = f.expected.get(`${who}_${side}_logprobs`)!.data;
          const error = maxAbsDiff(part, want);
          assert.ok(error <= 2e-6, `${who} ${side} log-probs: max abs error ${error}`);
        }
      }
      const ref = await referenceLogprobs(f.reference, batch);
      const result = dpoBatchLoss(f.policy, batch, ref, { beta: f.beta });
      close((await result.loss.data())[0], scalar(f, "loss"), 1e-6, "loss");
      close(
        (await result.chosenRewards.data())[0],
        scalar(f, "chosen_rewards"),
        1e-4,
        "chosen rewards",
      );
      close(
        (await result.rejectedRewards.data())[0],
        scalar(f, "rejected_rewards"),
        1e-4,
        "rejected rewards",
      );
      tf.dispose([result.loss, result.chosenRewards, result.rejectedRewards]);
    });
  });

  test("the gradient of every policy parameter matches PyTorch", async () => {
    await withFixture(async (f) => {
      const { loss, grads } = await dpoGradients(f.policy, f.reference, batchOf(f), {
        beta: f.beta,
      });
      close(loss, scalar(f, "loss"), 1e-6, "loss");
      const names = f.policy.trainableParameters().map(([name]) => name);
      assert.deepEqual(
        [...grads.keys()].sort(),
        [...f.expected.keys()].filter((k) => k.startsWith("grad.")).map((k) => k.slice(5)).sort(),
      );
      let worst = 0;
      for (const name of names) {
        const got = await grads.get(name)!.data();
        const want = f.expected.get(`grad.${name}`)!.data;
        if (isKeyBias(name)) {
          const error = maxAbsDiff(got, want);
          assert.ok(error <= 1e-8, `grad.${name}: should be ~0, max abs diff ${error}`);
          continue;
        }
        const error = relativeError(got, want);
        worst = Math.max(worst, error);
        assert.ok(error <= 1e-5, `grad.${name}: relative error ${error}`);
      }
      for (const grad of grads.values()) grad.dispose();
      console.log(
        `DPO parity (${options.label}): worst gradient relative error ${worst.toExponential(2)}`,
      );
    });
  });

  test("one AdamW step (lr, betas, eps, weight decay 0.01) matches PyTorch", async () => {
    await withFixture(async (f) => {
      const { adamw } = f;
      const optimizer = new AdamW(f.policy.trainableParameters(), {
        lr: adamw.lr,
        beta1: adamw.betas[0],
        beta2: adamw.betas[1],
        eps: adamw.eps,
        weightDecay: adamw.weight_decay,
      });
      const result = await dpoTrainStep(f.policy, f.reference, optimizer, batchOf(f), {
        beta: f.beta,
      });
      close(result.loss, scalar(f, "loss"), 1e-6, "loss before the step");
      let worst = 0;
      for (const [name, variable] of f.policy.trainableParameters()) {
        const error = maxAbsDiff(await variable.data(), f.expected.get(`after_step.${name}`)!.data);
        // AdamW turns the key bias's rounding-noise gradient into a step of up to lr.
        const tolerance = isKeyBias(name) ? 2 * adamw.lr : 1e-5;
        if (!isKeyBias(name)) worst = Math.max(worst, error);
        assert.ok(error <= tolerance, `after_step.${name}: max abs error ${error}`);
      }
      console.log(
        `DPO parity (${options.label}): worst weight error after AdamW ${worst.toExponential(2)}`,
      );
    });
  });
}
