/**
 * Stage evaluate through the runner: a tiny random GPT from an upstream stage, two MMLU
 * subjects from the mirror's original CSVs with `limit`, results.json in the harness's layout,
 * samples.jsonl, the summary's headline, the cache, and parameter errors.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { z } from "zod";
import { loadPipeline } from "../../runner/pipeline.ts";
import { formatSummary, runPipeline } from "../../runner/run.ts";
import { defineStage, StageRegistry } from "../../runner/stage.ts";
import { useEngine } from "../../stages/engine.ts";
import { evaluateStage } from "../../stages/evaluate.ts";
import { loadModelConfig } from "../../llm/model/config.ts";
import { GPTModel } from "../../llm/model/gpt.ts";
import { saveModel } from "../../llm/model/weights_io.ts";
import type { MmluSample } from "../../llm/eval/mmlu/evaluate.ts";
import { accStderr } from "../../llm/eval/metrics.ts";
import { SHARED_FIXTURES, sharedFixture, withTempDir } from "../fixtures.ts";
import { type MmluQuestion, readMmluCsvFile } from "../../llm/eval/mmlu/data.ts";
import { MMLU_DATA_TAR, mmluParquetFile, parquetName } from "../../datasets/mmlu.ts";
import { ByteWriter, parquetWrite } from "hyparquet-writer";
import { buildTar } from "../llm/eval/tar_helpers.ts";
import { writePipeline } from "../runner/helpers.ts";

const tinyModelStage = defineStage({
  type: "tiny-model",
  version: "1",
  description: "writes a random tiny GPT-2 model folder",
  params: z.strictObject({ seed: z.number().int().default(7) }),
  async run(ctx) {
    await useEngine(ctx);
    const model = new GPTModel(await loadModelConfig("tiny"), { seed: ctx.params.seed });
    await saveModel(ctx.outDir, model);
    model.dispose();
  },
});

const textStage = defineStage({
  type: "text",
  version: "1",
  description: "writes a file that is not a model",
  params: z.strictObject({}),
  async run(ctx) {
    await Deno.writeTextFile(join(ctx.outDir, "note.txt"), "no model here");
  },
});

const registry = () =>
  new StageRegistry().register(tinyModelStage).register(textStage).register(evaluateStage);

async function run(dir: string, evaluate: string, mirror = SHARED_FIXTURES) {
  const saved = Deno.env.get("GROUNDUP_MIRROR");
  Deno.env.set("GROUNDUP_MIRROR", mirror);
  const logged: string[] = [];
  try {
    const file = await writePipeline(
      dir,
      `name: t\nbackend: cpu\nstages:\n  model:\n    uses: tiny-model\n  evaluate:\n    needs: model\n${evaluate}`,
    );
    const pipeline = await loadPipeline(file, registry(), { baseDir: dir });
    const report = await runPipeline(pipeline, {
      cacheDir: join(dir, "cache"),
      out: { write: (text) => void logged.push(text), isTerminal: false },
    });
    return { report, logged: logged.join("") };
  } finally {
    if (saved === undefined) Deno.env.delete("GROUNDUP_MIRROR");
    else Deno.env.set("GROUNDUP_MIRROR", saved);
  }
}

Deno.test("evaluate: two subjects with limit through the runner; results.json, samples.jsonl, cache", async () => {
  await withTempDir(async (dir) => {
    const params =
      "    tasks: [mmlu_philosophy, mmlu_us_foreign_policy]\n    limit: 4\n    batch_size: 3\n";
    const { report, logged } = await run(dir, params);
    assert.ok(report.ok, report.error?.message);
    const out = report.artifacts.evaluate.dir;
    const results = JSON.parse(await Deno.readTextFile(join(out, "results.json")));
    const samples = (await Deno.readTextFile(join(out, "samples.jsonl"))).trim().split("\n").map(
      (line) => JSON.parse(line) as MmluSample,
    );
    assert.equal(samples.length, 8);
    for (
      const [task, subject, original] of [
        ["mmlu_philosophy", "philosophy", 311],
        ["mmlu_us_foreign_policy", "us_foreign_policy", 100],
      ] as const
    ) {
      const mine = samples.filter((s) => s.task === task);
      assert.deepEqual(mine.map((s) => s.doc_id), [0, 1, 2, 3]);
      assert.ok(mine.every((s) => s.loglikelihoods.length === 4 && s.doc.subject === subject));
      const acc = mine.filter((s) => s.correct).length / 4;
      assert.deepEqual(results.results[task], {
        alias: subject.replaceAll("_", " "),
        "acc,none": acc,
        "acc_stderr,none": accStderr(acc, 4),
      });
      assert.deepEqual(results["n-samples"][task], { original, effective: 4 });
      assert.equal(results["n-shot"][task], 0);
      assert.equal(results.configs[task].dataset_path, "cais/mmlu");
      assert.equal(results.configs[task].dataset_name, subject);
      assert.equal(results.configs[task].fewshot_split, "dev");
      assert.equal(
        results.configs[task].description,
        `The following are multiple choice questions (with answers) about ${
          subject.replaceAll("_", " ")
        }.\n\n`,
      );
    }
    assert.equal(samples[0].prompt.split("\n")[2], "Aesthetics deals with objects that are_____.");
    assert.equal(results.config.limit, 4);
    assert.equal(results.config.batch_size, 3);
    assert.equal(results.config.model_args.context_length, 32);
    assert.match(results.config.data_source, /csv .*mmlu\/test\/philosophy_test\.csv/);
    assert.equal(results.single_token_continuations, true);
    const metrics = report.artifacts.evaluate.manifest.metrics;
    assert.equal(metrics.task, "mmlu_philosophy");
    assert.equal(metrics.acc, Math.round(results.results.mmlu_philosophy["acc,none"] * 1e4) / 1e4);
    assert.equal(metrics.questions, 8);
    assert.match(logged, /mmlu_philosophy: acc [\d.]+ ± [\d.]+ \(4 questions\)/);
    assert.match(
      formatSummary(report),
      /task=mmlu_philosophy acc=[\d.]+ acc_stderr=[\d.]+ questions=8/,
    );

    // The same pipeline again: cached; a different limit: evaluated again.
    const again = await run(dir, params);
    assert.ok(again.report.ok);
    assert.equal(again.report.artifacts.evaluate.dir, out);
    assert.equal(again.report.steps.find((s) => s.stage === "evaluate")!.outcome, "cached");
    const fewer = await run(dir, params.replace("limit: 4", "limit: 2"));
    assert.ok(fewer.report.ok);
    assert.equal(fewer.report.artifacts.evaluate.manifest.metrics.questions, 4);
  });
});

Deno.test("evaluate: unknown task names and a missing model are reported clearly", async () => {
  await withTempDir(async (dir) => {
    const file = await writePipeline(
      dir,
      "name: t\nstages:\n  model:\n    uses: tiny-model\n  evaluate:\n    needs: model\n    tasks: [mmlu_astrology]\n",
    );
    await assert.rejects(
      loadPipeline(file, registry(), { baseDir: dir }),
      /unknown MMLU task "mmlu_astrology"/,
    );
    const noModel = await writePipeline(
      dir,
      "name: t\nstages:\n  notes:\n    uses: text\n  evaluate:\n    needs: notes\n    tasks: [mmlu_philosophy]\n",
    );
    const report = await runPipeline(await loadPipeline(noModel, registry(), { baseDir: dir }), {
      cacheDir: join(dir, "cache"),
      out: { write() {}, isTerminal: false },
    });
    assert.equal(report.ok, false);
    assert.match(
      report.error!.message,
      /needs a stage that produced a model \(model\.safetensors \+ gpt_config\.json, or a Hugging Face model folder\).*needs: notes/,
    );
  });
});

/** A cais/mmlu-layout Parquet file of these questions (subject column filled in). */
function mmluParquet(questions: MmluQuestion[]): Uint8Array {
  const writer = new ByteWriter();
  parquetWrite({
    writer,
    columnData: [
      { name: "question", data: questions.map((q) => q.question), type: "STRING" },
      { name: "subject", data: questions.map((q) => q.subject), type: "STRING" },
      { name: "choices", data: questions.map((q) => q.choices) },
      { name: "answer", data: questions.map((q) => BigInt(q.answer)), type: "INT64" },
    ],
  });
  return new Uint8Array(writer.getBuffer());
}

Deno.test("evaluate: a local cais/mmlu snapshot (per-subject or `all` files) gives the same answers as the CSVs", async () => {
  await withTempDir(async (dir) => {
    const perSubject = join(dir, "snapshot"), combined = join(dir, "all-only");
    for (const split of ["dev", "test"] as const) {
      const all: MmluQuestion[] = [];
      for (const subject of ["philosophy", "us_foreign_policy"]) {
        const questions = await readMmluCsvFile(sharedFixture("mmlu"), subject, split);
        all.push(...questions);
        const path = join(perSubject, parquetName(subject, split));
        await Deno.mkdir(join(path, ".."), { recursive: true });
        await Deno.writeFile(path, mmluParquet(questions));
      }
      // The `all` configuration: every subject in one file, read once and split by subject.
      const path = join(combined, parquetName("all", split));
      await Deno.mkdir(join(path, ".."), { recursive: true });
      await Deno.writeFile(path, mmluParquet(all));
    }
    const params =
      "    tasks: [mmlu_philosophy, mmlu_us_foreign_policy]\n    limit: 3\n    num_fewshot: 2\n";
    for (const name of ["a", "b", "c"]) await Deno.mkdir(join(dir, name));
    const fromCsv = await run(join(dir, "a"), params);
    const parquet = (folder: string) =>
      params + `    source: parquet\n    parquet_dir: ${folder}\n`;
    const fromSnapshot = await run(join(dir, "b"), parquet(perSubject));
    const fromAll = await run(join(dir, "c"), parquet(combined));
    for (const { report } of [fromCsv, fromSnapshot, fromAll]) {
      assert.ok(report.ok, report.error?.message);
    }
    const read = async (report: typeof fromCsv.report) => {
      const out = report.artifacts.evaluate.dir;
      return {
        results: JSON.parse(await Deno.readTextFile(join(out, "results.json"))),
        samples: await Deno.readTextFile(join(out, "samples.jsonl")),
      };
    };
    const a = await read(fromCsv.report);
    for (
      const [b, folder, file] of [
        [await read(fromSnapshot.report), perSubject, "philosophy/test"],
        [await read(fromAll.report), combined, "all/test"],
      ] as const
    ) {
      assert.equal(b.samples, a.samples);
      assert.deepEqual(b.results.results, a.results.results);
      assert.ok(
        b.results.config.data_source.includes(
          `parquet ${join(folder, file)}-00000-of-00001.parquet`,
        ),
        b.results.config.data_source,
      );
    }
  });
});

Deno.test("evaluate: downloads are pinned; a mirror copy that is not the pinned file is refused by name", async () => {
  await withTempDir(async (dir) => {
    const mirror = join(dir, "mirror");
    const philosophy = await readMmluCsvFile(sharedFixture("mmlu"), "philosophy", "test");
    const parquet = join(mirror, mmluParquetFile("test").path);
    await Deno.mkdir(join(parquet, ".."), { recursive: true });
    await Deno.writeFile(parquet, mmluParquet(philosophy));
    await Deno.writeFile(
      join(mirror, MMLU_DATA_TAR.path),
      buildTar([["data/x", new Uint8Array(3)]]),
    );
    await Deno.mkdir(join(dir, "a")), await Deno.mkdir(join(dir, "b"));
    const params = "    tasks: [mmlu_philosophy]\n    limit: 2\n";
    for (
      const [sub, source, file] of [
        ["a", "parquet", mmluParquetFile("test")],
        ["b", "tar", MMLU_DATA_TAR],
      ] as const
    ) {
      const { report } = await run(join(dir, sub), params + `    source: ${source}\n`, mirror);
      assert.equal(report.ok, false);
      const message = report.error?.message ?? "";
      assert.match(message, /sha256 mismatch/);
      assert.ok(message.includes(join(mirror, file.path)), message);
      assert.ok(message.includes(file.sha256!), message);
    }
    assert.match(
      mmluParquetFile("dev").url,
      /cais\/mmlu\/resolve\/c30699e8356da336a370243923dbaf21066bb9fe\//,
    );
  });
});

Deno.test("evaluate: the original data.tar release (tar_file) gives the same answers; local copies need their source", async () => {
  await withTempDir(async (dir) => {
    const entries: [string, Uint8Array][] = [];
    for (const split of ["dev", "test"]) {
      entries.push([
        `data/${split}/formal_logic_${split}.csv`,
        await Deno.readFile(sharedFixture("mmlu", split, `formal_logic_${split}.csv`)),
      ]);
    }
    const tarFile = join(dir, "data.tar");
    await Deno.writeFile(tarFile, buildTar(entries));
    await Deno.mkdir(join(dir, "a")), await Deno.mkdir(join(dir, "b"));
    await Deno.mkdir(join(dir, "c"));
    const params = "    tasks: [mmlu_formal_logic]\n    limit: 3\n    num_fewshot: 1\n";
    const fromCsv = await run(join(dir, "a"), params);
    const fromTar = await run(
      join(dir, "b"),
      params + `    source: tar\n    tar_file: ${tarFile}\n`,
    );
    assert.ok(fromTar.report.ok, fromTar.report.error?.message);
    const samples = (report: typeof fromCsv.report) =>
      Deno.readTextFile(join(report.artifacts.evaluate.dir, "samples.jsonl"));
    assert.equal(await samples(fromTar.report), await samples(fromCsv.report));
    await assert.rejects(
      run(join(dir, "c"), params + `    tar_file: ${tarFile}\n`),
      /tar_file is read by `source: tar` only \(source is auto\)/,
    );
  });
});
