/**
 * pipelines/workshop-litgpt.yaml, run end to end on what this machine has: the file itself, with
 * its base model swapped for a tiny random Qwen3 (load-hf-model source: random), fewer entries,
 * one epoch, a few MMLU questions, and a local random judge instead of the remote one. Every
 * other setting (the split with 10% of train for validation, LitGPT's LoRA preset, the responses
 * before and after, MMLU philosophy on both, the report) is the pipeline's own.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { parse, stringify } from "yaml";
import { loadPipeline } from "../runner/pipeline.ts";
import { runPipeline } from "../runner/run.ts";
import { builtinStages } from "../stages/mod.ts";
import { REPO_ROOT, SHARED_FIXTURES, withTempDir } from "./fixtures.ts";
import { quietOutput } from "./runner/helpers.ts";

Deno.env.set("GROUNDUP_MIRROR", SHARED_FIXTURES);

Deno.test("workshop-litgpt: the pipeline's stages on a random Qwen3, LoRA as litgpt finetune_lora, a PEFT adapter out", async () => {
  await withTempDir(async (dir) => {
    const file = join(REPO_ROOT, "pipelines", "workshop-litgpt.yaml");
    const pipeline = parse(await Deno.readTextFile(file));
    const stages = pipeline.stages;
    stages.base = { uses: "load-hf-model", source: "random" };
    stages.instructions.limit = 60;
    Object.assign(stages["lora-finetune"], {
      epochs: 1,
      batch_size: 8,
      eval_freq: 2,
      eval_iter: 1,
      sample_tokens: 4,
    });
    Object.assign(stages.responses, { limit: 3, max_new_tokens: 4 });
    for (const name of ["evaluate-base", "evaluate-finetuned"]) stages[name].limit = 4;
    stages["judge-model"] = { uses: "load-hf-model", source: "random", family: "llama" };
    stages.judge = {
      needs: ["responses", "judge-model"],
      fields: stages.judge.fields,
      api: "local",
      model: "judge-model",
      max_new_tokens: 4,
    };
    pipeline.backend = "cpu";
    const path = join(dir, "workshop-litgpt.yaml");
    await Deno.writeTextFile(path, stringify(pipeline));
    const resolved = await loadPipeline(path, builtinStages(), { baseDir: dir });
    const report = await runPipeline(resolved, { cacheDir: join(dir, "cache"), out: quietOutput });
    assert.ok(report.ok, report.error?.stack);

    // The workshop split of 60 entries: 51 train / 9 test, then 10% of train validates (5).
    const data = report.artifacts.instructions.manifest.metrics;
    assert.deepEqual([data.train, data.val, data.test], [46, 5, 9]);
    // LitGPT's recipe: rank 8, alpha 16, dropout 0.05 on q_proj and v_proj.
    const out = report.artifacts["lora-finetune"].dir;
    const config = JSON.parse(await Deno.readTextFile(join(out, "adapter_config.json")));
    assert.deepEqual(
      [config.r, config.lora_alpha, config.lora_dropout, config.target_modules],
      [8, 16, 0.05, ["q_proj", "v_proj"]],
    );
    const responses = JSON.parse(
      await Deno.readTextFile(join(report.artifacts.responses.dir, "responses.json")),
    );
    assert.equal(responses.length, 3);
    assert.ok(
      responses.every((r: Record<string, unknown>) =>
        typeof r.response_before === "string" && typeof r.response_after === "string"
      ),
    );
    for (const name of ["evaluate-base", "evaluate-finetuned", "judge", "report"]) {
      assert.ok(report.artifacts[name], `${name} ran`);
    }
  });
});
