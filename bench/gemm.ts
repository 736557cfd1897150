/**
 * GEMM throughput per tfjs backend: one JSON line per (backend, shape) on stdout.
 *
 *   deno run -A --unstable-webgpu bench/gemm.ts [--backends blas-raw,cpu,cpu+blas,wasm,webgpu]
 *     [--budget 20] [--threads N]
 *
 * Shapes are those of GPT-2 124M at batch 2 × 256 tokens (M = 512 rows): the attention and
 * projection layers (768 → 768), the feed-forward layer (768 → 3072) and the output head
 * (768 → 50,257). Weights are stored [out, in] as in PyTorch, so the model multiplies with
 * transposeB; the untransposed form is measured too. Reported: the median and the best of the
 * timed repetitions (the best is the steadier figure on a machine shared with other work). A measurement whose estimated time exceeds
 * --budget seconds (plain tfjs on the output head: ~40 s a product) is skipped and says so.
 */
import * as tf from "@tensorflow/tfjs";
import { type BackendChoice, type EngineInfo, initEngine } from "../llm/engine/backend.ts";
import { blasInUse } from "../llm/engine/cpu_kernels.ts";

interface Shape {
  m: number;
  k: number;
  n: number;
  transposeB: boolean;
}
const SHAPES: Shape[] = [768, 3072, 50257].flatMap((n) =>
  [true, false].map((transposeB) => ({ m: 512, k: 768, n, transposeB }))
);

/** A benchmark target: which engine to start, and under what name to report it. */
const TARGETS: Record<string, { backend: BackendChoice; nativeKernels?: boolean }> = {
  // cblas_sgemm on plain Float32Arrays, no tfjs: the ceiling for cpu+blas.
  "blas-raw": { backend: "cpu" },
  "cpu": { backend: "cpu", nativeKernels: false },
  "cpu+blas": { backend: "cpu" },
  "wasm": { backend: "wasm" },
  "webgpu": { backend: "webgpu" },
};

function flag(name: string): string | undefined {
  const at = Deno.args.indexOf(`--${name}`);
  return at >= 0 ? Deno.args[at + 1] : undefined;
}

const targets = (flag("backends") ?? "cpu,cpu+blas,wasm,webgpu").split(",");
const budgetSeconds = Number(flag("budget") ?? 20);
const threads = flag("threads") ? Number(flag("threads")) : undefined;

function emit(record: Record<string, unknown>): void {
  console.log(JSON.stringify({ bench: "gemm", ...record }));
}

/** Seconds for one product: median of repetitions after a warm-up, within the budget. */
async function timeProduct(a: tf.Tensor, b: tf.Tensor, transposeB: boolean, raw: boolean) {
  const [m, k] = a.shape as [number, number];
  const n = (transposeB ? b.shape[0] : b.shape[1]) as number;
  const [aValues, bValues] = raw ? [a.dataSync(), b.dataSync()] as Float32Array[] : [];
  const blas = blasInUse();
  const once = async () => {
    const start = performance.now();
    if (raw && blas) {
      const c = new Float32Array(m * n);
      blas.sgemm(false, transposeB, m, n, k, 1, aValues, k, bValues, transposeB ? k : n, 0, c, n);
    } else {
      const c = tf.matMul(a, b, false, transposeB);
      await c.data(); // waits for the GPU too
      c.dispose();
    }
    return (performance.now() - start) / 1000;
  };
  const warmup = await once(); // compiles shaders / touches pages
  const samples: number[] = [];
  let spent = warmup;
  while (samples.length < 10 && (samples.length < 3 || spent < budgetSeconds / 2)) {
    const seconds = await once();
    samples.push(seconds);
    spent += seconds;
    if (seconds > budgetSeconds / 3) break;
  }
  samples.sort((x, y) => x - y);
  return {
    seconds: samples[Math.floor(samples.length / 2)],
    best: samples[0],
    reps: samples.length,
  };
}

for (const target of targets) {
  const spec = TARGETS[target];
  if (!spec) throw new Error(`unknown --backends entry '${target}'`);
  let engine: EngineInfo;
  try {
    engine = await initEngine({ ...spec, blasThreads: threads, log: () => {} });
  } catch (error) {
    emit({ backend: target, error: (error as Error).message });
    continue;
  }
  if ((target === "cpu+blas" || target === "blas-raw") && !engine.blas) {
    emit({ backend: target, error: engine.notes.join("; ") });
    continue;
  }
  // The slowest rate seen so far on this backend predicts the next product's time.
  let slowest: number | undefined;
  for (const { m, k, n, transposeB } of SHAPES) {
    const flops = 2 * m * n * k;
    const base = {
      backend: target,
      m,
      k,
      n,
      transposeB,
      blas: engine.blas,
      adapter: engine.adapter,
    };
    // Two timed products plus a warm-up at least: skip what cannot fit in the budget.
    if (slowest && (3 * flops) / (slowest * 1e9) > budgetSeconds) {
      emit({ ...base, skipped: `estimated ${(flops / (slowest * 1e9)).toFixed(0)} s a product` });
      continue;
    }
    const a = tf.randomNormal([m, k], 0, 1, "float32", 1);
    const b = tf.randomNormal(transposeB ? [n, k] : [k, n], 0, 1, "float32", 2);
    try {
      const raw = target === "blas-raw";
      const { seconds, best, reps } = await timeProduct(a, b, transposeB, raw);
      const gflops = flops / seconds / 1e9;
      slowest = Math.min(slowest ?? Infinity, gflops);
      emit({
        ...base,
        seconds: +seconds.toFixed(5),
        gflops: +gflops.toFixed(2),
        best_gflops: +(flops / best / 1e9).toFixed(2),
        reps,
      });
    } catch (error) {
      emit({ ...base, error: (error as Error).message.split("\n")[0] });
    } finally {
      a.dispose();
      b.dispose();
    }
  }
}
emit({
  machine: {
    os: Deno.build.os,
    arch: Deno.build.arch,
    cores: navigator.hardwareConcurrency,
    deno: Deno.version.deno,
    tfjs: tf.version_core,
    OPENBLAS_CORETYPE: Deno.env.get("OPENBLAS_CORETYPE") ?? null,
    OPENBLAS_NUM_THREADS: Deno.env.get("OPENBLAS_NUM_THREADS") ?? null,
    // Other work on the machine skews every figure; the load average says how much there was.
    loadavg: Deno.loadavg().map((x) => +x.toFixed(2)),
  },
});
