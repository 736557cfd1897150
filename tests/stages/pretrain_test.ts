import assert from "node:assert/strict";
import { join } from "node:path";
import { readModelTokenizer } from "../../llm/infer/model_folder.ts";
import { loadModel } from "../../llm/model/weights_io.ts";
import { REPO_ROOT, SHARED_FIXTURES, withTempDir } from "../fixtures.ts";
import { writePipeline } from "../runner/helpers.ts";
import {
  assertSameTensors,
  killAfterCheckpoint,
  resumedFrom,
  runFile,
  runLogged,
} from "./harness.ts";

Deno.env.set("GROUNDUP_MIRROR", SHARED_FIXTURES);

/** A micro GPT over the regex tokenizer's 1,132-word vocabulary: fast enough for tests. */
function microPipeline(epochs: number, extra = "") {
  return `name: micro
seed: 123
backend: cpu
model:
  vocab_size: 1132
  context_length: 16
  emb_dim: 32
  n_heads: 2
  n_layers: 1
  drop_rate: 0.1
  qkv_bias: false
stages:
  tokenize:
    corpus: the-verdict
    tokenizer: simple
  dataloader:
    needs: tokenize
    batch_size: 8
    max_length: 16
    stride: 16
  pretrain:
    needs: dataloader
    epochs: ${epochs}
    lr: 2.0e-3
    eval_freq: 10
    eval_iter: 2
    sample_tokens: 5
    sample_prompt: I HAD always thought
    checkpoint_every: 7
${extra}`;
}

Deno.test("pretrain: the loss falls clearly and the artifact holds weights, history, plot and samples", async () => {
  await withTempDir(async (dir) => {
    const report = await runFile(await writePipeline(dir, microPipeline(2)), join(dir, "cache"));
    assert.ok(report.ok, report.error?.message);
    const artifact = report.artifacts.pretrain;
    const m = artifact.manifest.metrics as Record<string, number>;
    // Untrained: about ln(1132) ≈ 7.03; two epochs later clearly lower.
    assert.ok(
      Math.abs(m.initial_train_loss - Math.log(1132)) < 0.3,
      `initial ${m.initial_train_loss}`,
    );
    assert.ok(
      m.train_loss < m.initial_train_loss - 1.5,
      `train ${m.initial_train_loss} → ${m.train_loss}`,
    );
    const batches = report.artifacts.dataloader.manifest.metrics.train_batches as number;
    assert.equal(m.steps, 2 * batches);
    assert.equal(m.tokens_seen, 2 * batches * 8 * 16);
    const history = JSON.parse(await Deno.readTextFile(join(artifact.dir, "history.json")));
    // The book evaluates at steps 0, eval_freq, 2·eval_freq, ...
    const evalSteps = Array.from({ length: m.steps }, (_, s) => s).filter((s) => s % 10 === 0);
    assert.deepEqual(history.evaluations.map((e: { step: number }) => e.step), evalSteps);
    assert.equal(history.samples.length, 2);
    assert.match(history.samples[0].text, /^I HAD always thought.+/);
    const csv = await Deno.readTextFile(join(artifact.dir, "history.csv"));
    assert.equal(csv.trim().split("\n").length, evalSteps.length + 1);
    assert.match(
      await Deno.readTextFile(join(artifact.dir, "loss.svg")),
      /^<svg[\s\S]*Tokens seen[\s\S]*<\/svg>\n$/,
    );
    // The artifact decodes with the regex tokenizer it was trained on, not GPT-2's default.
    assert.equal((await readModelTokenizer(artifact.dir)).vocabSize, 1132);
    const model = await loadModel(artifact.dir);
    assert.equal(model.config.emb_dim, 32);
    model.dispose();
    // The progress folder with the checkpoints is gone once the artifact is complete.
    const names = [...Deno.readDirSync(join(dir, "cache", "pretrain"))].map((e) => e.name);
    assert.deepEqual(names.filter((n) => n.startsWith(".")), []);
  });
});

Deno.test("pretrain: killed mid-run (SIGKILL), the re-run resumes and ends with the same weights", async () => {
  await withTempDir(async (dir) => {
    const epochs = 6; // 192 steps
    const file = await writePipeline(dir, microPipeline(epochs));
    const reference = await runFile(file, join(dir, "reference"));
    assert.ok(reference.ok, reference.error?.message);

    const cache = join(dir, "interrupted");
    await killAfterCheckpoint(file, cache, { stage: "pretrain", atStep: 35 });
    const { report, log } = await runLogged(file, cache);
    assert.ok(report.ok, report.error?.message);
    const from = resumedFrom(log, "pretrain");
    assert.ok(from !== undefined && from >= 35, log);
    assert.ok(from < epochs * 32);
    await assertSameTensors(
      reference.artifacts.pretrain.dir,
      report.artifacts.pretrain.dir,
      "model.safetensors",
    );
    const historyA = JSON.parse(
      await Deno.readTextFile(join(reference.artifacts.pretrain.dir, "history.json")),
    );
    const historyB = JSON.parse(
      await Deno.readTextFile(join(report.artifacts.pretrain.dir, "history.json")),
    );
    assert.deepEqual(historyB.evaluations, historyA.evaluations);
  });
});

Deno.test("pretrain: windows longer than the model's context are an error before anything runs", async () => {
  await withTempDir(async (dir) => {
    const file = await writePipeline(
      dir,
      microPipeline(1).replace("    max_length: 16", "    max_length: 32"),
    );
    await assert.rejects(
      runFile(file, join(dir, "cache")),
      /makes windows of max_length 32 tokens, longer than model\.context_length 16/,
    );
    await assert.rejects(Deno.stat(join(dir, "cache", "tokenize")), Deno.errors.NotFound);
  });
});

/**
 * Runs the pipeline in a child process and sends it SIGINT once it has logged `afterLines`
 * evaluation lines past its start; returns the child's exit code and what it printed.
 */
async function interruptChild(file: string, cache: string, afterLines: number) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", join(REPO_ROOT, "main.ts"), file, "--cache-dir", cache],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  const decoder = new TextDecoder();
  let seen = "";
  let sent = false;
  const stdout = child.stdout.pipeTo(
    new WritableStream({ write: (c) => void (seen += decoder.decode(c)) }),
  );
  for await (const chunk of child.stderr) {
    seen += decoder.decode(chunk);
    if (!sent && (seen.match(/\(Step \d+\)/g)?.length ?? 0) >= afterLines) {
      child.kill("SIGINT");
      sent = true;
    }
  }
  await stdout;
  const { code } = await child.status;
  return { code, seen, sent };
}

Deno.test("pretrain: Ctrl-C twice at different points, then a plain re-run: exit 130 each time and the same weights as an uninterrupted run", async () => {
  await withTempDir(async (dir) => {
    const epochs = 6; // 192 steps, evaluations every 10
    const file = await writePipeline(
      dir,
      microPipeline(epochs).replace("checkpoint_every: 7\n", ""),
    );
    const reference = await runFile(file, join(dir, "reference"));
    assert.ok(reference.ok, reference.error?.message);

    const cache = join(dir, "interrupted");
    const steps: number[] = [];
    for (const afterLines of [3, 6]) {
      const run = await interruptChild(file, cache, afterLines);
      assert.ok(run.sent, `the run ended before it could be interrupted:\n${run.seen}`);
      assert.equal(run.code, 130, run.seen);
      const saved = /checkpoint saved at step (\d+)/.exec(run.seen);
      assert.ok(saved, `no checkpoint written on Ctrl-C:\n${run.seen}`);
      assert.match(run.seen, /run the same command again to resume/);
      assert.doesNotMatch(run.seen, /pretrain +ran/);
      steps.push(Number(saved[1]));
    }
    // The second run resumed from the first one's checkpoint and went further.
    assert.ok(steps[1] > steps[0], `checkpoints at steps ${steps}`);

    const { report, log } = await runLogged(file, cache);
    assert.ok(report.ok, report.error?.message);
    assert.match(log, new RegExp(`resuming from the checkpoint at step ${steps[1]}`));
    await assertSameTensors(
      reference.artifacts.pretrain.dir,
      report.artifacts.pretrain.dir,
      "model.safetensors",
    );
  });
});
