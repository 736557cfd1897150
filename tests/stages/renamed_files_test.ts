/**
 * Our own files have their own names (gpt_config.json, tokenizer_spec.json), leaving
 * config.json and tokenizer.json to Hugging Face. Folders written before the rename still load:
 * a cached artifact with the old names verifies, and a downstream stage reads its model and
 * tokenizer and reproduces PyTorch's greedy continuations. New folders have only the new names;
 * a Hugging Face folder is never mistaken for ours.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { z } from "zod";
import { loadPipeline } from "../../runner/pipeline.ts";
import { runPipeline } from "../../runner/run.ts";
import { verifyArtifact } from "../../runner/cache.ts";
import { defineStage, StageRegistry } from "../../runner/stage.ts";
import { useEngine } from "../../stages/engine.ts";
import { generateStage, type Generation } from "../../stages/generate.ts";
import { GPTModel } from "../../llm/model/gpt.ts";
import { loadModel, loadModelConfigFile, saveModel } from "../../llm/model/weights_io.ts";
import { isModelFolder, readModelTokenizer } from "../../llm/infer/model_folder.ts";
import { copyTokenizerFiles, readTokenizerFolder } from "../../llm/tokenizer/files.ts";
import { localFixture, withTempDir } from "../fixtures.ts";
import { quietOutput, writePipeline } from "../runner/helpers.ts";
import { useCpuBackend } from "../llm/model/tf_setup.ts";
import { parityWords, writeParityModelFolder } from "./parity_checkpoints.ts";

await useCpuBackend();

const CONFIG = {
  vocab_size: 41,
  context_length: 10,
  emb_dim: 16,
  n_heads: 2,
  n_layers: 2,
  drop_rate: 0,
  qkv_bias: true,
};

const names = (dir: string) => [...Deno.readDirSync(dir)].map((e) => e.name).sort();

/** Renames our files in `dir` to the names they had before (what an old artifact holds). */
async function toOldNames(dir: string) {
  await Deno.rename(join(dir, "gpt_config.json"), join(dir, "config.json"));
  await Deno.rename(join(dir, "tokenizer_spec.json"), join(dir, "tokenizer.json"));
}

Deno.test("renamed files: a new model folder has only the new names", async () => {
  await withTempDir(async (dir) => {
    const model = new GPTModel(CONFIG, { seed: 3 });
    await saveModel(dir, model);
    model.dispose();
    assert.deepEqual(names(dir), ["gpt_config.json", "model.safetensors"]);
    assert.deepEqual(JSON.parse(await Deno.readTextFile(join(dir, "gpt_config.json"))), CONFIG);
  });
});

Deno.test("renamed files: an old folder loads; saving into it leaves only the new names", async () => {
  await withTempDir(async (dir) => {
    const model = new GPTModel(CONFIG, { seed: 3 });
    await saveModel(dir, model);
    await Deno.writeTextFile(join(dir, "tokenizer_spec.json"), JSON.stringify({ kind: "gpt2" }));
    await toOldNames(dir);
    assert.ok(isModelFolder(dir));
    assert.deepEqual(await loadModelConfigFile(dir), CONFIG);
    const loaded = await loadModel(dir);
    assert.deepEqual(
      await loaded.stateTensors()[0].parts[0].data(),
      await model.stateTensors()[0].parts[0].data(),
    );
    loaded.dispose();
    assert.equal((await readModelTokenizer(dir)).name, "gpt2");

    // A copy of its tokenizer arrives under the new name.
    const copy = join(dir, "copy");
    await Deno.mkdir(copy);
    await copyTokenizerFiles(dir, copy);
    assert.deepEqual(names(copy), ["tokenizer_spec.json"]);

    await saveModel(dir, model);
    model.dispose();
    assert.deepEqual(names(dir).filter((n) => n.endsWith(".json")), [
      "gpt_config.json",
      "tokenizer.json",
    ]);
  });
});

Deno.test("renamed files: a Hugging Face folder is not read as ours, and says so", async () => {
  await withTempDir(async (dir) => {
    const model = new GPTModel(CONFIG, { seed: 3 });
    await saveModel(dir, model);
    model.dispose();
    await Deno.remove(join(dir, "gpt_config.json"));
    await Deno.writeTextFile(join(dir, "config.json"), JSON.stringify({ model_type: "qwen3" }));
    await Deno.writeTextFile(
      join(dir, "tokenizer.json"),
      JSON.stringify({ version: "1.0", model: { type: "BPE" } }),
    );
    // A model folder all the same (openModelFolder reads it as Hugging Face's), never as ours.
    assert.equal(isModelFolder(dir), true);
    await assert.rejects(
      loadModelConfigFile(dir),
      /config\.json: a Hugging Face config \(model_type "qwen3"\), not a groundup GPT config/,
    );
    await assert.rejects(
      readTokenizerFolder(dir),
      /tokenizer_spec\.json: cannot read the tokenizer: no such file, and .*tokenizer\.json is not our tokenizer spec/,
    );
    // Its tokenizer.json is read as Hugging Face's, and this one is not a usable one.
    await assert.rejects(readModelTokenizer(dir), /tokenizer\.json/);
  });
});

/** A stage as it was before the rename: writes the parity model under the old file names. */
const oldModelStage = defineStage({
  type: "old-model",
  version: "1",
  description: "writes a model folder with the names used before the rename",
  params: z.strictObject({}),
  async run(ctx) {
    await useEngine(ctx);
    await writeParityModelFolder(ctx.outDir);
    await toOldNames(ctx.outDir);
  },
});

Deno.test("renamed files: a cached artifact with the old names verifies, and generate reads it", async () => {
  await withTempDir(async (dir) => {
    const registry = new StageRegistry().register(oldModelStage).register(generateStage);
    const cases = JSON.parse(
      await Deno.readTextFile(localFixture("parity", "qkv_bias", "generate.json")),
    ).cases as { prompt: number[]; expected_new_tokens: number[] }[];
    const prompts = cases.map((c) => parityWords(c.prompt));
    const yaml = `name: t
backend: cpu
stages:
  model:
    uses: old-model
  generate:
    needs: model
    prompts: ${JSON.stringify(prompts)}
    max_new_tokens: 8
`;
    const run = async () => {
      const pipeline = await loadPipeline(await writePipeline(dir, yaml), registry, {
        baseDir: dir,
      });
      return await runPipeline(pipeline, { cacheDir: join(dir, "cache"), out: quietOutput });
    };
    const first = await run();
    assert.ok(first.ok, first.error?.message);
    const old = first.artifacts.model.dir;
    assert.ok(names(old).includes("config.json") && names(old).includes("tokenizer.json"));
    assert.ok(!names(old).includes("gpt_config.json"));

    // Run again with generate forced: the old artifact is reused (its manifest verifies) and
    // the model and its simple tokenizer load from the old names.
    await verifyArtifact(old);
    const pipeline = await loadPipeline(await writePipeline(dir, yaml), registry, {
      baseDir: dir,
    });
    const second = await runPipeline(pipeline, {
      cacheDir: join(dir, "cache"),
      out: quietOutput,
      force: ["generate"],
    });
    assert.ok(second.ok, second.error?.message);
    assert.equal(second.steps[0].outcome, "cached");
    assert.equal(second.steps[1].outcome, "ran");
    const generations = JSON.parse(
      await Deno.readTextFile(join(second.artifacts.generate.dir, "generations.json")),
    ) as Generation[];
    for (const [i, c] of cases.entries()) {
      assert.equal(generations[i].response, " " + parityWords(c.expected_new_tokens));
    }
  });
});
