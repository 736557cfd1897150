/**
 * Packed GEMV on several threads: a product's output rows split into contiguous ranges, one per
 * thread, each range the same kernel call over the same shared weights. Decoding reads every
 * weight once per token, so one thread is bound by how fast one core streams memory; a second
 * core doubles what can be read (llama.cpp splits its rows across its threads the same way).
 *
 * The pool holds threads − 1 workers (gemv_worker.ts): each instantiates the compiled kernel
 * module over every arena's shared WebAssembly memory (packed_matrix.ts announces arenas here
 * as they open and close). The main thread computes the first range itself. The hand-off goes
 * through an Int32Array over a SharedArrayBuffer: the main thread writes a job's arguments and
 * bumps a generation counter (Atomics.notify); workers, spinning briefly and then blocked in
 * Atomics.wait, run their range and count themselves done; the main thread spins briefly on
 * the done counter, then waits for it. No event loop is involved, so a hand-off costs
 * microseconds, where a postMessage round trip costs a fraction of a millisecond.
 *
 * Workers are `node:worker_threads` Workers, unref'd: unlike Web Workers in Deno they do not
 * keep the process alive, so a CLI run ends by itself and tests need not stop the pool.
 * Wherever workers cannot start (no Worker, no shared memory), products stay on one thread.
 */
import { Worker } from "node:worker_threads";
import { type PackedKernelExports, packedKernelModule } from "./wasm/packed_kernels.ts";

/**
 * The row kernels a job may name: the GEMVs take (w, inputs..., y, rows, width) and write one
 * float32 per row; q8Decode(w, out, blocks) writes a row's width·32 float32 values (a tile of
 * a prompt's product).
 */
export type RowKernel = "q8Gemv" | "bf16Gemv" | "q8Decode";

/**
 * One job for `runRows`, row r computed as kernel(w + r·rowBytes, inputs, y + r·(bytes of an
 * output row), 1, width).
 */
export interface RowJob {
  kernel: RowKernel;
  /** Byte offset of row 0 of the weights. */
  w: number;
  rowBytes: number;
  /** Byte offsets of the prepared input (q8Gemv: the int16 parts and the scales; bf16Gemv: x). */
  inputs: readonly number[];
  /** Byte offset of y[0] (float32). */
  y: number;
  rows: number;
  /** The kernel's last argument: blocks per row (q8Gemv, q8Decode) or columns (bf16Gemv). */
  width: number;
}

/**
 * Bytes of weights below which a range is not worth a thread. The hand-off (notify, the worker
 * wakes, answers, this thread sees it) takes 8–20 µs here, while one core runs the Q8_0 GEMV at
 * ~6 MB/ms, so a 256 KiB range (~40 µs) still gains and smaller ones barely do
 * (bench/gemv_threads.ts).
 */
export const MIN_BYTES_PER_THREAD = 1 << 18;
let minBytesPerThread = MIN_BYTES_PER_THREAD;

/**
 * Sets the weight bytes a thread must get before a product is split (tests split tiny matrices
 * with 0; benches measure the hand-off); returns the previous value.
 */
export function setMinBytesPerThread(bytes: number): number {
  const previous = minBytesPerThread;
  minBytesPerThread = bytes;
  return previous;
}

// The control block: Int32 slots of the SharedArrayBuffer shared with every worker.
/** Bumped once per job; workers wait for it to change. */
export const GENERATION = 0;
/** Counts workers that finished a job (or processed a message). */
export const DONE = 1;
/** Set by a worker whose kernel threw. */
export const FAILED = 2;
/** What the job is: an index into KERNEL_IDS, or MAIL / EXIT. */
export const KIND = 3;
export const ARENA = 4;
export const W = 5;
export const ROW_BYTES = 6;
export const INPUT0 = 7;
export const INPUT1 = 8;
export const Y = 9;
export const ROWS = 10;
export const WIDTH = 11;
/** Ranges the rows are split into (worker i takes range i; workers past it just answer). */
export const PARTS = 12;
export const CONTROL_SLOTS = 16;
export const KERNEL_IDS: readonly RowKernel[] = ["q8Gemv", "bf16Gemv", "q8Decode"];
/** Leave the wait loop and read the pending message (an arena opened or closed). */
export const MAIL = 100;
/** Leave the wait loop for good. */
export const EXIT = 101;

/** Rows [first, first + count) of range `part` of `parts`: contiguous, sizes within one. */
export function rowRange(rows: number, parts: number, part: number): [number, number] {
  const first = Math.floor((part * rows) / parts);
  return [first, Math.floor(((part + 1) * rows) / parts) - first];
}

/** Calls the job's kernel on rows [first, first + count). */
export function runRange(
  kernels: PackedKernelExports,
  job: RowJob,
  first: number,
  count: number,
): void {
  if (count === 0) return;
  const w = job.w + first * job.rowBytes;
  if (job.kernel === "q8Gemv") {
    kernels.q8Gemv(w, job.inputs[0], job.inputs[1], job.y + first * 4, count, job.width);
  } else if (job.kernel === "bf16Gemv") {
    kernels.bf16Gemv(w, job.inputs[0], job.y + first * 4, count, job.width);
  } else {
    kernels.q8Decode(w, job.y + first * job.width * 128, count * job.width);
  }
}

/** What the main thread sends a worker: memories to adopt (id → memory), ids to forget. */
export interface WorkerMail {
  module?: WebAssembly.Module;
  adopt?: [number, WebAssembly.Memory][];
  forget?: number[];
}

/** Spins on the done counter before blocking (a range of a GPT-2 matrix takes ~20–200 µs). */
const MAIN_SPINS = 2_000;
/** How long a worker may stay silent before the product is declared failed. */
const WORKER_TIMEOUT_MS = 60_000;
/** How long starting the workers may take before the pool gives up (one thread then). */
const START_TIMEOUT_MS = 10_000;

class GemvPool {
  private readonly control = new Int32Array(new SharedArrayBuffer(CONTROL_SLOTS * 4));
  /** The same slots unsigned: byte offsets above 2 GiB. */
  private readonly args = new Uint32Array(this.control.buffer);
  private readonly workers: Worker[] = [];
  private done = 0;

  constructor(readonly threads: number, module: WebAssembly.Module) {
    const adopt = [...memories];
    try {
      for (let index = 1; index < threads; index++) {
        const worker = new Worker(new URL("./gemv_worker.ts", import.meta.url), {
          workerData: { control: this.control.buffer, index },
        });
        worker.unref();
        this.workers.push(worker);
        worker.postMessage({ module, adopt } satisfies WorkerMail);
      }
      // Each worker answers its first message once it holds its instances.
      this.waitForWorkers(START_TIMEOUT_MS, "start");
    } catch (error) {
      this.close();
      throw error;
    }
  }

  /** Sends `mail` to every worker and waits until each has read it. */
  mail(mail: WorkerMail): void {
    for (const worker of this.workers) worker.postMessage(mail);
    this.post(MAIL);
    this.waitForWorkers(WORKER_TIMEOUT_MS, "read a message");
  }

  /** The rows of `job` over `parts` threads (this one takes range 0), back when all are done. */
  run(kernels: PackedKernelExports, arena: number, job: RowJob, parts: number): void {
    const { args } = this;
    args[ARENA] = arena;
    args[W] = job.w;
    args[ROW_BYTES] = job.rowBytes;
    args[INPUT0] = job.inputs[0] ?? 0;
    args[INPUT1] = job.inputs[1] ?? 0;
    args[Y] = job.y;
    args[ROWS] = job.rows;
    args[WIDTH] = job.width;
    args[PARTS] = parts;
    this.post(KERNEL_IDS.indexOf(job.kernel));
    const [first, count] = rowRange(job.rows, parts, 0);
    try {
      runRange(kernels, job, first, count);
    } finally {
      // Never return while workers still write into the arena, even when this range threw.
      this.waitForWorkers(WORKER_TIMEOUT_MS, "finish a product");
    }
    if (Atomics.exchange(this.control, FAILED, 0) !== 0) {
      throw new Error("packed GEMV: a worker thread's kernel failed (see its error above)");
    }
  }

  /** Stops the workers (they leave their loop; terminate then ends the threads). */
  close(): void {
    this.post(EXIT);
    for (const worker of this.workers) void worker.terminate();
  }

  private post(kind: number): void {
    this.args[KIND] = kind;
    Atomics.add(this.control, GENERATION, 1);
    Atomics.notify(this.control, GENERATION);
  }

  /** Until every worker has counted itself done once more. */
  private waitForWorkers(timeoutMs: number, what: string): void {
    const target = (this.done + this.workers.length) | 0;
    this.done = target;
    const { control } = this;
    let spins = 0;
    for (;;) {
      const now = Atomics.load(control, DONE);
      if (now === target) return;
      if (++spins < MAIN_SPINS) continue;
      if (Atomics.wait(control, DONE, now, timeoutMs) === "timed-out") {
        throw new Error(`packed GEMV: worker threads did not ${what} within ${timeoutMs} ms`);
      }
    }
  }
}

/** Arenas' memories by id, for workers started later and for announcements. */
const memories = new Map<number, WebAssembly.Memory>();
let nextArenaId = 1;
/** Threads asked for by `setGemvThreads`. */
let requested = 1;
/** The workers, started by the first product worth splitting. */
let pool: GemvPool | undefined;
/** Why the workers could not start (then products stay on one thread). */
let failure: string | undefined;

/**
 * Threads for packed GEMV from now on (the engine passes its BLAS thread count; 1, the default,
 * means no workers). The workers start with the first product worth splitting, so a process
 * that never multiplies packed weights never starts them; where they cannot start, products
 * stay on one thread (`gemvThreadsError` says why).
 */
export function setGemvThreads(threads: number): void {
  const n = Math.max(1, Math.floor(threads));
  if (n === requested) return;
  requested = n;
  pool?.close();
  pool = undefined;
  failure = undefined;
}

/** The running pool, started if threads were asked for and it is not running yet. */
function runningPool(): GemvPool | undefined {
  if (requested < 2 || failure !== undefined) return undefined;
  if (!pool) {
    try {
      const compiled = packedKernelModule();
      if (!compiled) throw new Error("no WebAssembly SIMD");
      if (!compiled.shared) throw new Error("no shared WebAssembly memory");
      // Deno lets the main thread block in Atomics.wait; browsers' main threads throw here.
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 1, 0);
      pool = new GemvPool(requested, compiled.module);
    } catch (error) {
      failure = (error as Error).message;
    }
  }
  return pool;
}

/**
 * Threads packed GEMV runs on: those asked for, once the workers are running (this starts
 * them), or 1 where they could not start.
 */
export function gemvThreads(): number {
  return runningPool()?.threads ?? 1;
}

/** Why the workers asked for by `setGemvThreads` are not running, or undefined. */
export function gemvThreadsError(): string | undefined {
  return failure;
}

/** Announces an arena's memory to the workers; the id names it in `runRows` and `closeArena`. */
export function openArena(memory: WebAssembly.Memory): number {
  const id = nextArenaId++;
  memories.set(id, memory);
  pool?.mail({ adopt: [[id, memory]] });
  return id;
}

/** The workers drop their instances over arena `id` (its matrices are all disposed). */
export function closeArena(id: number): void {
  if (!memories.delete(id)) return;
  pool?.mail({ forget: [id] });
}

/**
 * y = W·x for `job`, over as many threads as the weights are worth (`MIN_BYTES_PER_THREAD`
 * per thread, at most one per row): the same kernel on every row, so the result is bit for bit
 * the one-thread result.
 */
export function runRows(kernels: PackedKernelExports, arena: number, job: RowJob): void {
  const threads = failure === undefined ? requested : 1;
  // Bytes the job reads (and, decoding a tile, writes: 4 per value).
  const bytes = job.rows * (job.rowBytes + (job.kernel === "q8Decode" ? job.width * 128 : 0));
  const worth = minBytesPerThread > 0 ? Math.floor(bytes / minBytesPerThread) : Infinity;
  const parts = Math.min(threads, job.rows, worth);
  const workers = parts >= 2 && memories.has(arena) ? runningPool() : undefined;
  if (workers) workers.run(kernels, arena, job, parts);
  else runRange(kernels, job, 0, job.rows);
}
