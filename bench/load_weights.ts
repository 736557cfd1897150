/**
 * Peak memory of loading GPT-2 weights, per size: random weights in the real shapes are written
 * as an OpenAI TensorFlow checkpoint, converted by the `load-openai-weights` stage (through the
 * runner, `source: local`), then loaded by `loadModel` as `generate` does. Each phase runs in
 * its own process so its peak resident memory (Linux VmHWM) is its own.
 *
 *   deno run -A bench/load_weights.ts [--sizes 124M,355M] [--dir /tmp/folder]
 *
 * Needs free disk of about 2.3× the model's float32 size (checkpoint + artifact).
 */
import { join } from "node:path";
import { parseArgs } from "node:util";
import {
  GPT2_CONTEXT_LENGTH,
  GPT2_SIZE_INFO,
  GPT2_VOCAB_SIZE,
  type Gpt2Size,
  isGpt2Size,
} from "../llm/model/gpt2_sizes.ts";
import { loadPipeline } from "../runner/pipeline.ts";
import { runPipeline } from "../runner/run.ts";
import { builtinStages } from "../stages/mod.ts";
import { loadModel } from "../llm/model/weights_io.ts";
import { TensorBundleWriter } from "../llm/weights/tensorbundle/writer.ts";

/** Peak resident set size of this process so far, in bytes (sampled where /proc is missing). */
function peakRss(): number {
  try {
    const status = Deno.readTextFileSync("/proc/self/status");
    const kib = Number(/^VmHWM:\s+(\d+) kB/m.exec(status)?.[1]);
    if (Number.isFinite(kib)) return kib * 1024;
  } catch { /* not Linux */ }
  return sampledPeak;
}
let sampledPeak = 0;
const sampler = setInterval(() => {
  sampledPeak = Math.max(sampledPeak, Deno.memoryUsage().rss);
}, 10);
Deno.unrefTimer(sampler);

/** OpenAI's tensor names and shapes for one size, in the order TensorFlow lists them. */
function openaiShapes(size: Gpt2Size): Array<[string, number[]]> {
  const { emb_dim: d, n_layers } = GPT2_SIZE_INFO[size];
  const shapes: Array<[string, number[]]> = [
    ["model/wte", [GPT2_VOCAB_SIZE, d]],
    ["model/wpe", [GPT2_CONTEXT_LENGTH, d]],
  ];
  for (let i = 0; i < n_layers; i++) {
    const h = `model/h${i}`;
    shapes.push(
      [`${h}/ln_1/g`, [d]],
      [`${h}/ln_1/b`, [d]],
      [`${h}/attn/c_attn/w`, [1, d, 3 * d]],
      [`${h}/attn/c_attn/b`, [3 * d]],
      [`${h}/attn/c_proj/w`, [1, d, d]],
      [`${h}/attn/c_proj/b`, [d]],
      [`${h}/ln_2/g`, [d]],
      [`${h}/ln_2/b`, [d]],
      [`${h}/mlp/c_fc/w`, [1, d, 4 * d]],
      [`${h}/mlp/c_fc/b`, [4 * d]],
      [`${h}/mlp/c_proj/w`, [1, 4 * d, d]],
      [`${h}/mlp/c_proj/b`, [d]],
    );
  }
  shapes.push(["model/ln_f/g", [d]], ["model/ln_f/b", [d]]);
  return shapes;
}

/** Small random values (an LCG: fast, and the numbers do not matter here). */
function randomValues(count: number, seed: number): Float32Array {
  const data = new Float32Array(count);
  let state = seed >>> 0;
  for (let i = 0; i < count; i++) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    data[i] = (state / 2 ** 32 - 0.5) * 0.04;
  }
  return data;
}

async function writeCheckpoint(size: Gpt2Size, folder: string): Promise<void> {
  await Deno.mkdir(folder, { recursive: true });
  const writer = await TensorBundleWriter.create(join(folder, "model.ckpt"));
  let seed = 1;
  for (const [name, shape] of openaiShapes(size)) {
    await writer.add(name, { shape, data: randomValues(shape.reduce((a, b) => a * b, 1), seed++) });
  }
  await writer.finish();
  const info = GPT2_SIZE_INFO[size];
  await Deno.writeTextFile(
    join(folder, "hparams.json"),
    JSON.stringify({
      n_vocab: GPT2_VOCAB_SIZE,
      n_ctx: GPT2_CONTEXT_LENGTH,
      n_embd: info.emb_dim,
      n_head: info.n_heads,
      n_layer: info.n_layers,
    }),
  );
}

/** The stage, run by the runner exactly as a pipeline runs it. Returns the artifact folder. */
async function convert(folder: string, cacheDir: string): Promise<string> {
  const yaml = join(cacheDir, "bench.yaml");
  await Deno.mkdir(cacheDir, { recursive: true });
  await Deno.writeTextFile(
    yaml,
    `name: bench\nstages:\n  load-openai-weights:\n    source: local\n    path: ${folder}\n`,
  );
  const pipeline = await loadPipeline(yaml, builtinStages());
  const report = await runPipeline(pipeline, {
    cacheDir,
    force: "all",
    out: { write() {}, isTerminal: false },
  });
  if (!report.ok) throw report.error;
  return report.artifacts["load-openai-weights"].dir;
}

async function child(phase: string, size: Gpt2Size, dir: string): Promise<void> {
  const baseline = Deno.memoryUsage().rss;
  const t0 = performance.now();
  const folder = join(dir, `gpt2-${size}`);
  let detail: Record<string, unknown> = {};
  if (phase === "write") {
    await writeCheckpoint(size, folder);
    detail = { bytes: (await Deno.stat(join(folder, "model.ckpt.data-00000-of-00001"))).size };
  } else if (phase === "convert") {
    const artifact = await convert(folder, join(dir, `cache-${size}`));
    await Deno.writeTextFile(join(dir, `artifact-${size}.txt`), artifact);
    detail = { bytes: (await Deno.stat(join(artifact, "model.safetensors"))).size };
  } else {
    const tf = await import("@tensorflow/tfjs");
    tf.env().set("IS_NODE", false);
    await tf.setBackend("cpu");
    const artifact = await Deno.readTextFile(join(dir, `artifact-${size}.txt`));
    const model = await loadModel(artifact);
    detail = { parameters: model.numParameters() };
    model.dispose();
  }
  console.log(JSON.stringify({
    size,
    phase,
    seconds: (performance.now() - t0) / 1000,
    baseline_rss: baseline,
    peak_rss: peakRss(),
    ...detail,
  }));
}

async function main() {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      sizes: { type: "string", default: "124M,355M" },
      dir: { type: "string" },
      child: { type: "string" },
      size: { type: "string" },
    },
  });
  if (values.child) {
    if (!values.size || !isGpt2Size(values.size) || !values.dir) throw new Error("bad child args");
    return await child(values.child, values.size, values.dir);
  }
  const dir = values.dir ?? await Deno.makeTempDir({ prefix: "groundup-bench-load-" });
  const mib = (n: number) => `${(n / 2 ** 20).toFixed(0)} MiB`;
  console.log(`# load_weights bench in ${dir} (deno ${Deno.version.deno}, ${Deno.build.os})`);
  try {
    for (const size of values.sizes.split(",")) {
      if (!isGpt2Size(size)) throw new Error(`unknown size ${size}`);
      for (const phase of ["write", "convert", "load"]) {
        const out = await new Deno.Command(Deno.execPath(), {
          args: [
            "run",
            "-A",
            import.meta.filename!,
            "--child",
            phase,
            "--size",
            size,
            "--dir",
            dir,
          ],
          stdout: "piped",
          stderr: "inherit",
        }).output();
        if (!out.success) throw new Error(`${size} ${phase} failed`);
        const result = JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").pop()!);
        console.log(
          `${size.padEnd(6)} ${phase.padEnd(8)} ${result.seconds.toFixed(1).padStart(6)} s  ` +
            `peak RSS ${mib(result.peak_rss).padStart(9)}  (process at start ${
              mib(result.baseline_rss)
            })` +
            (result.bytes ? `  file ${mib(result.bytes)}` : "") +
            (result.parameters ? `  ${result.parameters.toLocaleString("en-US")} parameters` : ""),
        );
      }
      await Deno.remove(join(dir, `gpt2-${size}`), { recursive: true });
      await Deno.remove(join(dir, `cache-${size}`), { recursive: true });
    }
  } finally {
    if (!values.dir) await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

await main();
