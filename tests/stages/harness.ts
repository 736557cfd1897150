/**
 * Running pipelines in the training stages' tests: quietly, with the log kept, interrupted
 * (Ctrl-C) at a given line, or in a child process killed mid-run (SIGKILL) once a checkpoint is
 * far enough in, to show that the next run resumes from it and ends where an uninterrupted
 * run does.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { loadPipeline } from "../../runner/pipeline.ts";
import { runPipeline } from "../../runner/run.ts";
import type { RunReport } from "../../runner/run_report.ts";
import { builtinStages } from "../../stages/mod.ts";
import { readSafetensorsFile } from "../../llm/weights/safetensors.ts";
import { REPO_ROOT, sharedFixture } from "../fixtures.ts";
import { quietOutput, writePipeline } from "../runner/helpers.ts";

/**
 * Writes a pipeline that pretrains a micro GPT over GPT-2's vocabulary for a few steps on the
 * start of "The Verdict" (a base model for the fine-tuning stages), followed by `stages`
 * (YAML, indented as entries of `stages:`); `pretrain` adds keys to the pretrain stage.
 */
export async function writeMicroBasePipeline(
  dir: string,
  options: { name: string; contextLength: number; pretrain?: string },
  stages: string,
): Promise<string> {
  const verdict = await Deno.readTextFile(sharedFixture("workshop", "the-verdict.txt"));
  await Deno.writeTextFile(join(dir, "corpus.txt"), verdict.slice(0, 1500));
  return await writePipeline(
    dir,
    `name: ${options.name}
seed: 123
backend: cpu
model:
  vocab_size: 50257
  context_length: ${options.contextLength}
  emb_dim: 16
  n_heads: 2
  n_layers: 1
  drop_rate: 0.0
  qkv_bias: true
stages:
  tokenize:
    corpus: ${join(dir, "corpus.txt")}
  dataloader:
    needs: tokenize
    batch_size: 2
    max_length: 32
    stride: 32
  pretrain:
    needs: dataloader
    epochs: 1
    eval_freq: 100
    eval_iter: 1
    sample_tokens: 0
${options.pretrain ?? ""}${stages}`,
  );
}

/** Run a pipeline file with the built-in stages, printing nothing. */
export async function runFile(
  file: string,
  cacheDir: string,
  signal?: AbortSignal,
): Promise<RunReport> {
  return await runPipeline(await loadPipeline(file, builtinStages()), {
    cacheDir,
    out: quietOutput,
    signal,
  });
}

/** Run a pipeline file with the built-in stages, keeping what it printed. */
export async function runLogged(
  file: string,
  cacheDir: string,
): Promise<{ report: RunReport; log: string }> {
  const lines: string[] = [];
  const report = await runPipeline(await loadPipeline(file, builtinStages()), {
    cacheDir,
    out: { write: (t: string) => void lines.push(t), isTerminal: false },
  });
  return { report, log: lines.join("") };
}

/**
 * Run a pipeline file and abort its signal (a Ctrl-C) as soon as a line it prints matches
 * `when`; returns the report, or what the run threw, and everything it printed.
 */
export async function interruptWhen(
  file: string,
  cacheDir: string,
  when: RegExp,
): Promise<{ outcome: RunReport | Error; log: string }> {
  const controller = new AbortController();
  const lines: string[] = [];
  const outcome = await runPipeline(await loadPipeline(file, builtinStages()), {
    cacheDir,
    signal: controller.signal,
    out: {
      write: (t: string) => {
        lines.push(t);
        if (when.test(t)) controller.abort();
      },
      isTerminal: false,
    },
  }).catch((error) => error);
  return { outcome, log: lines.join("") };
}

/**
 * Run the pipeline in a child process (`main.ts`, as a user would) and kill it with SIGKILL as
 * soon as `stage` has saved a checkpoint at step `atStep` or later; asserts the stage had not
 * finished. Returns what the child printed.
 */
export async function killAfterCheckpoint(
  file: string,
  cacheDir: string,
  options: { stage: string; atStep: number; env?: Record<string, string> },
): Promise<string> {
  const { stage, atStep } = options;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", join(REPO_ROOT, "main.ts"), file, "--cache-dir", cacheDir],
    stdout: "null",
    stderr: "piped",
    env: { NO_COLOR: "1", ...options.env },
  }).spawn();
  const saved = new RegExp(`\\[${stage}\\] checkpoint saved at step (\\d+)`, "g");
  const decoder = new TextDecoder();
  let seen = "";
  for await (const chunk of child.stderr) {
    seen += decoder.decode(chunk);
    const match = [...seen.matchAll(saved)].at(-1);
    if (match && Number(match[1]) >= atStep) break;
  }
  child.kill("SIGKILL");
  await child.status;
  assert.doesNotMatch(seen, new RegExp(`${stage} +ran`), "the run must not have finished");
  return seen;
}

/** The step `stage` resumed from, as its log says, if it did. */
export function resumedFrom(log: string, stage: string): number | undefined {
  const match = new RegExp(`\\[${stage}\\] resuming from the checkpoint at step (\\d+)`).exec(log);
  return match ? Number(match[1]) : undefined;
}

/** The safetensors file `name` holds the same tensors, bit for bit, in both artifact folders. */
export async function assertSameTensors(expectedDir: string, actualDir: string, name: string) {
  const a = await readSafetensorsFile(join(expectedDir, name));
  const b = await readSafetensorsFile(join(actualDir, name));
  assert.deepEqual([...b.tensors.keys()], [...a.tensors.keys()], `${name}: other tensors`);
  for (const [tensor, value] of a.tensors) {
    assert.deepEqual(b.tensors.get(tensor)!.data, value.data, `${name}: ${tensor} differs`);
  }
}
