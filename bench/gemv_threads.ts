/**
 * Packed GEMV on one thread against several (llm/engine/gemv_pool.ts), in one process with the
 * two settings interleaved so that the machine's load falls on both alike:
 *
 * - the hand-off: a product of 2 rows left to the workers (the kernel work is nothing), so the
 *   time is the round trip notify → a worker wakes and runs the chunks → main sees them done;
 * - GPT-2 124M's and Qwen3-0.6B's decode shapes at Q8_0 and bf16: µs per product and the
 *   speed-up of the threads over one;
 * - with --decode gpt2-124M (or qwen3-0.6B): a whole model's decode and 64-token prefill rates
 *   (random weights, packed int8 and bf16) with BLAS threads × GEMV threads each 1 or --threads
 *   (the prefill's Q8_0 tile decoding counts as GEMV), the four settings alternating.
 *
 *   deno run -A bench/gemv_threads.ts [--threads 2] [--rounds 5] [--ms 300]
 *                                     [--decode gpt2-124M] [--new-tokens 32] [--blas-threads T]
 *                                     [--raw]
 *
 * --raw turns off the pool's adaptation (products of a size whose split has stopped paying go
 * back to one thread for a while), to see what the split itself costs or saves.
 *
 * One JSON line per shape or model (medians over rounds) plus one for the hand-off.
 */
import { initEngine } from "../llm/engine/backend.ts";
import { blasInUse } from "../llm/engine/cpu_kernels.ts";
import {
  gemvThreads,
  gemvThreadsError,
  MIN_BYTES_PER_THREAD,
  setGemvThreads,
  setLeaveRowsToWorkers,
  setMinBytesPerThread,
  setSplitAdaptation,
} from "../llm/engine/gemv_pool.ts";
import { PackedMatrix, type PackedType } from "../llm/engine/packed_matrix.ts";
import { generate } from "../llm/model/generate.ts";
import { GPTModel } from "../llm/model/gpt.ts";
import { packModel } from "../llm/model/precision.ts";
import { flag, median, timePrefill } from "./common.ts";
import { benchShape } from "./shapes.ts";

const threads = Number(flag("threads", "2"));
const blasThreads = Number(flag("blas-threads", String(threads)));
/** --raw: every product worth it is split, whether or not splitting has been paying. */
const raw = Deno.args.includes("--raw");
const rounds = Number(flag("rounds", "5"));
const budgetMs = Number(flag("ms", "300"));
const decodeModel = flag("decode", "");
const newTokens = Number(flag("new-tokens", "32"));
const round1 = (x: number) => +x.toFixed(1);

/** µs per call of `step`, over about budgetMs / 2 of calls. */
function timeCalls(step: () => void): number {
  step();
  let calls = 0;
  const start = performance.now();
  while (performance.now() - start < budgetMs / 2) {
    step();
    calls++;
  }
  return ((performance.now() - start) * 1000) / calls;
}

/**
 * One thread or all: the workers stay up either way (the split threshold moves), so switching is
 * free and the two settings can alternate often, which is what makes a ratio on a loaded
 * machine mean something.
 */
let splitBytes = MIN_BYTES_PER_THREAD;
function useThreads(on: boolean): void {
  setMinBytesPerThread(on ? splitBytes : Infinity);
}

/**
 * Medians over rounds of `measure()` with one thread and with all, in the order one, all, all,
 * one, one, ... (drift in the machine's load falls on both alike).
 */
async function compare(
  measure: () => number | Promise<number>,
): Promise<{ one: number; many: number }> {
  const one: number[] = [];
  const many: number[] = [];
  for (let round = 0; round < rounds; round++) {
    for (const on of round % 2 ? [true, false] : [false, true]) {
      useThreads(on);
      (on ? many : one).push(await measure());
    }
  }
  useThreads(true);
  return { one: median(one), many: median(many) };
}

function randomMatrix(type: PackedType, rows: number, cols: number): PackedMatrix {
  const values = new Float32Array(rows * cols);
  for (let i = 0; i < values.length; i++) values[i] = Math.sin(i * 0.7071) * 0.05;
  return PackedMatrix.fromFloat32(type, rows, cols, values);
}

await initEngine({ backend: "cpu", blasThreads, log: () => {} });
setGemvThreads(threads);
setSplitAdaptation(!raw);
if (gemvThreads() !== threads) {
  throw new Error(`could not start ${threads} GEMV threads: ${gemvThreadsError() ?? "?"}`);
}
const loadavg = () => Deno.loadavg().map((x) => +x.toFixed(2));

// The hand-off: split even the smallest product.
splitBytes = 0;
const tiny = randomMatrix("Q8_0", 2, 32);
const x32 = new Float32Array(32).fill(0.5);
setLeaveRowsToWorkers(true);
const handOff = await compare(() => timeCalls(() => tiny.multiply(x32, 1)));
setLeaveRowsToWorkers(false);
console.log(JSON.stringify({
  bench: "gemv-threads",
  shape: "hand-off [2, 32] Q8_0",
  threads,
  one_thread_us: round1(handOff.one),
  threads_us: round1(handOff.many),
  hand_off_us: round1(handOff.many - handOff.one),
  loadavg: loadavg(),
}));
tiny.dispose();
splitBytes = MIN_BYTES_PER_THREAD;

if (decodeModel) {
  const { config, tiedHead } = benchShape(decodeModel, "--decode");
  for (const quantize of ["int8", "bf16"] as const) {
    const model = new GPTModel(config, { seed: 123, tiedHead });
    packModel(model, quantize);
    const rate = async () => {
      let start = performance.now();
      const tokens = await generate(model, [15496, 11, 314, 716], {
        maxNewTokens: newTokens,
        onToken: (_t, index) => {
          if (index === 0) start = performance.now();
        },
      });
      return (tokens.length - 1) / ((performance.now() - start) / 1000);
    };
    const prompt = Array.from({ length: 64 }, (_, i) => (i * 7919 + 13) % 50_000);
    const prefillRate = async () => prompt.length / await timePrefill(model, prompt);
    await rate(); // warm-up
    // BLAS threads × GEMV threads, 1 or --threads each, the four settings in turn (reversed
    // every other round); the GEMV workers stop and start with their setting.
    const settings = [[1, 1], [threads, 1], [1, threads], [threads, threads]];
    const decode = new Map<string, number[]>();
    const prefill = new Map<string, number[]>();
    for (let round = 0; round < rounds; round++) {
      for (const [blas, gemv] of round % 2 ? [...settings].reverse() : settings) {
        blasInUse()?.setThreads(blas);
        setGemvThreads(gemv);
        const key = `blas ${blas}, gemv ${gemv}`;
        decode.set(key, [...decode.get(key) ?? [], await rate()]);
        prefill.set(key, [...prefill.get(key) ?? [], await prefillRate()]);
      }
    }
    const medians = (rates: Map<string, number[]>) =>
      Object.fromEntries([...rates].map(([key, values]) => [key, round1(median(values))]));
    const base = `blas ${threads}, gemv 1`; // the engine before GEMV threads
    const both = `blas ${threads}, gemv ${threads}`; // the engine's default now
    console.log(JSON.stringify({
      bench: "gemv-threads",
      decode: decodeModel,
      quantize,
      threads,
      raw,
      rounds,
      decode_tokens_per_s: medians(decode),
      prefill_tokens_per_s: medians(prefill),
      decode_gemv_threads_speedup: +(median(decode.get(both)!) / median(decode.get(base)!))
        .toFixed(2),
      prefill_gemv_threads_speedup: +(median(prefill.get(both)!) / median(prefill.get(base)!))
        .toFixed(2),
      loadavg: loadavg(),
    }));
    model.dispose();
  }
  Deno.exit(0);
}

const SHAPES: [string, number, number][] = [
  ["gpt2 attn.proj", 768, 768],
  ["gpt2 attn.qkv", 2304, 768],
  ["gpt2 mlp.fc", 3072, 768],
  ["gpt2 mlp.proj", 768, 3072],
  ["gpt2 head", 50257, 768],
  ["qwen3-0.6B k/v", 1024, 1024],
  ["qwen3-0.6B q", 2048, 1024],
  ["qwen3-0.6B gate/up", 3072, 1024],
  ["qwen3-0.6B down", 1024, 3072],
];
for (const type of ["Q8_0", "BF16"] as const) {
  for (const [name, rows, cols] of SHAPES) {
    const matrix = randomMatrix(type, rows, cols);
    const x = Float32Array.from({ length: cols }, (_, i) => Math.cos(i));
    const { one, many } = await compare(() => timeCalls(() => matrix.multiply(x, 1)));
    console.log(JSON.stringify({
      bench: "gemv-threads",
      shape: `${name} [${rows}, ${cols}] ${type}`,
      threads,
      raw,
      one_thread_us: round1(one),
      threads_us: round1(many),
      speedup: +(one / many).toFixed(2),
      loadavg: loadavg(),
    }));
    matrix.dispose();
  }
}
