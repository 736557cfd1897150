/**
 * MMLU evaluation: the harness's task tree, its prompts character for character (0- and
 * 2-shot), left truncation, log-likelihood scoring on a tiny random GPT (the one-pass path for
 * single-token choices equals the per-choice path and a brute-force computation; multi-token
 * continuations too), and acc / stderr as the harness computes them.
 */
import * as tf from "@tensorflow/tfjs";
import assert from "node:assert/strict";
import {
  encodePair,
  loglikelihoods,
  requestRow,
  sharedContextRow,
  type TokenizedRequest,
} from "../../../llm/eval/loglikelihood.ts";
import { accStderr, pooledStderr, weightedMean } from "../../../llm/eval/metrics.ts";
import { readMmluCsvFile } from "../../../llm/eval/mmlu/data.ts";
import { evaluateMmlu, scoreQuestions } from "../../../llm/eval/mmlu/evaluate.ts";
import { MMLU_CONTINUATIONS, mmluContext } from "../../../llm/eval/mmlu/prompt.ts";
import {
  expandMmluTasks,
  MMLU_SUBJECT_CATEGORY,
  MMLU_SUBJECTS,
  mmluTask,
  mmluTaskNames,
} from "../../../llm/eval/mmlu/subjects.ts";
import { initEngine } from "../../../llm/engine/backend.ts";
import { loadModelConfig } from "../../../llm/model/config.ts";
import { GPTModel } from "../../../llm/model/gpt.ts";
import { createTokenizer } from "../../../llm/tokenizer/mod.ts";
import { sharedFixture } from "../../fixtures.ts";

// The fast CPU engine (BLAS): the tiny model's 50,257-row output head dominates the time.
await initEngine({ backend: "cpu", log: () => {} });
const MMLU_DIR = sharedFixture("mmlu");
const tokenizer = createTokenizer({ kind: "gpt2" });

Deno.test("mmlu tasks: 57 subjects in the harness's four categories; groups expand children first", () => {
  assert.equal(MMLU_SUBJECTS.length, 57);
  const counts: Record<string, number> = {};
  for (const s of MMLU_SUBJECTS) {
    counts[MMLU_SUBJECT_CATEGORY[s]] = (counts[MMLU_SUBJECT_CATEGORY[s]] ?? 0) + 1;
  }
  assert.deepEqual(counts, { stem: 19, other: 13, social_sciences: 12, humanities: 13 });
  assert.equal(MMLU_SUBJECT_CATEGORY.philosophy, "humanities");
  assert.equal(MMLU_SUBJECT_CATEGORY.us_foreign_policy, "social_sciences");
  assert.equal(MMLU_SUBJECT_CATEGORY.anatomy, "stem");
  assert.equal(MMLU_SUBJECT_CATEGORY.human_aging, "other");
  assert.equal(MMLU_SUBJECT_CATEGORY.human_sexuality, "social_sciences");
  assert.equal(mmluTaskNames().length, 1 + 4 + 57);
  assert.deepEqual(mmluTask("mmlu_philosophy"), {
    kind: "subject",
    name: "mmlu_philosophy",
    subject: "philosophy",
    alias: "philosophy",
  });
  const { tasks, subjects } = expandMmluTasks(["mmlu"]);
  assert.equal(subjects.length, 57);
  assert.equal(tasks.length, 62);
  assert.equal(tasks.at(-1)!.name, "mmlu");
  const index = new Map(tasks.map((t, i) => [t.name, i]));
  for (const task of tasks) {
    if (task.kind === "group") {
      for (const c of task.children) assert.ok(index.get(c)! < index.get(task.name)!);
    }
  }
  // A subject named twice (directly and through its group) is evaluated once.
  assert.deepEqual(expandMmluTasks(["mmlu_philosophy", "mmlu_humanities"]).subjects.length, 13);
  assert.throws(() => mmluTask("mmlu_astrology"), /unknown MMLU task "mmlu_astrology"/);
});

Deno.test("mmlu prompt: 0-shot and 2-shot contexts exactly as the harness writes them", async () => {
  const test = await readMmluCsvFile(MMLU_DIR, "philosophy", "test");
  const dev = await readMmluCsvFile(MMLU_DIR, "philosophy", "dev");
  const zeroShot =
    "The following are multiple choice questions (with answers) about philosophy.\n\n" +
    "Aesthetics deals with objects that are_____.\n" +
    "A. essential to our existence\n" +
    "B. unimportant to most people\n" +
    "C. not essential to our existence\n" +
    "D. rarely viewed\n" +
    "Answer:";
  assert.equal(mmluContext(test[0]), zeroShot);
  const twoShot =
    "The following are multiple choice questions (with answers) about philosophy.\n\n" +
    "Psychological egoism is:\n" +
    "A. an ethical theory about how we ought to behave.\n" +
    "B. a generalization concerning the way people tend to behave.\n" +
    "C. a claim about human nature and the ways people are capable of behaving.\n" +
    "D. none of the above.\n" +
    "Answer: C\n\n" +
    "According to Moore’s “ideal utilitarianism,” the right action is the one that brings about the greatest amount of:\n" +
    "A. pleasure.\n" +
    "B. happiness.\n" +
    "C. good.\n" +
    "D. virtue.\n" +
    "Answer: C\n\n" +
    "Aesthetics deals with objects that are_____.\n" +
    "A. essential to our existence\n" +
    "B. unimportant to most people\n" +
    "C. not essential to our existence\n" +
    "D. rarely viewed\n" +
    "Answer:";
  assert.equal(mmluContext(test[0], dev.slice(0, 2)), twoShot);
  // The question is stripped (the harness's question.strip()), the choices are not.
  assert.equal(
    mmluContext({
      subject: "high_school_european_history",
      question: "  Why?\n",
      choices: [" a", "b ", "c", "d"],
      answer: 0,
    }),
    "The following are multiple choice questions (with answers) about high school european history.\n\n" +
      "Why?\nA.  a\nB. b \nC. c\nD. d\nAnswer:",
  );
  assert.deepEqual(MMLU_CONTINUATIONS, [" A", " B", " C", " D"]);
  // GPT-2's BPE: each continuation is one token after "Answer:" (REFERENCE.md: 317 347 327 360).
  assert.deepEqual(
    MMLU_CONTINUATIONS.map((c) => encodePair(tokenizer, zeroShot, c).continuation),
    [[317], [347], [327], [360]],
  );
});

Deno.test("loglikelihood: requests are encoded and cut from the left as HFLM does", () => {
  // Trailing whitespace of the context moves into the continuation.
  const moved = encodePair(tokenizer, "Answer: ", "A");
  assert.deepEqual(moved.context, tokenizer.encode("Answer:"));
  assert.deepEqual(moved.continuation, [317]);
  const ctx = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
  // (context + continuation)[-(5 + 1):][:-1]
  assert.deepEqual(requestRow({ context: ctx, continuation: [11, 12] }, 5), {
    input: [7, 8, 9, 10, 11],
    picks: [{ position: 3, token: 11 }, { position: 4, token: 12 }],
  });
  assert.deepEqual(requestRow({ context: [1, 2], continuation: [3] }, 5), {
    input: [1, 2],
    picks: [{ position: 1, token: 3 }],
  });
  assert.deepEqual(sharedContextRow(ctx, [20, 21], 4), {
    input: [7, 8, 9, 10],
    picks: [{ position: 3, token: 20 }, { position: 3, token: 21 }],
  });
  assert.throws(() => requestRow({ context: [], continuation: [3] }, 5), /empty context/);
});

/** A tiny random GPT over GPT-2's vocabulary with a 32-token context. */
async function tinyModel(seed = 7) {
  return new GPTModel(await loadModelConfig("tiny"), { seed });
}

/**
 * The reference: each request on its own, the whole sequence cut to its last 33 tokens, the
 * model run on all but the last, the log-softmax computed here in float64.
 */
async function bruteForce(model: GPTModel, request: TokenizedRequest): Promise<number> {
  const limit = model.config.context_length + 1;
  const whole = [...request.context, ...request.continuation].slice(-limit);
  const input = tf.tensor2d(whole.slice(0, -1), [1, whole.length - 1], "int32");
  const logits = model.forward(input);
  const values = await logits.data();
  input.dispose(), logits.dispose();
  const vocab = model.config.vocab_size;
  let total = 0;
  const n = request.continuation.length;
  for (let j = 0; j < n; j++) {
    const position = whole.length - 1 - n + j; // predicts whole[position + 1]
    const row = values.subarray(position * vocab, (position + 1) * vocab);
    let max = -Infinity;
    for (const v of row) max = Math.max(max, v);
    let sum = 0;
    for (const v of row) sum += Math.exp(v - max);
    total += row[request.continuation[j]] - max - Math.log(sum);
  }
  return total;
}

function assertClose(actual: number[], expected: number[], tolerance: number, what: string) {
  assert.equal(actual.length, expected.length, what);
  actual.forEach((a, i) =>
    assert.ok(Math.abs(a - expected[i]) <= tolerance, `${what}[${i}]: ${a} vs ${expected[i]}`)
  );
}

Deno.test("mmlu scoring: one pass for the four choices equals the per-choice path and brute force", async () => {
  const model = await tinyModel();
  try {
    const test = await readMmluCsvFile(MMLU_DIR, "philosophy", "test");
    // Short and long questions; every context is longer than the model's 32 tokens.
    const questions = test.slice(0, 5);
    const requests = questions.map((q) =>
      MMLU_CONTINUATIONS.map((c) => encodePair(tokenizer, mmluContext(q), c))
    );
    assert.ok(requests.every((r) => r[0].context.length > 32));
    const fast = await scoreQuestions(model, requests, { batchSize: 3 });
    const general = await scoreQuestions(model, requests, { batchSize: 2, general: true });
    for (const [q, perChoice] of requests.entries()) {
      const reference = await Promise.all(perChoice.map((r) => bruteForce(model, r)));
      assertClose(fast[q], reference, 1e-4, `question ${q} one pass`);
      assertClose(general[q], reference, 1e-4, `question ${q} per choice`);
      assertClose(fast[q], general[q], 1e-5, `question ${q} paths`);
      assert.ok(new Set(fast[q]).size === 4, "four different scores");
    }
  } finally {
    model.dispose();
  }
});

Deno.test("loglikelihood: multi-token continuations in padded batches equal brute force", async () => {
  const model = await tinyModel(11);
  try {
    const contexts = [
      "Question: what is two plus two?\nAnswer:",
      "A short one",
      "The following are multiple choice questions (with answers) about philosophy. This context is long enough to be cut from the left by the tiny model.",
    ];
    const continuations = [
      " Alpha",
      " beta gamma delta",
      " four",
      " and then some more words follow here",
    ];
    const requests = contexts.flatMap((c) => continuations.map((x) => encodePair(tokenizer, c, x)));
    assert.ok(requests.some((r) => r.continuation.length >= 5));
    assert.ok(requests.some((r) => r.context.length + r.continuation.length > 33), "one is cut");
    const reference = await Promise.all(requests.map((r) => bruteForce(model, r)));
    for (const batchSize of [5, 12]) {
      assertClose(
        await loglikelihoods(model, requests, { batchSize }),
        reference,
        1e-4,
        `batch ${batchSize}`,
      );
    }
    // Questions whose choices take several tokens go the per-choice way automatically.
    const perQuestion = contexts.map((_, i) => requests.slice(i * 4, i * 4 + 4));
    const scored = await scoreQuestions(model, perQuestion, { batchSize: 4 });
    assertClose(scored.flat(), reference, 1e-4, "scoreQuestions");
  } finally {
    model.dispose();
  }
});

Deno.test("mmlu metrics: acc stderr sqrt(p(1-p)/(n-1)), groups weighted by size with pooled stderr", () => {
  // The workshop's figure: 0.5691 on 311 questions → ± 0.0281.
  assert.equal(Math.round(accStderr(177 / 311, 311) * 1e4) / 1e4, 0.0281);
  assert.ok(Math.abs(accStderr(177 / 311, 311) - 0.028125341) < 1e-8);
  assert.ok(Number.isNaN(accStderr(1, 1)));
  // Two subtasks, 5/10 and 21/30 right: the question-weighted mean and the pooled stderr
  // sqrt(((9 se1² 10) + (29 se2² 30)) / 38 / 40).
  const se = [accStderr(0.5, 10), accStderr(0.7, 30)];
  assert.equal(weightedMean([0.5, 0.7], [10, 30]), 26 / 40);
  assert.ok(Math.abs(pooledStderr(se, [10, 30]) - 0.076088591) < 1e-8);
  // Equal accuracies: the pooled stderr is close to that of the questions put together.
  const pooled = pooledStderr([accStderr(0.6, 100), accStderr(0.6, 200)], [100, 200]);
  assert.ok(Math.abs(pooled - accStderr(0.6, 300)) < 1e-4);
});

Deno.test("mmlu evaluate: limit, few-shot, per-subject acc from the samples", async () => {
  const model = await tinyModel();
  try {
    const load = (subject: string, split: "dev" | "validation" | "test") =>
      readMmluCsvFile(MMLU_DIR, subject, split);
    const evaluation = await evaluateMmlu(model, tokenizer, {
      tasks: ["mmlu_philosophy", "mmlu_formal_logic"],
      numFewshot: 1,
      limit: 7,
      batchSize: 4,
      load,
    });
    assert.equal(evaluation.samples.length, 14);
    assert.ok(evaluation.singleTokenContinuations);
    for (const task of ["mmlu_philosophy", "mmlu_formal_logic"]) {
      const mine = evaluation.samples.filter((s) => s.task === task);
      assert.deepEqual(mine.map((s) => s.doc_id), [0, 1, 2, 3, 4, 5, 6]);
      const acc = mine.filter((s) => s.correct).length / 7;
      assert.equal(evaluation.results[task].acc, acc);
      assert.equal(evaluation.results[task].acc_stderr, accStderr(acc, 7));
      assert.equal(evaluation.results[task].samples, 7);
      for (const s of mine) {
        const best = s.loglikelihoods.indexOf(Math.max(...s.loglikelihoods));
        assert.equal(s.prediction, "ABCD"[best]);
        assert.equal(s.correct, s.prediction === s.target);
        assert.ok(s.prompt.includes("\nAnswer: "), "one solved dev question before");
        assert.ok(s.truncated);
      }
    }
    assert.equal(evaluation.results.mmlu_philosophy.original, 311);
    await assert.rejects(
      evaluateMmlu(model, tokenizer, {
        tasks: ["mmlu_philosophy"],
        numFewshot: 6,
        batchSize: 1,
        load,
      }),
      /num_fewshot 6 is more than the 5 dev questions of philosophy/,
    );
    const aborted = new AbortController();
    aborted.abort();
    await assert.rejects(
      evaluateMmlu(model, tokenizer, {
        tasks: ["mmlu_philosophy"],
        numFewshot: 0,
        batchSize: 1,
        load,
        signal: aborted.signal,
      }),
    );
  } finally {
    model.dispose();
  }
});

Deno.test("mmlu evaluate: a group averages its subjects by size and pools their stderr", async () => {
  const model = await tinyModel(3);
  try {
    // The fixtures hold 3 of the 13 humanities subjects; the others borrow philosophy's test
    // questions (a different slice each) under their own subject name.
    const own = new Set(["philosophy", "formal_logic", "high_school_european_history"]);
    const humanities = MMLU_SUBJECTS.filter((s) => MMLU_SUBJECT_CATEGORY[s] === "humanities");
    const load = async (subject: string, split: "dev" | "validation" | "test") => {
      if (own.has(subject)) return readMmluCsvFile(MMLU_DIR, subject, split);
      const start = humanities.indexOf(subject) * 7;
      const borrowed = await readMmluCsvFile(MMLU_DIR, "philosophy", split);
      return borrowed.slice(start, start + 3 + (start % 4)).map((q) => ({ ...q, subject }));
    };
    const evaluation = await evaluateMmlu(model, tokenizer, {
      tasks: ["mmlu_humanities"],
      numFewshot: 0,
      limit: 5,
      batchSize: 8,
      load,
    });
    const children = humanities.map((s) => evaluation.results[`mmlu_${s}`]);
    const sizes = children.map((c) => c.samples);
    assert.ok(new Set(sizes).size > 1, "subjects of different sizes");
    const group = evaluation.results.mmlu_humanities;
    assert.equal(group.samples, evaluation.samples.length);
    assert.ok(
      Math.abs(group.acc - evaluation.samples.filter((s) => s.correct).length / group.samples) <
        1e-12,
    );
    assert.equal(group.acc_stderr, pooledStderr(children.map((c) => c.acc_stderr), sizes));
    assert.equal(group.alias, "humanities");
    assert.deepEqual(evaluation.tasks.map((t) => t.name).at(-1), "mmlu_humanities");
  } finally {
    model.dispose();
  }
});
