/** Every problem of a pipeline at once: top-level, per stage and across stages. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { PipelineError } from "../../runner/errors.ts";
import { loadPipeline } from "../../runner/pipeline.ts";
import { builtinStages } from "../../stages/mod.ts";
import { REPO_ROOT } from "../fixtures.ts";
import { main } from "../../main.ts";

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
    '--set tokenize.corpus=42: stage "tokenize", key "corpus": expected a named dataset (the-verdict, instruction-data, instruction-data-with-preference), the path of a local text file, or { url, sha256, path? }',
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

Deno.test("split fractions that sum past 1, or a missing fraction, fail validation naming the key", async () => {
  assert.deepEqual(await problemsOf(["instructions.split={train: 0.9, test: 0.5}"]), [
    '--set instructions.split={train: 0.9, test: 0.5}: stage "instructions", key "split": train 0.9 + test 0.5 = 1.4: the two fractions must sum to at most 1 (the rest validates)',
  ]);
  assert.deepEqual(await problemsOf(["instructions.split={train: 0.9}"]), [
    '--set instructions.split={train: 0.9}: stage "instructions", key "split.test": required key is missing (expected number)',
  ]);
  assert.deepEqual(await problemsOf(["instructions.split={train: 0.8, test: 0.1}"]), []);
});

Deno.test("a split without a validation part fails validation in the fine-tuning stage, naming the split chosen", async () => {
  const problems = await problemsOf(["instructions.split={train: 0.9, test: 0.1}"]);
  assert.equal(problems.length, 1);
  assert.match(
    problems[0],
    /smoke\.yaml:\d+:\d+: stage "lora-finetune": the instructions stage "instructions" splits with split \{train: 0\.9, test: 0\.1\}, which leaves no validation part/,
  );
  assert.match((await problemsOf(["instructions.split=workshop"]))[0], /split "workshop"/);
});

Deno.test("responses.models naming a stage outside `needs`, or one that produces no model, fails validation", async () => {
  const notNeeded = await problemsOf(["responses.needs=[instructions, pretrain]"]);
  assert.equal(notNeeded.length, 1);
  assert.match(
    notNeeded[0],
    /smoke\.yaml:\d+:\d+: stage "responses", key "models\.response_after": "lora-finetune" is not among this stage's needs \(instructions, pretrain\)$/,
  );
  const noModel = await problemsOf(["responses.models={response_before: instructions}"]);
  assert.deepEqual(noModel, [
    '--set responses.models={response_before: instructions}: stage "responses", key "models.response_before": stage "instructions" (instructions) produces no model; stages here that do: pretrain, lora-finetune',
  ]);
});

Deno.test("--plan: a wrong --set value is blamed on the flag, not on the line it replaced; exit 2", async () => {
  const lines: string[] = [];
  const error = console.error;
  console.error = (...args: unknown[]) => void lines.push(args.join(" "));
  let code;
  try {
    code = await main([SMOKE, "--plan", "--set", "evaluate.tasks=[mmlu_nonexistent]"]);
  } finally {
    console.error = error;
  }
  assert.equal(code, 2);
  const text = lines.join("\n");
  assert.match(
    text,
    /^error in pipeline:\n--set evaluate\.tasks=\[mmlu_nonexistent\]: stage "evaluate", key "tasks\.0": /,
  );
  assert.doesNotMatch(text, /smoke\.yaml/);
});
