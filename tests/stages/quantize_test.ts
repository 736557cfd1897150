/**
 * `quantize:` on the stages that open a model for inference, through the runner: another cache
 * key than fp32, results from rounded weights (a model built so that int8 changes its greedy
 * answer and bf16 does not; MMLU log-likelihoods of a random tiny GPT that move, a little),
 * the choice recorded in the artifact, an unset key that leaves the parameters (and so the
 * cache keys) as they were, and bad values refused naming the file, the stage and the key.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { z } from "zod";
import { loadPipeline } from "../../runner/pipeline.ts";
import { runPipeline } from "../../runner/run.ts";
import { defineStage } from "../../runner/stage.ts";
import { builtinStages } from "../../stages/mod.ts";
import { evaluateStage } from "../../stages/evaluate.ts";
import { generateStage } from "../../stages/generate.ts";
import { responsesStage } from "../../stages/responses.ts";
import { judgeStage } from "../../stages/judge.ts";
import { keyParams } from "../../runner/plan.ts";
import { useEngine } from "../../stages/engine.ts";
import { loadModelConfig } from "../../llm/model/config.ts";
import { GPTModel } from "../../llm/model/gpt.ts";
import { saveModel } from "../../llm/model/weights_io.ts";
import { createTokenizer } from "../../llm/tokenizer/mod.ts";
import type { MmluSample } from "../../llm/eval/mmlu/evaluate.ts";
import { SHARED_FIXTURES, withTempDir } from "../fixtures.ts";
import { quietOutput, writePipeline } from "../runner/helpers.ts";
import { writeRoundingSensitiveModel } from "./quantize_model.ts";

const gpt2 = createTokenizer({ kind: "gpt2" });
const [A] = gpt2.encode(" A");
const [B] = gpt2.encode(" B");

const sensitiveModelStage = defineStage({
  type: "sensitive-model",
  version: "1",
  description: "a tiny GPT that answers ' A' in fp32 and bf16, ' B' in int8",
  params: z.strictObject({}),
  producesModel: true,
  async run(ctx) {
    await useEngine(ctx);
    await writeRoundingSensitiveModel(ctx.outDir, { fp32Token: A, int8Token: B });
  },
});

const randomModelStage = defineStage({
  type: "random-model",
  version: "1",
  description: "a random tiny GPT",
  params: z.strictObject({}),
  producesModel: true,
  async run(ctx) {
    await useEngine(ctx);
    const model = new GPTModel(await loadModelConfig("tiny"), { seed: 7 });
    await saveModel(ctx.outDir, model);
    model.dispose();
  },
});

const registry = () => builtinStages().register(sensitiveModelStage).register(randomModelStage);

const generation = (quantize?: string) =>
  `    uses: generate\n    needs: sensitive\n    prompts: [Hello]\n    max_new_tokens: 4\n` +
  `    stream: false\n${quantize ? `    quantize: ${quantize}\n` : ""}`;
const evaluation = (quantize?: string) =>
  `    uses: evaluate\n    needs: random\n    tasks: [mmlu_philosophy]\n    limit: 6\n` +
  `    batch_size: 3\n${quantize ? `    quantize: ${quantize}\n` : ""}`;

const PIPELINE = `name: quantize
backend: cpu
stages:
  sensitive:
    uses: sensitive-model
  random:
    uses: random-model
  gen:
${generation()}  gen-none:
${generation("none")}  gen-int8:
${generation("int8")}  gen-bf16:
${generation("bf16")}  eval:
${evaluation()}  eval-int8:
${evaluation("int8")}  instructions:
    corpus: instruction-data
    limit: 20
  answers:
    uses: responses
    needs: [instructions, sensitive]
    split: train
    limit: 2
    max_new_tokens: 3
    quantize: int8
  judged:
    uses: judge
    needs: [answers, sensitive]
    api: local
    model: sensitive
    max_new_tokens: 2
    quantize: int8
`;

Deno.test("quantize: int8 and bf16 on generate and evaluate: their own cache keys, rounded weights' results, recorded", async () => {
  await withTempDir(async (dir) => {
    Deno.env.set("GROUNDUP_MIRROR", SHARED_FIXTURES);
    const file = await writePipeline(dir, PIPELINE);
    const report = await runPipeline(await loadPipeline(file, registry(), { baseDir: dir }), {
      cacheDir: join(dir, "cache"),
      out: quietOutput,
    });
    assert.ok(report.ok, report.error?.message);
    const { artifacts } = report;

    // Each precision is its own artifact.
    const keys = ["gen", "gen-int8", "gen-bf16"].map((name) => artifacts[name].key);
    assert.equal(new Set(keys).size, 3);
    assert.notEqual(artifacts["eval"].key, artifacts["eval-int8"].key);

    // The text comes from the weights as held: int8 rounds the answer over to " B".
    const generations = async (name: string) =>
      JSON.parse(await Deno.readTextFile(join(artifacts[name].dir, "generations.json")))[0];
    const plain = await generations("gen");
    assert.equal(plain.response, " A A A A");
    assert.equal(plain.settings.quantize, undefined);
    assert.equal((await generations("gen-none")).response, " A A A A");
    const int8 = await generations("gen-int8");
    assert.equal(int8.response, " B B B B");
    assert.equal(int8.settings.quantize, "int8");
    const bf16 = await generations("gen-bf16");
    assert.equal(bf16.response, " A A A A");
    assert.equal(bf16.settings.quantize, "bf16");

    // MMLU of a random tiny GPT: every log-likelihood moves, none by much.
    const samples = async (name: string): Promise<MmluSample[]> =>
      (await Deno.readTextFile(join(artifacts[name].dir, "samples.jsonl"))).trim().split("\n")
        .map((line) => JSON.parse(line));
    const fp32 = (await samples("eval")).flatMap((s) => s.loglikelihoods);
    const q8 = (await samples("eval-int8")).flatMap((s) => s.loglikelihoods);
    assert.equal(q8.length, fp32.length);
    const deltas = fp32.map((v, i) => Math.abs(v - q8[i]));
    assert.ok(deltas.every((d) => d > 0), `unchanged log-likelihoods: ${deltas}`);
    // int8 rounds the weights and, as llama.cpp does, the inputs of the Q8_0 products:
    // measured 0.0115 at most (weights alone: under 0.01).
    assert.ok(Math.max(...deltas) < 0.03, `int8 moved a log-likelihood by ${Math.max(...deltas)}`);
    const results = JSON.parse(
      await Deno.readTextFile(join(artifacts["eval-int8"].dir, "results.json")),
    );
    assert.equal(results.config.model_args.quantize, "int8");

    // responses and the local judge hold their models as told, and say so.
    const answers = JSON.parse(
      await Deno.readTextFile(join(artifacts["answers"].dir, "responses.json")),
    );
    assert.deepEqual(answers.map((a: { model_response: string }) => a.model_response), [
      "B B B",
      "B B B",
    ]);
    const stats = JSON.parse(await Deno.readTextFile(join(artifacts["answers"].dir, "stats.json")));
    assert.equal(stats.fields.model_response.quantize, "int8");
    const judged = JSON.parse(await Deno.readTextFile(join(artifacts["judged"].dir, "judge.json")));
    assert.equal(judged.judge.source.quantize, "int8");
    const ledger = await Deno.readTextFile(join(artifacts["judged"].dir, "scores.jsonl"));
    assert.match(ledger, / B B/, "the judge's replies come from the int8 weights");
  });
});

Deno.test("quantize: unset, the parameters are what they were (cache keys unchanged); it is never defaulted in", () => {
  const generate = generateStage.params.parse({ prompts: ["x"] }) as Record<string, unknown>;
  assert.ok(!("quantize" in generate));
  const evaluate = evaluateStage.params.parse({}) as Record<string, unknown>;
  assert.ok(!("quantize" in evaluate));
  assert.equal(
    (generateStage.params.parse({ prompts: ["x"], quantize: "int8" }) as { quantize: string })
      .quantize,
    "int8",
  );
});

Deno.test("quantize: none keys as if unset (spelling out the default re-runs nothing); int8 does not", () => {
  for (const stage of [generateStage, evaluateStage, responsesStage, judgeStage]) {
    const base = stage.type === "generate"
      ? { prompts: ["x"] }
      : stage.type === "judge"
      ? { api: "local", model: "m" }
      : {};
    const plain = keyParams(stage, stage.params.parse(base));
    assert.deepEqual(keyParams(stage, stage.params.parse({ ...base, quantize: "none" })), plain);
    assert.notDeepEqual(
      keyParams(stage, stage.params.parse({ ...base, quantize: "int8" })),
      plain,
      stage.type,
    );
  }
});

Deno.test("quantize: a bad value, a training stage and a server judge are refused naming file, stage and key", async () => {
  await withTempDir(async (dir) => {
    const refused = async (stages: string, expected: RegExp[]) => {
      const file = await writePipeline(dir, `name: bad\nstages:\n${stages}`);
      const error = await loadPipeline(file, registry(), { baseDir: dir }).then(
        () => assert.fail("the pipeline was accepted"),
        (error: Error) => error,
      );
      assert.ok(error.message.includes(file), error.message);
      for (const pattern of expected) assert.match(error.message, pattern);
    };
    await refused(
      "  random:\n    uses: random-model\n  eval:\n" +
        evaluation().replace("    batch_size", "    quantize: int4\n    batch_size"),
      [/eval/, /quantize/, /expected one of none, bf16, int8 \(got "int4"\)/],
    );
    await refused(
      "  sensitive:\n    uses: sensitive-model\n  gen:\n" + generation("q8_0"),
      [/gen/, /quantize/, /expected one of none, bf16, int8 \(got "q8_0"\)/],
    );
    // Fine-tuning trains in fp32: the key does not exist there.
    await refused(
      "  random:\n    uses: random-model\n  instructions:\n    corpus: instruction-data\n" +
        "  lora-finetune:\n    needs: [random, instructions]\n    quantize: int8\n",
      [/lora-finetune/, /unknown key "quantize"/],
    );
    // A server judge holds no weights here.
    await refused(
      "  judge:\n    responses: r.json\n    api: ollama\n    quantize: int8\n",
      [/judge/, /`quantize` is only read with api: local \(api is ollama\)/],
    );
  });
});
