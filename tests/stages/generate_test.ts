/**
 * Stage generate: PyTorch's greedy continuations through the stage, the instruction dataset's
 * test split in the Alpaca format, the model's own template (phi3, custom), prompt files, seeding,
 * streaming and errors.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { z } from "zod";
import { loadPipeline } from "../../runner/pipeline.ts";
import { runPipeline } from "../../runner/run.ts";
import { defineStage, StageRegistry } from "../../runner/stage.ts";
import { useEngine } from "../../stages/engine.ts";
import { generateStage, type Generation } from "../../stages/generate.ts";
import { complete, IncrementalDecoder } from "../../llm/infer/complete.ts";
import { loadOpenaiWeightsStage } from "../../stages/load_openai_weights.ts";
import { loadModelConfig } from "../../llm/model/config.ts";
import { GPTModel } from "../../llm/model/gpt.ts";
import { loadModel, saveModel } from "../../llm/model/weights_io.ts";
import { writeTemplateFile } from "../../llm/data/instruction_files.ts";
import { promptTemplate } from "../../llm/data/instructions.ts";
import { createTokenizer } from "../../llm/tokenizer/mod.ts";
import { localFixture, SHARED_FIXTURES, sharedFixture, withTempDir } from "../fixtures.ts";
import { writePipeline } from "../runner/helpers.ts";
import {
  hparamsFor,
  parityWords,
  readParity,
  toOpenaiLayout,
  writeOpenaiFolder,
  writeParityModelFolder,
} from "./parity_checkpoints.ts";

/** A model-producing stage for tests: the PyTorch parity model, or a random tiny GPT-2. */
const testModelStage = defineStage({
  type: "test-model",
  version: "1",
  description: "writes a model folder for tests",
  params: z.strictObject({
    kind: z.enum(["parity", "tiny"]),
    /** Recorded in the manifest, as a finetuning stage would record its data. */
    dataset: z.string().optional(),
    /** Written as template.json, as `finetune` and `lora-finetune` do. */
    template: z.string().optional(),
  }),
  async run(ctx) {
    await useEngine(ctx);
    if (ctx.params.kind === "parity") {
      await writeParityModelFolder(ctx.outDir);
    } else {
      const model = new GPTModel(await loadModelConfig("tiny"), { seed: 7 });
      await saveModel(ctx.outDir, model);
      model.dispose();
    }
    if (ctx.params.template) {
      await writeTemplateFile(ctx.outDir, promptTemplate(ctx.params.template));
    }
  },
});

const registry = () =>
  new StageRegistry().register(testModelStage).register(loadOpenaiWeightsStage).register(
    generateStage,
  );

async function runYaml(dir: string, yaml: string, sets: string[] = []) {
  const saved = Deno.env.get("GROUNDUP_MIRROR");
  Deno.env.set("GROUNDUP_MIRROR", SHARED_FIXTURES);
  const logged: string[] = [];
  try {
    const file = await writePipeline(dir, yaml);
    const pipeline = await loadPipeline(file, registry(), { sets, baseDir: dir });
    const report = await runPipeline(pipeline, {
      cacheDir: join(dir, "cache"),
      out: { write: (text) => void logged.push(text), isTerminal: false },
    });
    const generations = report.ok
      ? JSON.parse(
        await Deno.readTextFile(join(report.artifacts.generate.dir, "generations.json")),
      ) as Generation[]
      : [];
    return { report, generations, logged: logged.join("") };
  } finally {
    if (saved === undefined) Deno.env.delete("GROUNDUP_MIRROR");
    else Deno.env.set("GROUNDUP_MIRROR", saved);
  }
}

const pipeline = (model: string, generate: string) =>
  `name: t
backend: cpu
stages:
  model:
    uses: test-model
${model}
  generate:
    needs: model
${generate}
`;

Deno.test("generate: greedy continuations through the stage equal PyTorch's (incl. a context overflow)", async () => {
  await withTempDir(async (dir) => {
    const cases =
      JSON.parse(await Deno.readTextFile(localFixture("parity", "qkv_bias", "generate.json")))
        .cases;
    const prompts = cases.map((c: { prompt: number[] }) => parityWords(c.prompt));
    const { report, generations, logged } = await runYaml(
      dir,
      pipeline(
        "    kind: parity",
        `    prompts: ${JSON.stringify(prompts)}\n    max_new_tokens: 8`,
      ),
    );
    assert.ok(report.ok, report.error?.message);
    assert.equal(generations.length, 2);
    for (const [i, c] of cases.entries()) {
      assert.equal(generations[i].prompt, prompts[i]);
      assert.equal(generations[i].response, " " + parityWords(c.expected_new_tokens));
      assert.equal(generations[i].tokens, 8);
      assert.equal(generations[i].stopped, "max_new_tokens");
      assert.equal(generations[i].settings.temperature, 0);
      assert.equal(generations[i].settings.stop_token, 95, "the tokenizer's <|endoftext|>");
    }
    assert.equal(report.artifacts.generate.manifest.metrics.tokens, 16);
    if (!Deno.stderr.isTerminal()) {
      // Off a terminal the text streams through the stage log, a line at a time.
      assert.match(logged, new RegExp(`\\| +${parityWords(cases[0].expected_new_tokens)}`));
    }
  });
});

Deno.test("generate: the instruction data's test split (book order) in the Alpaca format", async () => {
  await withTempDir(async (dir) => {
    const entries = JSON.parse(
      await Deno.readTextFile(sharedFixture("workshop", "instruction-data.json")),
    );
    const { report, generations } = await runYaml(
      dir,
      pipeline(
        "    kind: tiny",
        "    dataset: instruction-data\n    split: test\n    limit: 2\n    max_new_tokens: 3",
      ),
    );
    assert.ok(report.ok, report.error?.message);
    assert.equal(generations.length, 2);
    // 1,100 entries: 935 train, then the 110 test entries.
    for (const [i, g] of generations.entries()) {
      const entry = entries[935 + i];
      assert.equal(g.instruction, entry.instruction);
      assert.equal(g.output, entry.output);
      const input = entry.input ? `\n\n### Input:\n${entry.input}` : "";
      assert.equal(
        g.prompt,
        "Below is an instruction that describes a task. Write a response that appropriately " +
          `completes the request.\n\n### Instruction:\n${entry.instruction}${input}`,
      );
      assert.equal(g.settings.template, "alpaca");
      assert.equal(g.response, g.response.trim(), "the answer is trimmed as the book does");
    }
  });
});

Deno.test("generate: prompt files; Alpaca for instruction-tuned models; per-prompt seeds", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(join(dir, "prompts.txt"), "Every effort moves you\n\nHello\n");
    await Deno.writeTextFile(
      join(dir, "prompts.json"),
      JSON.stringify([{ instruction: "Name a color.", input: "" }, "Plain text"]),
    );
    const sampled = "    temperature: 1.5\n    top_k: 50\n    max_new_tokens: 6";

    const text = await runYaml(
      dir,
      pipeline("    kind: tiny", `    file: prompts.txt\n${sampled}`),
    );
    assert.ok(text.report.ok, text.report.error?.message);
    assert.deepEqual(text.generations.map((g) => g.prompt), ["Every effort moves you", "Hello"]);
    assert.equal(text.generations[0].settings.template, "none");

    const json = await runYaml(
      dir,
      pipeline("    kind: tiny", `    file: prompts.json\n${sampled}`),
    );
    assert.ok(json.report.ok, json.report.error?.message);
    assert.match(json.generations[0].prompt, /### Instruction:\nName a color\.$/);
    assert.equal(json.generations[1].prompt, "Plain text");

    // A model trained on the instruction data gets the template automatically.
    const tuned = await runYaml(
      dir,
      pipeline(
        "    kind: tiny\n    dataset: instruction-data",
        `    prompts: [Name a color.]\n${sampled}`,
      ),
    );
    assert.equal(tuned.generations[0].settings.template, "alpaca");
    assert.match(
      tuned.generations[0].prompt,
      /^Below is an instruction.*### Instruction:\nName a color\.$/s,
    );

    // Each prompt starts from the seed: the same prompt twice samples the same text; another
    // seed samples another.
    const twice = await runYaml(
      dir,
      pipeline("    kind: tiny", `    prompts: [Hello, Hello]\n${sampled}`),
    );
    assert.equal(twice.generations[0].response, twice.generations[1].response);
    assert.equal(twice.generations[0].tokens, 6);
    const reseeded = await runYaml(
      dir,
      pipeline("    kind: tiny", `    prompts: [Hello, Hello]\n${sampled}`),
      ["generate.seed=7"],
    );
    assert.notEqual(reseeded.generations[0].response, twice.generations[0].response);
  });
});

Deno.test("generate: auto uses the model's template.json (phi3, custom); phi3 and custom strings as settings; the answer cut as the template says", async () => {
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(
      join(dir, "prompts.json"),
      JSON.stringify([{ instruction: "Name a color.", input: "red or blue" }, "Plain text"]),
    );
    const greedy = "    max_new_tokens: 8";
    const phi3 = promptTemplate("phi3");

    // A model fine-tuned with phi3: both the entry and the plain prompt get its template.
    const tuned = await runYaml(
      dir,
      pipeline("    kind: tiny\n    template: phi3", `    file: prompts.json\n${greedy}`),
    );
    assert.ok(tuned.report.ok, tuned.report.error?.message);
    assert.deepEqual(tuned.generations.map((g) => g.prompt), [
      "<|user|>\nName a color.\nred or blue",
      "<|user|>\nPlain text",
    ]);
    assert.deepEqual(tuned.generations.map((g) => g.settings.template), ["phi3", "phi3"]);
    // The response is the model's continuation, cut after "<|assistant|>:" and trimmed.
    const model = await loadModel(tuned.report.artifacts.model.dir);
    try {
      for (const g of tuned.generations) {
        const done = await complete(model, {
          tokenizer: createTokenizer({ kind: "gpt2" }),
          prompt: g.prompt,
          settings: { max_new_tokens: 8, temperature: 0, stop_token: 50256, seed: 123 },
        });
        assert.equal(g.response, phi3.extractResponse(done.text));
      }
    } finally {
      model.dispose();
    }

    // Explicit settings on a base model: phi3, and a custom template string.
    const explicit = await runYaml(
      dir,
      pipeline("    kind: tiny", `    prompts: [Name a color.]\n    template: phi3\n${greedy}`),
    );
    assert.ok(explicit.report.ok, explicit.report.error?.message);
    assert.equal(explicit.generations[0].prompt, "<|user|>\nName a color.");
    assert.equal(explicit.generations[0].settings.template, "phi3");
    const custom = await runYaml(
      dir,
      pipeline(
        "    kind: tiny",
        `    prompts: [Name a color.]\n    template: "Q: {instruction}\\nA:{output}"\n${greedy}`,
      ),
    );
    assert.ok(custom.report.ok, custom.report.error?.message);
    assert.equal(custom.generations[0].prompt, "Q: Name a color.");
    assert.equal(custom.generations[0].settings.template, "custom");

    // A model fine-tuned with a custom template: auto uses it; `none` turns it off.
    const customTuned = pipeline(
      '    kind: tiny\n    template: "Task: {instruction}\\n=>{output}"',
      `    prompts: [Name a color.]\n${greedy}`,
    );
    const auto = await runYaml(dir, customTuned);
    assert.ok(auto.report.ok, auto.report.error?.message);
    assert.equal(auto.generations[0].prompt, "Task: Name a color.");
    assert.equal(auto.generations[0].settings.template, "custom");
    const none = await runYaml(dir, customTuned, ["generate.template=none"]);
    assert.equal(none.generations[0].prompt, "Name a color.");
    assert.equal(none.generations[0].settings.template, "none");

    await assert.rejects(
      () =>
        runYaml(
          dir,
          pipeline("    kind: tiny", '    prompts: [a]\n    template: "no fields{output}"'),
        ),
      /template.*has no \{instruction\}/s,
    );
  });
});

Deno.test("generate: after load-openai-weights, and errors that say what to fix", async () => {
  await withTempDir(async (dir) => {
    const parity = await readParity();
    const folder = join(dir, "ckpt");
    await writeOpenaiFolder(folder, toOpenaiLayout(parity.weights, 2), hparamsFor(parity.config));
    const chain = (prompt: string) =>
      `name: t
backend: cpu
stages:
  load-openai-weights: {source: local, path: ${folder}}
  generate:
    needs: load-openai-weights
    prompts: [${JSON.stringify(prompt)}]
    max_new_tokens: 5
`;
    // GPT-2's tokenizer: "a" is id 64, inside the tiny model's 97 ids.
    const ok = await runYaml(dir, chain("a"));
    assert.ok(ok.report.ok, ok.report.error?.message);
    assert.equal(ok.generations[0].tokens, 5);
    assert.equal(ok.generations[0].response.length, 5, "ids below 97 are single characters");

    const outside = await runYaml(dir, chain("Hello"));
    assert.match(
      outside.report.error!.message,
      /prompt token id 15496 \(gpt2 tokenizer\) is outside the model's vocabulary of 97/,
    );

    const noModel = await runYaml(
      dir,
      `name: t\nstages:\n  a: {uses: generate, prompts: [x]}\n  generate: {needs: a, prompts: [x]}\n`,
    );
    assert.match(noModel.report.error!.message, /stage "a" needs a stage that produced a model/);

    await assert.rejects(
      () => runYaml(dir, pipeline("    kind: tiny", "    max_new_tokens: 3")),
      /give the prompts: `prompts:` \(a list\), `file:` or `dataset: instruction-data`/,
    );
    await assert.rejects(
      () =>
        runYaml(dir, pipeline("    kind: tiny", "    prompts: [a]\n    dataset: instruction-data")),
      /give only one of prompts, file, dataset/,
    );
  });
});

Deno.test("streaming: one piece of text per token, multi-byte characters held until complete", async () => {
  const tokenizer = createTokenizer({ kind: "gpt2" });
  // GPT-2 spreads each of these characters over two tokens, the first ending mid-character.
  const ids = tokenizer.encode("日本語 done");
  const decoder = new IncrementalDecoder(tokenizer);
  const pieces = ids.map((id) => decoder.push(id));
  assert.ok(pieces.some((p) => p === ""), "a partial character is held back");
  assert.ok(pieces.every((p) => !p.includes("\uFFFD")));
  assert.equal(pieces.join("") + decoder.flush(), "日本語 done");

  const model = new GPTModel(await loadModelConfig("tiny"), { seed: 3 });
  try {
    const streamed: string[] = [];
    const done = await complete(model, {
      tokenizer,
      prompt: "Every effort moves you",
      settings: { max_new_tokens: 6, temperature: 0, stop_token: null, seed: 123 },
      onText: (text) => streamed.push(text),
    });
    assert.equal(done.tokens, 6);
    assert.equal(streamed.join(""), done.text);
    assert.ok(streamed.length >= 1 && streamed.length <= 6);
  } finally {
    model.dispose();
  }
});
