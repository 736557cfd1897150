/**
 * After the smoke pipeline: its pretraining must have learned something. Reads the newest
 * run log in the cache and the pretrain manifest, and fails unless the training loss fell by
 * at least 2 nats from the untrained loss (≈ 11.0 for GPT-2's 50,257-token vocabulary).
 * Usage: deno run -A .ci/check_smoke.ts <cacheDir>
 */
import { join } from "node:path";

const cacheDir = Deno.args[0] ?? ".groundup";
const runs = [...Deno.readDirSync(join(cacheDir, "runs"))].map((e) => e.name).filter((n) =>
  n.endsWith("-smoke.json")
).sort();
if (runs.length === 0) throw new Error(`no smoke run log in ${cacheDir}/runs`);
const log = JSON.parse(Deno.readTextFileSync(join(cacheDir, "runs", runs.at(-1)!)));
const step = log.steps.find((s: { type: string }) => s.type === "pretrain");
if (!step?.dir) throw new Error("the smoke run has no finished pretrain stage");
const manifest = JSON.parse(Deno.readTextFileSync(join(step.dir, "manifest.json")));
const { initial_train_loss: before, train_loss: after, val_loss: val } = manifest.metrics;
console.log(
  `smoke pretrain: train loss ${before.toFixed(3)} → ${after.toFixed(3)} (val ${val.toFixed(3)})`,
);
if (!(after < before - 2)) {
  console.error(`the training loss did not fall clearly: ${before} → ${after}`);
  Deno.exit(1);
}
