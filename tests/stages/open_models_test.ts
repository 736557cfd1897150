/**
 * The inference stages on an open model in the Hub's layout (a tiny random Qwen3 with the real
 * Qwen3 tokenizer and chat template, through load-hf-model): generate answers in the chat
 * template and stops at its end ids, never picking one of the embedding's padding rows (the
 * model is doctored so that, without the limit, greedy decoding would); evaluate scores MMLU as
 * the library does with the model's own tokenizer; responses answers in the chat template; the
 * fine-tuning stages refuse an open model by name.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { loadPipeline } from "../../runner/pipeline.ts";
import { runPipeline } from "../../runner/run.ts";
import { builtinStages } from "../../stages/mod.ts";
import type { Generation } from "../../stages/generate.ts";
import { type OpenedModelFolder, openModelFolder } from "../../llm/infer/open_model.ts";
import { chatAnswer, instructionMessage } from "../../llm/infer/prompt_format.ts";
import { generate } from "../../llm/model/generate.ts";
import { evaluateMmlu, type MmluSample } from "../../llm/eval/mmlu/evaluate.ts";
import { readMmluCsvFile } from "../../llm/eval/mmlu/data.ts";
import {
  type NamedTensor,
  readSafetensorsFile,
  writeSafetensorsFile,
} from "../../llm/weights/safetensors.ts";
import { SHARED_FIXTURES, sharedFixture, withTempDir } from "../fixtures.ts";
import { useCpuBackend } from "../llm/model/tf_setup.ts";
import { quietOutput, writePipeline } from "../runner/helpers.ts";
import { writeTinyHfModel } from "./tiny_hf_model.ts";

await useCpuBackend();

const QUESTION = "What do llamas eat?";
/** A padding row of Qwen3's embedding: past the tokenizer's 151,669 ids. */
const PADDING_ROW = 151_700;

async function runYaml(dir: string, yaml: string) {
  const saved = Deno.env.get("GROUNDUP_MIRROR");
  Deno.env.set("GROUNDUP_MIRROR", SHARED_FIXTURES);
  try {
    const file = await writePipeline(dir, yaml);
    const pipeline = await loadPipeline(file, builtinStages(), { baseDir: dir });
    return await runPipeline(pipeline, { cacheDir: join(dir, "cache"), out: quietOutput });
  } finally {
    if (saved === undefined) Deno.env.delete("GROUNDUP_MIRROR");
    else Deno.env.set("GROUNDUP_MIRROR", saved);
  }
}

/** Logits of the last position of `ids`. */
async function lastLogits(opened: OpenedModelFolder, ids: number[]): Promise<Float32Array> {
  const input = tf.tensor2d(ids, [1, ids.length], "int32");
  const logits = opened.model.forward(input, { lastTokenOnly: true });
  const values = (await logits.data()) as Float32Array;
  input.dispose(), logits.dispose();
  return values;
}

/**
 * A tiny Qwen3 whose padding row PADDING_ROW scores far above every real token after the chat
 * prompt of QUESTION: its (tied) embedding row is the greedy token's, scaled by ±50.
 */
async function writeDoctoredModel(dir: string): Promise<void> {
  await writeTinyHfModel(dir);
  const opened = await openModelFolder(dir);
  let scale: number, best: number;
  try {
    const ids = opened.chat.encode([{ role: "user", content: QUESTION }], {
      enableThinking: false,
    });
    const logits = await lastLogits(opened, ids);
    best = 0;
    for (let i = 0; i < opened.vocabLimit; i++) if (logits[i] > logits[best]) best = i;
    scale = 50 * Math.sign(logits[best]);
  } finally {
    opened.model.dispose();
  }
  const path = join(dir, "model.safetensors");
  const { tensors } = await readSafetensorsFile(path);
  const embedding = tensors.get("model.embed_tokens.weight")!;
  const width = embedding.shape[1];
  const data = embedding.data as Float32Array;
  for (let j = 0; j < width; j++) {
    data[PADDING_ROW * width + j] = scale * data[best * width + j];
  }
  const out = new Map<string, NamedTensor>();
  for (const [name, t] of tensors) out.set(name, { shape: t.shape, data: t.data as Float32Array });
  await writeSafetensorsFile(path, out, { format: "pt" });
}

/** Greedy tokens after `ids` the way the stages must decode: stop ids, vocabulary limit. */
async function greedy(opened: OpenedModelFolder, ids: number[], maxNewTokens: number) {
  return await generate(opened.model, ids, {
    maxNewTokens,
    stopIds: opened.chat.stopIds,
    vocabLimit: opened.vocabLimit,
  });
}

const PIPELINE = `name: t
backend: cpu
seed: 123
stages:
  load-hf-model:
    source: local
    path: tiny
  instructions:
    corpus: instruction-data
    limit: 48
  generate:
    needs: load-hf-model
    prompts: ["${QUESTION}"]
    max_new_tokens: 6
  generate-thinking:
    uses: generate
    needs: load-hf-model
    prompts: ["${QUESTION}"]
    max_new_tokens: 2
    enable_thinking: true
  evaluate:
    needs: load-hf-model
    tasks: [mmlu_philosophy]
    limit: 3
    batch_size: 4
  responses:
    needs: [instructions, load-hf-model]
    limit: 3
    max_new_tokens: 5
`;

Deno.test("open model through generate, evaluate and responses: its tokenizer, chat template, stop ids and vocabulary", async () => {
  await withTempDir(async (dir) => {
    const tiny = join(dir, "tiny");
    await writeDoctoredModel(tiny);
    const report = await runYaml(dir, PIPELINE);
    assert.ok(report.ok, report.error?.message);

    const opened = await openModelFolder(report.artifacts["load-hf-model"].dir);
    try {
      assert.equal(opened.family, "qwen3");
      assert.equal(opened.vocabLimit, 151_669);
      const chatIds = (content: string, enableThinking = false) =>
        opened.chat.encode([{ role: "user", content }], { enableThinking });

      // generate: the question as the user message of Qwen3's template, thinking off.
      const generations = JSON.parse(
        await Deno.readTextFile(join(report.artifacts.generate.dir, "generations.json")),
      ) as Generation[];
      assert.equal(generations.length, 1);
      const [g] = generations;
      assert.equal(
        g.prompt,
        `<|im_start|>user\n${QUESTION}<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n`,
      );
      assert.equal(g.settings.template, "chat");
      assert.deepEqual(new Set(g.settings.stop_ids), new Set([151_645, 151_643]));
      // Without the limit the doctored padding row wins at once: the limit is what keeps it out.
      const ids = chatIds(QUESTION);
      const unlimited = await generate(opened.model, ids, { maxNewTokens: 1 });
      assert.deepEqual(unlimited, [PADDING_ROW]);
      const expected = await greedy(opened, ids, 6);
      assert.ok(expected.every((id) => id < 151_669));
      assert.equal(g.tokens, expected.length);
      assert.equal(g.response, chatAnswer(opened.tokenizer.decode(expected)));

      // enable_thinking: true leaves the thinking block to the model.
      const thinking = JSON.parse(
        await Deno.readTextFile(
          join(report.artifacts["generate-thinking"].dir, "generations.json"),
        ),
      ) as Generation[];
      assert.equal(
        thinking[0].prompt,
        `<|im_start|>user\n${QUESTION}<|im_end|>\n<|im_start|>assistant\n`,
      );

      // evaluate: the library's MMLU on the same model and tokenizer, question for question.
      const samples = (await Deno.readTextFile(
        join(report.artifacts.evaluate.dir, "samples.jsonl"),
      )).trim().split("\n").map((line) => JSON.parse(line) as MmluSample);
      const direct = await evaluateMmlu(opened.model, opened.tokenizer, {
        tasks: ["mmlu_philosophy"],
        numFewshot: 0,
        limit: 3,
        batchSize: 4,
        load: (subject, split) => readMmluCsvFile(sharedFixture("mmlu"), subject, split),
      });
      assert.equal(samples.length, 3);
      samples.forEach((sample, i) => {
        // Qwen3's tokenizer adds no BOS: the context is the prompt's own tokens.
        assert.equal(sample.context_tokens, opened.tokenizer.encode(sample.prompt).length);
        assert.equal(sample.prediction, direct.samples[i].prediction);
        sample.loglikelihoods.forEach((ll, j) => {
          assert.ok(Math.abs(ll - direct.samples[i].loglikelihoods[j]) < 1e-4, `${i}.${j}`);
        });
      });
      const results = JSON.parse(
        await Deno.readTextFile(join(report.artifacts.evaluate.dir, "results.json")),
      );
      assert.equal(results.config.model_args.family, "qwen3");

      // responses: each instruction (and its input) as the user message, answered greedily.
      const stats = JSON.parse(
        await Deno.readTextFile(join(report.artifacts.responses.dir, "stats.json")),
      );
      assert.equal(stats.fields.model_response.template, "chat");
      const responses = JSON.parse(
        await Deno.readTextFile(join(report.artifacts.responses.dir, "responses.json")),
      ) as { instruction: string; input: string; model_response: string }[];
      assert.equal(responses.length, 3);
      for (const entry of responses) {
        const prompt = opened.chat.encode([instructionMessage(entry)], { enableThinking: false });
        const answer = await greedy(opened, prompt, 5);
        assert.equal(entry.model_response, chatAnswer(opened.tokenizer.decode(answer)));
      }
    } finally {
      opened.model.dispose();
    }
  });
});

Deno.test("fine-tuning stages refuse an open model with GPT-2-tokenized instructions, naming the fix", async () => {
  await withTempDir(async (dir) => {
    await writeTinyHfModel(join(dir, "tiny"));
    for (const stage of ["finetune", "lora-finetune"]) {
      const report = await runYaml(
        dir,
        `name: t\nbackend: cpu\nstages:\n  load-hf-model:\n    source: local\n    path: tiny\n` +
          `  instructions:\n    corpus: instruction-data\n    limit: 48\n` +
          `  ${stage}:\n    needs: [load-hf-model, instructions]\n    epochs: 1\n`,
      );
      assert.equal(report.ok, false);
      assert.match(
        report.error!.message,
        new RegExp(
          `${stage}: the model of "load-hf-model" is an open model with its own tokenizer, but ` +
            "the instructions were tokenized with gpt2: give the instructions stage " +
            "`tokenizer: model` and `needs: load-hf-model`",
        ),
      );
    }
  });
});
