/**
 * Stage export through the runner: a tiny GPT-2 from an upstream stage to GGUF (Q8_0, with a
 * Modelfile) and to a Hugging Face folder that loads back; a model llama.cpp cannot run is
 * refused with nothing cached.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { z } from "zod";
import { loadHfModel } from "../../llm/families/load.ts";
import { loadModelConfig } from "../../llm/model/config.ts";
import { GPTModel } from "../../llm/model/gpt.ts";
import { saveModel } from "../../llm/model/weights_io.ts";
import { openGguf } from "../../llm/weights/gguf.ts";
import { loadPipeline } from "../../runner/pipeline.ts";
import { runPipeline } from "../../runner/run.ts";
import { defineStage, StageRegistry } from "../../runner/stage.ts";
import { useEngine } from "../../stages/engine.ts";
import { exportStage } from "../../stages/export.ts";
import { withTempDir } from "../fixtures.ts";
import { writePipeline } from "../runner/helpers.ts";

const tinyModelStage = defineStage({
  type: "tiny-model",
  version: "1",
  description: "writes a random tiny GPT-2 model folder",
  params: z.strictObject({ norm: z.enum(["layernorm", "rmsnorm"]).default("layernorm") }),
  async run(ctx) {
    await useEngine(ctx);
    const config = { ...await loadModelConfig("tiny"), norm: ctx.params.norm };
    const model = new GPTModel(config, { seed: 5, tiedHead: true });
    await saveModel(ctx.outDir, model);
    model.dispose();
  },
});

const registry = () => new StageRegistry().register(tinyModelStage).register(exportStage);

async function run(dir: string, stages: string) {
  const file = await writePipeline(
    dir,
    `name: t\nbackend: cpu\nstages:\n  model:\n    uses: tiny-model\n${stages}`,
  );
  const pipeline = await loadPipeline(file, registry(), { baseDir: dir });
  return await runPipeline(pipeline, {
    cacheDir: join(dir, "cache"),
    out: { write: () => {}, isTerminal: false },
  });
}

Deno.test("export stage: GGUF (q8_0) with a Modelfile, and an HF folder that loads back", async () => {
  await withTempDir(async (dir) => {
    const report = await run(
      dir,
      "  gguf:\n    uses: export\n    needs: model\n    format: gguf\n    dtype: q8_0\n" +
        "  hf:\n    uses: export\n    needs: model\n    format: hf\n",
    );
    assert.ok(report.ok, report.error?.message);
    const gguf = report.artifacts.gguf.dir;
    using file = await openGguf(join(gguf, "model.gguf"));
    assert.equal(file.header.metadata.get("general.architecture")?.value, "gpt2");
    assert.equal(file.header.tensors.get("blk.0.ffn_up.weight")?.type, "Q8_0");
    assert.match(await Deno.readTextFile(join(gguf, "Modelfile")), /^FROM \.\/model\.gguf\n/);
    const hf = await loadHfModel(report.artifacts.hf.dir);
    assert.equal(hf.family.name, "gpt2");
    hf.model.dispose();
  });
});

Deno.test("export stage: a model llama.cpp cannot run is refused, naming why", async () => {
  await withTempDir(async (dir) => {
    const file = await writePipeline(
      dir,
      "name: t\nbackend: cpu\nstages:\n  model:\n    uses: tiny-model\n    norm: rmsnorm\n" +
        "  gguf:\n    uses: export\n    needs: model\n    format: gguf\n",
    );
    const pipeline = await loadPipeline(file, registry(), { baseDir: dir });
    const report = await runPipeline(pipeline, {
      cacheDir: join(dir, "cache"),
      out: { write: () => {}, isTerminal: false },
    });
    assert.equal(report.ok, false);
    assert.match(
      String(report.error?.message),
      /llama.cpp's "gpt2" architecture cannot express this model: a non-GPT-2 norm or MLP/,
    );
    assert.equal(report.artifacts.gguf, undefined, "nothing cached");
  });
});
