/** Every problem of a pipeline at once: top-level, per stage and across stages. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { PipelineError } from "../../runner/errors.ts";
import { loadPipeline } from "../../runner/pipeline.ts";
import { builtinStages } from "../../stages/mod.ts";
import { REPO_ROOT } from "../fixtures.ts";

const SMOKE = join(REPO_ROOT, "pipelines", "smoke.yaml");

async function problemsOf(sets: string[]): Promise<string[]> {
  try {
    await loadPipeline(SMOKE, builtinStages(), { sets });
  } catch (error) {
    assert.ok(error instanceof PipelineError, String(error));
    return error.message.split("\n").slice(error.problems.length > 1 ? 1 : 0).map((l) => l.trim());
  }
  return [];
}

Deno.test("top-level errors do not hide stage errors; an inherited mistake is reported once", async () => {
  const problems = await problemsOf(["seed=x", "tokenize.corpus=42", "pretrain.lr=-1"]);
  assert.deepEqual(problems, [
    '--set seed=x: key "seed": Invalid input: expected number, received string',
    '--set tokenize.corpus=42: stage "tokenize", key "corpus": expected a named dataset (the-verdict, instruction-data), the path of a local text file, or { url, sha256, path? }',
    '--set pretrain.lr=-1: stage "pretrain", key "lr": Too small: expected number to be >0',
  ]);
});

Deno.test("a window longer than the model's context fails before anything runs", async () => {
  const problems = await problemsOf(["dataloader.max_length=64"]);
  assert.equal(problems.length, 1);
  assert.match(
    problems[0],
    /stage "pretrain", key "model.context_length": the dataloader "dataloader" makes windows of max_length 64 tokens, longer than model.context_length 32/,
  );
  assert.deepEqual(await problemsOf(["dataloader.max_length=32"]), []);
});
