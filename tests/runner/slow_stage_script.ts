/**
 * Run by the runner tests in a child process: one stage, "slow", that checkpoints into its
 * progress folder and then, by mode:
 *   hang     hangs, ignoring signals (so the test can SIGKILL it, or send two signals)
 *   busy     hangs like hang, but before writing any checkpoint
 *   finish   returns
 *   steps    takes STEPS steps of 100 ms, checkpointing each; on Ctrl-C/SIGTERM it stops
 *            after the current step (the checkpoint is written) and throws
 *   late     like steps, but on a signal it finishes and returns (a stage in its last moments)
 * It runs the pipeline the way main.ts does: signals go through installInterruptHandler, an
 * interrupted run exits 130 with interruptedMessage on stderr, a failed one exits 1.
 * Usage: slow_stage_script.ts <cacheDir> <mode> [--no-wait]   (env STEPS, default 20)
 */
import { join } from "node:path";
import { z } from "zod";
import { installInterruptHandler, interruptedMessage } from "../../runner/interrupt.ts";
import { loadPipeline } from "../../runner/pipeline.ts";
import { runPipeline } from "../../runner/run.ts";
import { defineStage, StageRegistry } from "../../runner/stage.ts";

const [cacheDir, mode, flag] = Deno.args;
const steps = Number(Deno.env.get("STEPS") ?? 20);
const slow = defineStage({
  type: "slow",
  version: "1",
  description: "checkpoints, then hangs, finishes or steps",
  params: z.strictObject({}),
  async run(ctx) {
    const checkpoint = join(ctx.progressDir, "step.txt");
    let step = 0;
    try {
      step = Number(await Deno.readTextFile(checkpoint));
      console.log(`resumed from step ${step}`);
    } catch { /* a fresh start */ }
    await Deno.writeTextFile(join(ctx.outDir, "partial.txt"), "half");
    if (mode === "busy") {
      console.log("busy");
      await new Promise(() => setInterval(() => {}, 1000));
    }
    if (mode === "hang" || mode === "finish") {
      await Deno.writeTextFile(checkpoint, String(step + 1));
      console.log("checkpointed");
      if (mode === "hang") await new Promise(() => setInterval(() => {}, 1000));
      return { metrics: { step: step + 1 } };
    }
    while (step < steps) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      step++;
      await Deno.writeTextFile(checkpoint, String(step));
      console.log(`step ${step}`);
      if (ctx.signal.aborted) {
        if (mode === "late") break;
        ctx.signal.throwIfAborted();
      }
    }
    await Deno.writeTextFile(join(ctx.outDir, "result.txt"), String(step));
    return { metrics: { step } };
  },
});
const file = join(cacheDir, "..", "slow.yaml");
await Deno.mkdir(cacheDir, { recursive: true });
await Deno.writeTextFile(file, "name: slow\nstages:\n  slow: {}\n");
const pipeline = await loadPipeline(file, new StageRegistry().register(slow));
const interrupt = installInterruptHandler();
const report = await runPipeline(pipeline, {
  cacheDir,
  out: {
    write: (text) => void Deno.stderr.writeSync(new TextEncoder().encode(text)),
    isTerminal: false,
  },
  signal: interrupt.signal,
  noWait: flag === "--no-wait",
  onStageStart: interrupt.stageStarted,
});
if (report.interrupted) {
  console.error(interruptedMessage(report));
  Deno.exit(130);
}
if (report.error) console.error(`error: ${report.error.message}`);
Deno.exit(report.ok ? 0 : 1);
