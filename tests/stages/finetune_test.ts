import assert from "node:assert/strict";
import { join } from "node:path";
import { PipelineError } from "../../runner/errors.ts";
import { openInstructionsArtifact } from "../../stages/mod.ts";
import { countLoraParameters, loadAdapter, mergedStateDict } from "../../llm/model/lora.ts";
import { loadModel } from "../../llm/model/weights_io.ts";
import { readModelTemplate } from "../../llm/infer/model_folder.ts";
import { readSafetensorsFile } from "../../llm/weights/safetensors.ts";
import { SHARED_FIXTURES, withTempDir } from "../fixtures.ts";
import { writePipeline } from "../runner/helpers.ts";
import {
  assertSameTensors,
  interruptWhen,
  killAfterCheckpoint,
  resumedFrom,
  runFile,
  runLogged,
  writeMicroBasePipeline,
} from "./harness.ts";
import { readResponses, responseFields } from "../../llm/eval/judge.ts";

Deno.env.set("GROUNDUP_MIRROR", SHARED_FIXTURES);

/** The micro base model (see `writeMicroBasePipeline`), the first 40 instruction entries, and `extra` stages. */
function ftPipeline(dir: string, extra: string) {
  return writeMicroBasePipeline(
    dir,
    { name: "ft", contextLength: 32, pretrain: "    initial_eval: false\n" },
    `  instructions:
    limit: 40
${extra}`,
  );
}

const LORA = `  lora-finetune:
    needs: [pretrain, instructions]
    epochs: 2
    batch_size: 4
    lr: 1.0e-2
    rank: 2
    alpha: 4
    eval_freq: 4
    eval_iter: 2
    sample_tokens: 4
    initial_eval: true
    checkpoint_every: 3
`;

Deno.test("instructions: the book's split of the first 40 entries, tokens, template and stats read back", async () => {
  await withTempDir(async (dir) => {
    const report = await runFile(await ftPipeline(dir, ""), join(dir, "cache"), undefined);
    assert.ok(report.ok, report.error?.message);
    const artifact = report.artifacts.instructions;
    // 85% → 34, 10% → 4, the rest (2) validates.
    assert.deepEqual(
      [
        artifact.manifest.metrics.train,
        artifact.manifest.metrics.test,
        artifact.manifest.metrics.val,
      ],
      [34, 4, 2],
    );
    const data = await openInstructionsArtifact(artifact.dir);
    const train = await data.entries("train");
    const examples = await data.examples("train");
    assert.equal(examples.length, 34);
    assert.deepEqual(examples[0].ids, data.tokenizer.encode(data.template.example(train[0])));
    assert.equal(
      examples[0].promptLength,
      data.tokenizer.encode(data.template.prompt(train[0])).length,
    );
    assert.equal(data.template.name, "alpaca");
    const stats = JSON.parse(await Deno.readTextFile(join(artifact.dir, "stats.json")));
    assert.equal(stats.splits.train.count, 34);
    assert.equal(stats.splits.train.maxLength, Math.max(...examples.map((e) => e.ids.length)));
  });
});

Deno.test("instructions: a local JSONL file (its content in the cache key), a custom template, the workshop split", async () => {
  await withTempDir(async (dir) => {
    const records = Array.from({ length: 20 }, (_, i) => ({
      instruction: `Add ${i} and 1.`,
      input: i % 2 ? `${i}` : "",
      output: `${i + 1}`,
    }));
    const data = join(dir, "data.jsonl");
    await Deno.writeTextFile(data, records.map((r) => JSON.stringify(r)).join("\n") + "\n");
    const file = await writePipeline(
      dir,
      `name: local
stages:
  instructions:
    corpus: ${data}
    split: workshop
    template: "Q: {instruction}[[ ({input})]]\\nA: {output}"
`,
    );
    const first = await runFile(file, join(dir, "cache"));
    assert.ok(first.ok, first.error?.message);
    const artifact = await openInstructionsArtifact(first.artifacts.instructions.dir);
    assert.equal(artifact.template.name, "custom");
    assert.equal(artifact.template.prompt(records[3]), "Q: Add 3 and 1. (3)");
    assert.deepEqual((await artifact.entries("train")).length, 17);
    assert.deepEqual((await artifact.entries("test")).length, 3);
    assert.deepEqual(await artifact.entries("val"), []);
    const cached = await runFile(file, join(dir, "cache"));
    assert.equal(cached.artifacts.instructions.key, first.artifacts.instructions.key);
    await Deno.writeTextFile(data, JSON.stringify(records[0]) + "\n", { append: true });
    const changed = await runFile(file, join(dir, "cache"));
    assert.ok(changed.ok, changed.error?.message);
    assert.notEqual(changed.artifacts.instructions.key, first.artifacts.instructions.key);
    assert.equal(changed.artifacts.instructions.manifest.metrics.duplicates, 1);
    // A template without {output} is refused before anything runs, naming the key.
    await Deno.writeTextFile(file, (await Deno.readTextFile(file)).replace("A: {output}", "A:"));
    await assert.rejects(runFile(file, join(dir, "cache")), /template.*must end with \{output\}/);
  });
});

Deno.test("lora-finetune: trains only the adapters, the loss falls, merged weights = base + adapter, template kept", async () => {
  await withTempDir(async (dir) => {
    const report = await runFile(await ftPipeline(dir, LORA), join(dir, "cache"));
    assert.ok(report.ok, report.error?.message);
    const artifact = report.artifacts["lora-finetune"];
    const m = artifact.manifest.metrics as Record<string, number | string>;
    const base = await loadModel(report.artifacts.pretrain.dir);
    try {
      assert.equal(
        m.trainable_parameters,
        countLoraParameters(base.config, {
          rank: 2,
          alpha: 4,
          targets: ["query", "key", "value", "projection", "mlp", "head"],
          dropout: 0,
          scaling: "alpha/rank",
        }),
      );
      assert.equal(m.prompt_template, "alpaca");
      assert.equal(m.steps, 2 * 8); // 34 entries, batches of 4, the last one dropped
      assert.ok(
        (m.train_loss as number) < (m.initial_train_loss as number) - 0.5,
        `train loss ${m.initial_train_loss} → ${m.train_loss}`,
      );
      const history = JSON.parse(await Deno.readTextFile(join(artifact.dir, "history.json")));
      assert.deepEqual(history.evaluations.map((e: { step: number }) => e.step), [0, 4, 8, 12]);
      assert.equal(history.samples.length, 2);
      assert.match(history.samples[0].text, /^Below is an instruction/);

      // The merged file is exactly the base model with the saved adapter folded in.
      const adapters = await loadAdapter(artifact.dir, base);
      const expected = await mergedStateDict(base, adapters);
      const merged = await readSafetensorsFile(join(artifact.dir, "model.safetensors"));
      assert.deepEqual([...merged.tensors.keys()].sort(), [...expected.keys()].sort());
      for (const [name, tensor] of expected) {
        assert.deepEqual(merged.tensors.get(name)!.data, tensor.data, `${name} differs`);
      }
      // ... and it differs from the base: the adapters learned something.
      const baseFile = await readSafetensorsFile(
        join(report.artifacts.pretrain.dir, "model.safetensors"),
      );
      assert.notDeepEqual(
        merged.tensors.get("out_head.weight")!.data,
        baseFile.tensors.get("out_head.weight")!.data,
      );
    } finally {
      base.dispose();
    }
    // generate/chat recognise the fine-tuned model and its template.
    assert.equal((await readModelTemplate(artifact.dir))?.name, "alpaca");
    assert.equal(await readModelTemplate(report.artifacts.pretrain.dir), undefined);
  });
});

Deno.test("finetune: trains every weight with the book's defaults and a phi3 template", async () => {
  await withTempDir(async (dir) => {
    const file = await ftPipeline(
      dir,
      `  finetune:
    needs: [pretrain, instructions]
    epochs: 1
    batch_size: 4
    lr: 1.0e-3
    eval_freq: 4
    eval_iter: 1
    sample_tokens: 0
`,
    );
    await Deno.writeTextFile(
      file,
      (await Deno.readTextFile(file)).replace("    limit: 40", "    limit: 40\n    template: phi3"),
    );
    const report = await runFile(file, join(dir, "cache"));
    assert.ok(report.ok, report.error?.message);
    const m = report.artifacts.finetune.manifest.metrics;
    const model = await loadModel(report.artifacts.finetune.dir);
    try {
      assert.equal(m.trainable_parameters, model.numParameters());
      assert.equal(model.config.drop_rate, 0);
    } finally {
      model.dispose();
    }
    assert.equal(m.prompt_template, "phi3");
    assert.equal((await readModelTemplate(report.artifacts.finetune.dir))?.name, "phi3");
  });
});

Deno.test("lora-finetune: killed mid-run (SIGKILL), the re-run resumes from the adapter checkpoint and ends with the same merged weights", async () => {
  await withTempDir(async (dir) => {
    const file = await ftPipeline(dir, LORA);
    const reference = await runFile(file, join(dir, "reference"));
    assert.ok(reference.ok, reference.error?.message);

    const cache = join(dir, "interrupted");
    await killAfterCheckpoint(file, cache, {
      stage: "lora-finetune",
      atStep: 9,
      env: { GROUNDUP_MIRROR: SHARED_FIXTURES },
    });
    const { report, log } = await runLogged(file, cache);
    assert.ok(report.ok, report.error?.message);
    const from = resumedFrom(log, "lora-finetune");
    assert.ok(from !== undefined && from >= 9 && from < 16, log);
    for (const name of ["model.safetensors", "adapter.safetensors"]) {
      await assertSameTensors(
        reference.artifacts["lora-finetune"].dir,
        report.artifacts["lora-finetune"].dir,
        name,
      );
    }
    const history = async (r: typeof report) =>
      JSON.parse(
        await Deno.readTextFile(join(r.artifacts["lora-finetune"].dir, "history.json")),
      );
    assert.deepEqual((await history(report)).evaluations, (await history(reference)).evaluations);
  });
});

Deno.test("lora-finetune: interrupted (Ctrl-C: the run's signal), it checkpoints, and the re-run ends with the same weights", async () => {
  await withTempDir(async (dir) => {
    const file = await ftPipeline(dir, LORA.replace("    checkpoint_every: 3\n", ""));
    const reference = await runFile(file, join(dir, "reference"));
    assert.ok(reference.ok, reference.error?.message);

    const cache = join(dir, "interrupted");
    const first = await interruptWhen(file, cache, /\[lora-finetune\] Ep 1 \(Step 000004\)/);
    assert.ok(
      !("ok" in first.outcome && first.outcome.ok),
      "the first run must have been interrupted",
    );
    assert.match(first.log, /\[lora-finetune\] checkpoint saved at step 5/);

    const { report, log } = await runLogged(file, cache);
    assert.ok(report.ok, report.error?.message);
    assert.match(log, /\[lora-finetune\] resuming from the checkpoint at step 5/);
    await assertSameTensors(
      reference.artifacts["lora-finetune"].dir,
      report.artifacts["lora-finetune"].dir,
      "model.safetensors",
    );
  });
});

const RESPONSES = `  responses:
    needs: [instructions, pretrain]
    split: train
    limit: 6
    batch_size: 1
    max_new_tokens: 6
`;

async function findFile(dir: string, name: string): Promise<string | undefined> {
  for await (const entry of Deno.readDir(dir)) {
    const path = join(dir, entry.name);
    if (entry.isFile && entry.name === name) return path;
    if (entry.isDirectory) {
      const found = await findFile(path, name);
      if (found) return found;
    }
  }
  return undefined;
}

Deno.test("responses: the book's responses.json; an interrupted run resumes at the next entry", async () => {
  await withTempDir(async (dir) => {
    const file = await ftPipeline(dir, RESPONSES);
    const reference = await runFile(file, join(dir, "reference"));
    assert.ok(reference.ok, reference.error?.message);
    const want = JSON.parse(
      await Deno.readTextFile(join(reference.artifacts.responses.dir, "responses.json")),
    );
    const train = JSON.parse(
      await Deno.readTextFile(join(reference.artifacts.instructions.dir, "train.json")),
    );
    assert.equal(want.length, 6);
    // The judge reads it as the book's format, with one response field.
    const path = join(reference.artifacts.responses.dir, "responses.json");
    assert.deepEqual(responseFields(await readResponses(path)), ["model_response"]);
    want.forEach((entry: Record<string, string>, i: number) => {
      assert.deepEqual(
        { instruction: entry.instruction, input: entry.input, output: entry.output },
        train[i],
      );
      assert.equal(typeof entry.model_response, "string");
    });

    // Stop once two answers are in the progress file, then run again.
    const cache = join(dir, "interrupted");
    const controller = new AbortController();
    const timer = setInterval(async () => {
      const path = await findFile(cache, "responses.jsonl").catch(() => undefined);
      if (!path) return;
      const lines = (await Deno.readTextFile(path)).trim().split("\n");
      if (lines.length >= 2) controller.abort();
    }, 5);
    let first;
    try {
      first = await runFile(file, cache, controller.signal).catch((error) => error);
    } finally {
      clearInterval(timer);
    }
    assert.ok(!(first && "ok" in first && first.ok), "the first run must have been interrupted");
    const { report, log } = await runLogged(file, cache);
    assert.ok(report.ok, report.error?.message);
    const done = /model_response: (\d+) of 6 answers already done, resuming/.exec(log);
    assert.ok(done && Number(done[1]) >= 2 && Number(done[1]) < 6, log);
    assert.deepEqual(
      JSON.parse(await Deno.readTextFile(join(report.artifacts.responses.dir, "responses.json"))),
      want,
    );
  });
});

Deno.test("responses: a `models` entry that names no upstream model is a validation error naming the needs", async () => {
  await withTempDir(async (dir) => {
    const file = await ftPipeline(
      dir,
      RESPONSES + "    models:\n      response_after: lora-finetune\n",
    );
    const report = await runFile(file, join(dir, "cache")).catch((error) => error);
    const message = report instanceof Error ? report.message : report.error?.message;
    assert.match(
      String(message),
      /key "models\.response_after": "lora-finetune" is not among this stage's needs \(instructions, pretrain\)/,
    );
    assert.ok(report instanceof PipelineError, "it fails before anything runs");
    assert.equal(
      [...Deno.readDirSync(dir)].some((e) => e.name === "cache"),
      false,
      "no stage ran",
    );
  });
});
