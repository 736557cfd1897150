import assert from "node:assert/strict";
import { join } from "node:path";
import { loadPipeline } from "../../runner/pipeline.ts";
import { runPipeline } from "../../runner/run.ts";
import { builtinStages } from "../../stages/mod.ts";
import { readModelTokenizer } from "../../llm/infer/model_folder.ts";
import { loadModel } from "../../llm/model/weights_io.ts";
import { readSafetensorsFile } from "../../llm/weights/safetensors.ts";
import { REPO_ROOT, SHARED_FIXTURES, withTempDir } from "../fixtures.ts";
import { quietOutput, writePipeline } from "../runner/helpers.ts";

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

async function runFile(file: string, cacheDir: string) {
  const pipeline = await loadPipeline(file, builtinStages());
  return await runPipeline(pipeline, { cacheDir, out: quietOutput });
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
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", join(REPO_ROOT, "main.ts"), file, "--cache-dir", cache],
      stdout: "null",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).spawn();
    // Kill as soon as a checkpoint past the first epoch exists.
    const decoder = new TextDecoder();
    let seen = "";
    for await (const chunk of child.stderr) {
      seen += decoder.decode(chunk);
      const match = [...seen.matchAll(/checkpoint saved at step (\d+)/g)].at(-1);
      if (match && Number(match[1]) >= 35) break;
    }
    child.kill("SIGKILL");
    await child.status;
    assert.doesNotMatch(seen, /pretrain +ran/, "the run must not have finished");

    const resumed: string[] = [];
    const pipeline = await loadPipeline(file, builtinStages());
    const report = await runPipeline(pipeline, {
      cacheDir: cache,
      out: { write: (t: string) => void resumed.push(t), isTerminal: false },
    });
    assert.ok(report.ok, report.error?.message);
    const resumedFrom = /resuming from the checkpoint at step (\d+)/.exec(resumed.join(""));
    assert.ok(resumedFrom && Number(resumedFrom[1]) >= 35, resumed.join(""));
    assert.ok(Number(resumedFrom![1]) < epochs * 32);

    const a = await readSafetensorsFile(
      join(reference.artifacts.pretrain.dir, "model.safetensors"),
    );
    const b = await readSafetensorsFile(join(report.artifacts.pretrain.dir, "model.safetensors"));
    assert.deepEqual([...a.tensors.keys()], [...b.tensors.keys()]);
    for (const [name, tensor] of a.tensors) {
      assert.deepEqual(b.tensors.get(name)!.data, tensor.data, `${name} differs after resuming`);
    }
    const historyA = JSON.parse(
      await Deno.readTextFile(join(reference.artifacts.pretrain.dir, "history.json")),
    );
    const historyB = JSON.parse(
      await Deno.readTextFile(join(report.artifacts.pretrain.dir, "history.json")),
    );
    assert.deepEqual(historyB.evaluations, historyA.evaluations);
  });
});

Deno.test("pretrain: windows longer than the model's context are an error before training", async () => {
  await withTempDir(async (dir) => {
    const file = await writePipeline(
      dir,
      microPipeline(1).replace("    max_length: 16", "    max_length: 32"),
    );
    const report = await runFile(file, join(dir, "cache"));
    assert.equal(report.ok, false);
    assert.match(report.error!.message, /windows have 32 tokens but model\.context_length is 16/);
  });
});
