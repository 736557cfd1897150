/**
 * THE check of the GGUF export: llama.cpp itself (node-llama-cpp 3.21.1's prebuilt CPU binary,
 * llama.cpp release v0.4.0) loads our file, and its greedy tokens equal ours on the same weights.
 * llama.cpp's next-token probabilities are compared with ours at every step as well.
 *
 * node-llama-cpp is a native Node addon: tools/llama-cpp/run.mjs runs it under Node, this test
 * spawns it. Install it once with `npm install --prefix tools/llama-cpp` (.ci/run does); without
 * it these tests are ignored, saying so (in CI, CI=true, they fail instead).
 *
 * Models: a random GPT-2 with the real GPT-2 tokenizer (text in, text tokenized by both), every
 * HF parity fixture (tests/fixtures/hf: Llama 3 with rope scaling, SmolLM2, Qwen3, Gemma 3,
 * Phi-3, Phi-2; vocabulary 256 without a tokenizer, so ids are fed directly), and random Llama 3
 * and Qwen3 models with the real Llama 3 / Qwen3 tokenizers (tokenization compared on texts).
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { exportGguf } from "../../../llm/export/gguf.ts";
import {
  byteToUnicode,
  type GgufVocabulary,
  ggufVocabularyOf,
  gpt2Vocabulary,
  TOKEN_TYPE,
} from "../../../llm/export/vocab.ts";
import { loadHfModel } from "../../../llm/families/load.ts";
import type { GPTConfig } from "../../../llm/model/config.ts";
import { GPTModel } from "../../../llm/model/gpt.ts";
import { generate } from "../../../llm/model/generate.ts";
import { getStateDict, loadStateDict } from "../../../llm/model/weights_io.ts";
import { Gpt2Tokenizer } from "../../../llm/tokenizer/gpt2.ts";
import { localFixture, REPO_ROOT, withTempDir } from "../../fixtures.ts";
import { lenmlTokenizer } from "../tokenizer/hf_files.ts";

const RUNNER = join(REPO_ROOT, "tools", "llama-cpp", "run.mjs");
const INSTALLED = existsSync(
  join(REPO_ROOT, "tools", "llama-cpp", "node_modules", "node-llama-cpp", "package.json"),
);
/** In CI (.ci/run installs it) a missing llama.cpp is a failure, not a skipped check. */
const SKIP = !INSTALLED && Deno.env.get("CI") !== "true";
if (!INSTALLED) {
  console.warn(
    "llama_cpp_test: node-llama-cpp is not installed; run `npm install --prefix tools/llama-cpp`",
  );
}

interface LlamaAnswer {
  architecture: string;
  tokens: number[][];
  generated: number[][];
  /** llama.cpp's ten most likely tokens [id, probability] at each generated step. */
  top: [number, number][][][];
}

/** Runs tools/llama-cpp/run.mjs on a request; fails with its stderr. */
async function llamaCpp(dir: string, request: Record<string, unknown>): Promise<LlamaAnswer> {
  assert.ok(INSTALLED, "node-llama-cpp is not installed: npm install --prefix tools/llama-cpp");
  const requestPath = join(dir, "request.json");
  await Deno.writeTextFile(requestPath, JSON.stringify(request));
  const out = await new Deno.Command("node", { args: [RUNNER, requestPath] }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, `llama.cpp failed:\n${stderr}`);
  return JSON.parse(new TextDecoder().decode(out.stdout));
}

/** Our next-token probabilities after `ids` (float32 softmax of the last position's logits). */
async function ourProbabilities(model: GPTModel, ids: number[]): Promise<Float32Array> {
  const input = tf.tensor2d([ids], [1, ids.length], "int32");
  const logits = model.forward(input, { lastTokenOnly: true });
  const probs = tf.softmax(logits.reshape([-1]));
  const values = await probs.data() as Float32Array;
  tf.dispose([input, logits, probs]);
  return values;
}

/**
 * Generates greedily with both, asserts equal tokens, and returns the largest difference
 * between llama.cpp's probabilities of its top-10 tokens and ours, over every step.
 */
async function compareGreedy(
  dir: string,
  model: GPTModel,
  vocabulary: GgufVocabulary,
  prompt: number[],
  newTokens: number,
  label: string,
): Promise<{ tokens: number[]; maxProbDiff: number; minMargin: number }> {
  const path = join(dir, `${label}.gguf`);
  await exportGguf(model, vocabulary, path);
  const ours = await generate(model, prompt, { maxNewTokens: newTokens });
  const answer = await llamaCpp(dir, {
    model: path,
    generate: [{ ids: prompt, maxTokens: newTokens }],
    contextSize: Math.max(256, prompt.length + newTokens + 8),
  });
  assert.deepEqual(answer.generated[0], ours, `${label}: llama.cpp's greedy tokens equal ours`);
  let maxProbDiff = 0;
  let minMargin = Infinity;
  const sequence = [...prompt];
  for (const [step, top] of answer.top[0].entries()) {
    const probs = await ourProbabilities(model, sequence);
    for (const [id, p] of top) maxProbDiff = Math.max(maxProbDiff, Math.abs(probs[id] - p));
    minMargin = Math.min(minMargin, top[0][1] - top[1][1]);
    sequence.push(ours[step]);
  }
  assert.ok(maxProbDiff < 1e-4, `${label}: probabilities within 1e-4 (got ${maxProbDiff})`);
  console.log(
    `${label}: ${ours.length} greedy tokens equal; max |p_llama.cpp - p_ours| over the top-10 ` +
      `of every step ${maxProbDiff.toExponential(2)}; smallest top-1/top-2 gap ${
        minMargin.toExponential(2)
      }`,
  );
  return { tokens: ours, maxProbDiff, minMargin };
}

/** A GGUF vocabulary of the 256 single bytes (GPT-2's alphabet), for fixtures without a tokenizer. */
function byteVocabulary(bosId: number, eosId: number): GgufVocabulary {
  const tokens = byteToUnicode();
  return {
    model: "gpt2",
    pre: "gpt-2",
    tokens,
    tokenTypes: tokens.map(() => TOKEN_TYPE.normal),
    merges: [],
    bosId,
    eosId,
    addBos: false,
  };
}

/** Multiplies every weight matrix by `factor`, so a random model's generations vary. */
async function sharpen(model: GPTModel, factor: number): Promise<void> {
  const state = await getStateDict(model);
  for (const [name, tensor] of state) {
    if (tensor.shape.length === 2 && name !== "pos_emb.weight") {
      tensor.data = tensor.data.map((x) => x * factor);
    }
  }
  loadStateDict(model, state);
}

Deno.test({
  name: "llama.cpp: a GPT-2 GGUF tokenizes as we do and generates our greedy tokens",
  ignore: SKIP,
  async fn() {
    await withTempDir(async (dir) => {
      const config: GPTConfig = {
        vocab_size: 50257,
        context_length: 128,
        emb_dim: 64,
        n_heads: 4,
        n_layers: 2,
        drop_rate: 0,
        qkv_bias: true,
      };
      const model = new GPTModel(config, { seed: 7 });
      try {
        await sharpen(model, 4);
        const tokenizer = new Gpt2Tokenizer();
        const texts = [
          "Every effort moves you",
          "Hello, world! 12345 isn't it?\n\n  indented\ttab ünïcödé 日本語 🙂",
        ];
        const path = join(dir, "gpt2-tok.gguf");
        await exportGguf(model, gpt2Vocabulary(), path);
        const answer = await llamaCpp(dir, { model: path, tokenize: texts });
        assert.equal(answer.architecture, "gpt2");
        assert.deepEqual(answer.tokens, texts.map((t) => tokenizer.encode(t)));
        await compareGreedy(dir, model, gpt2Vocabulary(), tokenizer.encode(texts[0]), 24, "gpt2");
      } finally {
        model.dispose();
      }
    });
  },
});

/** Every HF parity fixture: loaded by us, exported, run by llama.cpp on the fixture's prompt. */
for (
  const [fixture, promptLength] of [
    ["llama3", 100], // longer than the scaled frequencies' original context (64)
    ["smollm2", 40],
    ["qwen3", 40],
    ["gemma3", 60], // longer than the sliding window (32)
    ["phi3", 40],
    ["phi2", 40],
  ] as const
) {
  Deno.test({
    name: `llama.cpp: the ${fixture} fixture's GGUF generates our greedy tokens`,
    ignore: SKIP,
    async fn() {
      const dir = localFixture("hf", fixture);
      const expected = JSON.parse(
        await Deno.readTextFile(localFixture("hf", "expected", `${fixture}.json`)),
      );
      const { model, hfConfig } = await loadHfModel(dir, { maxContext: 256 });
      try {
        const vocabulary = byteVocabulary(
          hfConfig.bos_token_id as number,
          hfConfig.eos_token_id as number,
        );
        const prompt = (expected.input_ids as number[]).slice(0, promptLength);
        await withTempDir((tmp) => compareGreedy(tmp, model, vocabulary, prompt, 24, fixture));
      } finally {
        model.dispose();
      }
    },
  });
}

/** Random Llama 3 / Qwen3 models with the real tokenizers: text tokenized alike, same greedy tokens. */
for (const name of ["llama3", "qwen3"] as const) {
  Deno.test({
    name: `llama.cpp: a ${name} GGUF with the real ${name} tokenizer tokenizes as we do`,
    ignore: SKIP,
    async fn() {
      const tokenizer = await lenmlTokenizer(name);
      const vocabSize = name === "llama3" ? 128256 : 151936;
      const config: GPTConfig = {
        family: name === "llama3" ? "llama" : "qwen3",
        vocab_size: vocabSize,
        context_length: 256,
        emb_dim: 64,
        n_heads: 4,
        n_layers: 2,
        drop_rate: 0,
        qkv_bias: false,
        head_dim: 16,
        n_kv_groups: 2,
        hidden_dim: 128,
        mlp: "swiglu",
        norm: "rmsnorm",
        norm_eps: 1e-5,
        pos_emb: "rope",
        rope_theta: name === "llama3" ? 500000 : 1000000,
        attn_out_bias: false,
        ...(name === "qwen3" ? { qk_norm: true } : {}),
        ...(name === "llama3"
          ? {
            rope_scaling: {
              factor: 32,
              low_freq_factor: 1,
              high_freq_factor: 4,
              original_context_length: 64,
            },
          }
          : {}),
      };
      const model = new GPTModel(config, { seed: 11, tiedHead: true });
      try {
        await sharpen(model, 3);
        const vocabulary = await ggufVocabularyOf(tokenizer, vocabSize);
        const texts = [
          "The quick brown fox can't jump 1234567 times!",
          "Hello, world!\n\n  indented\ttab ünïcödé 日本語 🙂 <|im_start|> user",
        ];
        await withTempDir(async (dir) => {
          const path = join(dir, `${name}-tok.gguf`);
          await exportGguf(model, vocabulary, path);
          const answer = await llamaCpp(dir, { model: path, tokenize: texts });
          assert.deepEqual(
            answer.tokens,
            texts.map((t) => tokenizer.encode(t, { special: false, addBos: false })),
          );
          const prompt = tokenizer.encode(texts[0], { special: false, addBos: false });
          await compareGreedy(dir, model, vocabulary, prompt, 16, `${name}-tokenizer`);
        });
      } finally {
        model.dispose();
      }
    },
  });
}
