/**
 * Stages `preferences` and `dpo` end to end on a micro GPT over GPT-2's vocabulary: pretrained
 * for a few steps (and instruction-finetuned on 40 entries, where that matters), then
 * preference-tuned on the book's preference data (the first 24 entries, batches of 2).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { openPreferencesArtifact } from "../../stages/mod.ts";
import { readSafetensorsFile } from "../../llm/weights/safetensors.ts";
import { loadModel } from "../../llm/model/weights_io.ts";
import { readResponses } from "../../llm/eval/judge.ts";
import { SHARED_FIXTURES, withTempDir } from "../fixtures.ts";
import {
  interruptWhen,
  killAfterCheckpoint,
  resumedFrom,
  runFile,
  runLogged,
  writeMicroBasePipeline,
} from "./harness.ts";

Deno.env.set("GROUNDUP_MIRROR", SHARED_FIXTURES);

/** The chain up to `preferences`; with `finetune`, an instruction-tuned model to start from. */
function dpoPipeline(dir: string, dpo: string, extra = "", finetune = true) {
  return writeMicroBasePipeline(
    dir,
    { name: "dpo-test", contextLength: 128 },
    `${finetune ? FINETUNE : ""}  preferences:
    limit: 24
${dpo}${extra}`,
  );
}

const FINETUNE = `  instructions:
    limit: 40
  finetune:
    needs: [pretrain, instructions]
    epochs: 1
    batch_size: 4
    lr: 1.0e-3
    eval_freq: 100
    eval_iter: 1
    sample_tokens: 0
`;

const DPO = `  dpo:
    needs: [finetune, preferences]
    batch_size: 2
    lr: 1.0e-3
    eval_freq: 3
    eval_iter: 1
    sample_tokens: 4
`;

/** DPO straight from the pretrained model (cheaper; the stage warns that it is not tuned). */
const DPO_FROM_PRETRAIN = DPO.replace(
  "needs: [finetune, preferences]",
  "needs: [pretrain, preferences]",
)
  .replace("    sample_tokens: 4\n", "    sample_tokens: 0\n");

async function readHistory(dir: string) {
  return JSON.parse(await Deno.readTextFile(join(dir, "history.json")));
}

Deno.test("dpo: untrained loss ln 2, rewards and margins in the history, a loadable model, responses answer with it", async () => {
  await withTempDir(async (dir) => {
    const responses = `  responses:
    needs: [instructions, finetune, dpo]
    models:
      response_before: finetune
      response_after: dpo
    limit: 3
    max_new_tokens: 4
`;
    const report = await runFile(await dpoPipeline(dir, DPO, responses), join(dir, "cache"));
    assert.ok(report.ok, report.error?.message);

    const prefs = await openPreferencesArtifact(report.artifacts.preferences.dir);
    const [train, val, test] = await Promise.all(
      (["train", "val", "test"] as const).map((s) => prefs.pairs(s)),
    );
    // 24 entries split as chapter 7: floor(0.85 · 24) = 20, floor(0.1 · 24) = 2, the rest 2.
    assert.deepEqual([train.length, test.length, val.length], [20, 2, 2]);
    assert.equal((await prefs.entries("train"))[19].chosen.length > 0, true);

    const out = report.artifacts.dpo.dir;
    const history = await readHistory(out);
    // Policy = reference before training: every pair's log-ratio difference is 0.
    assert.ok(Math.abs(history.initial.train_loss - Math.LN2) < 1e-6, history.initial.train_loss);
    assert.ok(Math.abs(history.initial.val_loss - Math.LN2) < 1e-6, history.initial.val_loss);
    // 20 pairs → 10 steps of 2; evaluations at steps 0, 3, 6, 9.
    const rows = history.evaluations;
    assert.deepEqual(rows.map((r: { step: number }) => r.step), [0, 3, 6, 9]);
    for (const row of rows) {
      for (const split of ["train", "val"]) {
        const margin = row[`${split}_reward_margin`];
        const chosen = row[`${split}_chosen_reward`], rejected = row[`${split}_rejected_reward`];
        assert.ok(Number.isFinite(margin), JSON.stringify(row));
        assert.ok(Math.abs(margin - (chosen - rejected)) < 1e-9, JSON.stringify(row));
      }
    }
    // The policy learns to prefer the chosen responses of its training pairs.
    assert.ok(rows.at(-1).train_reward_margin > rows[0].train_reward_margin, JSON.stringify(rows));
    assert.ok(rows.at(-1).train_loss < Math.LN2, JSON.stringify(rows));

    const csv = (await Deno.readTextFile(join(out, "history.csv"))).split("\n");
    assert.equal(
      csv[0],
      "step,epoch,tokens_seen,train_loss,val_loss,train_chosen_reward,train_rejected_reward," +
        "train_reward_margin,val_chosen_reward,val_rejected_reward,val_reward_margin",
    );
    assert.equal(csv.filter((l) => l !== "").length, 5);
    const svg = await Deno.readTextFile(join(out, "reward_margins.svg"));
    assert.match(svg, /Training reward margins/);
    assert.match(await Deno.readTextFile(join(out, "loss.svg")), /Training loss/);
    const metrics = report.artifacts.dpo.manifest.metrics;
    assert.equal(metrics.val_reward_margin, rows.at(-1).val_reward_margin);
    assert.equal(metrics.steps, 10);
    assert.equal(history.samples.length, 1);
    assert.equal(metrics.base_model, "finetune");

    // A model folder as finetune's: the trained weights differ from the starting model's.
    const model = await loadModel(out);
    model.dispose();
    const before = await readSafetensorsFile(
      join(report.artifacts.finetune.dir, "model.safetensors"),
    );
    const after = await readSafetensorsFile(join(out, "model.safetensors"));
    assert.deepEqual([...after.tensors.keys()].sort(), [...before.tensors.keys()].sort());
    assert.notDeepEqual(
      after.tensors.get("trf_blocks.0.att.W_query.weight")!.data,
      before.tensors.get("trf_blocks.0.att.W_query.weight")!.data,
    );
    const answered = await readResponses(
      join(report.artifacts.responses.dir, "responses.json"),
    );
    assert.equal(answered.length, 3);
    assert.ok(answered.every((e) => typeof e.response_after === "string"));
  });
});

Deno.test("dpo with lora: only the adapters train; merged weights and the adapter are saved", async () => {
  await withTempDir(async (dir) => {
    const lora = DPO_FROM_PRETRAIN + "    lora:\n      rank: 2\n      alpha: 4\n";
    const report = await runFile(await dpoPipeline(dir, lora, "", false), join(dir, "cache"));
    assert.ok(report.ok, report.error?.message);
    const out = report.artifacts.dpo.dir;
    const adapter = await readSafetensorsFile(join(out, "adapter.safetensors"));
    const trainable = [...adapter.tensors.values()].reduce((n, t) => n + t.data.length, 0);
    assert.equal(report.artifacts.dpo.manifest.metrics.trainable_parameters, trainable);
    const history = await readHistory(out);
    assert.ok(Math.abs(history.initial.train_loss - Math.LN2) < 1e-6);
    assert.ok(history.evaluations.at(-1).train_reward_margin > 0, JSON.stringify(history));
  });
});

Deno.test("dpo: interrupted (Ctrl-C), it checkpoints; killed (SIGKILL), it resumes; both end with the uninterrupted weights", async () => {
  await withTempDir(async (dir) => {
    const file = await dpoPipeline(
      dir,
      DPO_FROM_PRETRAIN + "    checkpoint_every: 2\n",
      "",
      false,
    );
    const reference = await runFile(file, join(dir, "reference"));
    assert.ok(reference.ok, reference.error?.message);
    const weights = async (d: string) =>
      (await readSafetensorsFile(join(d, "model.safetensors"))).tensors;
    const want = await weights(reference.artifacts.dpo.dir);
    const sameWeights = async (d: string) => {
      const got = await weights(d);
      for (const [name, tensor] of want) {
        assert.deepEqual(got.get(name)!.data, tensor.data, `${name} differs after resuming`);
      }
      assert.deepEqual(
        (await readHistory(d)).evaluations,
        (await readHistory(reference.artifacts.dpo.dir)).evaluations,
      );
    };

    // Ctrl-C: the run's signal; the loop finishes the step and checkpoints.
    const cache = join(dir, "interrupted");
    const first = await interruptWhen(file, cache, /\[dpo\] Ep 1 \(Step 000006\)/);
    assert.ok(
      !("ok" in first.outcome && first.outcome.ok),
      "the first run must have been interrupted",
    );
    assert.match(first.log, /\[dpo\] checkpoint saved at step 7/);
    const { report, log } = await runLogged(file, cache);
    assert.ok(report.ok, report.error?.message);
    assert.match(log, /\[dpo\] resuming from the checkpoint at step 7/);
    await sameWeights(report.artifacts.dpo.dir);

    // kill -9 after a checkpoint: the re-run continues from it.
    const killed = join(dir, "killed");
    await killAfterCheckpoint(file, killed, {
      stage: "dpo",
      atStep: 4,
      env: { GROUNDUP_MIRROR: SHARED_FIXTURES },
    });
    const again = await runLogged(file, killed);
    assert.ok(again.report.ok, again.report.error?.message);
    const from = resumedFrom(again.log, "dpo");
    assert.ok(from !== undefined && from >= 4 && from < 10, again.log);
    await sameWeights(again.report.artifacts.dpo.dir);
  });
});

Deno.test("dpo: a NaN loss stops the run, naming the step", async () => {
  await withTempDir(async (dir) => {
    const report = await runFile(
      await dpoPipeline(dir, DPO_FROM_PRETRAIN.replace("lr: 1.0e-3", "lr: 1.0e+30"), "", false),
      join(dir, "cache"),
    );
    assert.ok(!report.ok);
    assert.match(report.error!.message, /loss is (NaN|-?Infinity) at step \d+/);
  });
});
