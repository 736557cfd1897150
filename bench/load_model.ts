/**
 * Load time of a saved GPT-2 124M folder (model.safetensors F32 + gpt_config.json, tied head as
 * OpenAI's), as `loadModel` reads it: float32 (matrices become variables over the mapped file,
 * nothing zero-filled first), and packed int8 / bf16 (converted as read). The first forward pass
 * is timed apart: it is where a mapped file's pages are first touched.
 *
 *   deno run -A bench/load_model.ts [--rounds 3] [--dir /tmp/groundup-load-124m]
 */
import * as tf from "@tensorflow/tfjs";
import { initEngine } from "../llm/engine/backend.ts";
import { GPTModel } from "../llm/model/gpt.ts";
import { gpt2Config } from "../llm/model/gpt2_sizes.ts";
import type { Quantization } from "../llm/model/precision.ts";
import { loadModel, saveModel } from "../llm/model/weights_io.ts";
import { flag, median } from "./common.ts";

const rounds = Number(flag("rounds", "3"));
const dir = flag("dir", "/tmp/groundup-load-124m");
await initEngine({ backend: "cpu", log: () => {} });
const original = new GPTModel(gpt2Config("124M", 0), { seed: 1, tiedHead: true });
await saveModel(dir, original);
original.dispose();
const round3 = (x: number) => +x.toFixed(3);
try {
  for (const quantize of ["none", "int8", "bf16"] as Quantization[]) {
    const loads: number[] = [];
    const firsts: number[] = [];
    for (let round = 0; round < rounds; round++) {
      let start = performance.now();
      const model = await loadModel(dir, { quantize });
      loads.push((performance.now() - start) / 1000);
      start = performance.now();
      tf.tidy(() => model.forward(tf.tensor2d([[1, 2, 3, 4]], undefined, "int32")).dataSync());
      firsts.push((performance.now() - start) / 1000);
      model.dispose();
    }
    console.log(JSON.stringify({
      bench: "load-model",
      model: "gpt2-124M",
      quantize,
      load_s: loads.map(round3),
      load_median_s: round3(median(loads)),
      first_forward_s: firsts.map(round3),
      loadavg: Deno.loadavg().map((x) => +x.toFixed(2)),
    }));
  }
} finally {
  await Deno.remove(dir, { recursive: true });
}
