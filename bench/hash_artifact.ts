/**
 * What verifying an artifact costs next to using it: a GPT-2 124M-shaped model (random
 * weights; the book's untied head makes model.safetensors 652 MB) is saved,
 * then (1) `verifyArtifact`'s sha256 of every file (node:crypto, streamed) and (2) `loadModel`
 * as `generate` does, are each timed best of 3.
 *
 *   deno run -A bench/hash_artifact.ts
 */
import { join } from "node:path";
import { parse as parseYaml } from "yaml";
import { initEngine } from "../llm/engine/backend.ts";
import type { GPTConfig } from "../llm/model/config.ts";
import { GPTModel } from "../llm/model/gpt.ts";
import { loadModel, saveModel } from "../llm/model/weights_io.ts";
import { recordFiles } from "../runner/cache.ts";

await initEngine({ backend: "cpu" });
const config = parseYaml(await Deno.readTextFile("configs/models/gpt2-small.yaml")) as GPTConfig;
const dir = await Deno.makeTempDir({ prefix: "groundup-hash-bench-" });
try {
  const model = new GPTModel(config, { seed: 1 });
  await saveModel(dir, model);
  model.dispose();
  const size = (await Deno.stat(join(dir, "model.safetensors"))).size;
  console.log(`model.safetensors: ${size.toLocaleString("en")} bytes`);
  const time = async (what: string, fn: () => Promise<unknown>) => {
    const runs: number[] = [];
    for (let i = 0; i < 3; i++) {
      const t0 = performance.now();
      await fn();
      runs.push((performance.now() - t0) / 1000);
    }
    const best = Math.min(...runs);
    console.log(
      `${what.padEnd(34)} best of 3: ${best.toFixed(2)} s (${(size / best / 1e6).toFixed(0)} MB/s)`,
    );
    return best;
  };
  const hash = await time("sha256 of every file (verify)", () => recordFiles(dir));
  const load = await time(
    "loadModel (as generate does)",
    async () => (await loadModel(dir)).dispose(),
  );
  console.log(`verifying costs ${(100 * hash / load).toFixed(0)}% of loading`);
} finally {
  await Deno.remove(dir, { recursive: true });
}
