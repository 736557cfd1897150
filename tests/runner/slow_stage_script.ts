/**
 * Run by run_test.ts in a child process: a stage that checkpoints, then either hangs (so
 * the test can SIGKILL it) or finishes, resuming from the checkpoint it finds.
 * Usage: slow_stage_script.ts <cacheDir> hang|finish
 */
import { join } from "node:path";
import { z } from "zod";
import { loadPipeline } from "../../runner/pipeline.ts";
import { runPipeline } from "../../runner/run.ts";
import { defineStage, StageRegistry } from "../../runner/stage.ts";

const [cacheDir, mode] = Deno.args;
const slow = defineStage({
  type: "slow",
  version: "1",
  description: "checkpoints, then hangs or finishes",
  params: z.strictObject({}),
  async run(ctx) {
    const checkpoint = join(ctx.progressDir, "step.txt");
    let step = 0;
    try {
      step = Number(await Deno.readTextFile(checkpoint));
      console.log(`resumed from step ${step}`);
    } catch { /* a fresh start */ }
    await Deno.writeTextFile(join(ctx.outDir, "partial.txt"), "half");
    await Deno.writeTextFile(checkpoint, String(step + 1));
    console.log("checkpointed");
    if (mode === "hang") await new Promise(() => setInterval(() => {}, 1000));
    return { metrics: { step: step + 1 } };
  },
});
const file = join(cacheDir, "..", "slow.yaml");
await Deno.mkdir(cacheDir, { recursive: true });
await Deno.writeTextFile(file, "name: slow\nstages:\n  slow: {}\n");
const pipeline = await loadPipeline(file, new StageRegistry().register(slow));
const report = await runPipeline(pipeline, { cacheDir, out: { write() {}, isTerminal: false } });
Deno.exit(report.ok ? 0 : 1);
