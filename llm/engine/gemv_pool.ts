/**
 * Packed GEMV on several threads: a product's output rows split into contiguous ranges, each
 * range the same kernel call over the same shared weights. Decoding reads every weight once per
 * token, so one thread is bound by how fast one core widens and multiplies them or streams them
 * from memory; more cores add arithmetic and, where one core does not saturate the memory,
 * bandwidth (llama.cpp splits its rows across its threads the same way). Where a split does
 * not pay (see `runRows`), products stay on one thread.
 *
 * The pool holds threads − 1 workers (gemv_worker.ts): each instantiates the compiled kernel
 * module over every arena's shared WebAssembly memory (packed_matrix.ts announces arenas here
 * as they open and close). The hand-off goes through an Int32Array over a SharedArrayBuffer: the
 * main thread writes a job's arguments and bumps a generation counter (Atomics.notify); workers
 * wake from Atomics.wait. The rows are cut into a few chunks per thread, and every thread, the
 * main one included, claims the next chunk with a compare-and-swap until none is left: a worker
 * that wakes late (a busy machine) simply finds fewer chunks, instead of the main thread
 * waiting for its fixed share. The main thread then waits (a short spin, then Atomics.wait) for
 * the chunks others still run. No event loop is involved, so a hand-off costs microseconds,
 * where a postMessage round trip costs a fraction of a millisecond.
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

/** Chunks per thread a product is cut into (late threads then take fewer). */
const CHUNKS_PER_THREAD = 4;
/** At most this many chunks (the claim word keeps the next chunk's index in 8 bits). */
const MAX_CHUNKS = 255;

// The control block: Int32 slots of the SharedArrayBuffer shared with every worker.
/** Bumped once per job; workers wait for it to change. */
export const GENERATION = 0;
/** Counts workers that processed a message (their start, an arena opened or closed). */
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
/** Chunks the rows are cut into. */
export const CHUNKS = 12;
/**
 * The claim word: the job's generation (low 24 bits) above the next unclaimed chunk (8 bits),
 * so that a worker still holding the last job's arguments cannot claim a chunk of this one.
 */
export const CLAIM = 13;
/** Chunks of the current job finished (by whichever thread). */
export const FINISHED = 14;
/** Chunks run by workers since the pool started (tests check the workers took part). */
export const WORKER_CHUNKS = 15;
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

/** The claim word of a job of generation `generation` whose next free chunk is 0. */
export function claimWord(generation: number): number {
  return ((generation & 0xffffff) << 8) | 0;
}

/**
 * Claims and runs chunks of the job of `generation` until none is left (or a newer job has
 * replaced it); returns the first error a chunk threw. A failed chunk sets FAILED and still
 * counts as finished, both before the count, so that no thread waits for it forever and the
 * main thread sees the failure. Every thread runs this, the main one too (`worker` false).
 */
export function runChunks(
  control: Int32Array,
  generation: number,
  kernels: PackedKernelExports | undefined,
  job: RowJob,
  chunks: number,
  worker: boolean,
): { error?: unknown; ran: number } {
  const tag = generation & 0xffffff;
  let error: unknown;
  let ran = 0;
  for (;;) {
    const word = Atomics.load(control, CLAIM);
    const chunk = word & 0xff;
    if (word >>> 8 !== tag || chunk >= chunks) return { error, ran };
    if (Atomics.compareExchange(control, CLAIM, word, word + 1) !== word) continue;
    try {
      if (!kernels) throw new Error(`no kernel instance for arena ${control[ARENA]}`);
      const [first, count] = rowRange(job.rows, chunks, chunk);
      runRange(kernels, job, first, count);
      ran++;
      if (worker) Atomics.add(control, WORKER_CHUNKS, 1);
    } catch (thrown) {
      error ??= thrown;
      Atomics.store(control, FAILED, 1);
    }
    if (Atomics.add(control, FINISHED, 1) + 1 === chunks) Atomics.notify(control, FINISHED);
  }
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

  /**
   * The rows of `job` in `chunks` chunks, claimed by this thread and the workers alike, back
   * when all are done.
   */
  run(kernels: PackedKernelExports, arena: number, job: RowJob, chunks: number): void {
    const { args, control } = this;
    args[ARENA] = arena;
    args[W] = job.w;
    args[ROW_BYTES] = job.rowBytes;
    args[INPUT0] = job.inputs[0] ?? 0;
    args[INPUT1] = job.inputs[1] ?? 0;
    args[Y] = job.y;
    args[ROWS] = job.rows;
    args[WIDTH] = job.width;
    args[CHUNKS] = chunks;
    const generation = (Atomics.load(control, GENERATION) + 1) | 0;
    Atomics.store(control, CLAIM, claimWord(generation));
    Atomics.store(control, FINISHED, 0);
    this.post(KERNEL_IDS.indexOf(job.kernel));
    const own: { error?: unknown } = leaveRowsToWorkers
      ? {}
      : runChunks(control, generation, kernels, job, chunks, false);
    // Never return while workers still write into the arena, even when a chunk here threw.
    awaitCount(control, FINISHED, chunks, WORKER_TIMEOUT_MS, "finish a product");
    const failed = Atomics.exchange(control, FAILED, 0) !== 0;
    if (own.error !== undefined) throw own.error;
    if (failed) {
      throw new Error("packed GEMV: a worker thread's kernel failed (see its error above)");
    }
  }

  /** Chunks the workers have run since the pool started. */
  workerChunks(): number {
    return Atomics.load(this.control, WORKER_CHUNKS);
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
    awaitCount(this.control, DONE, target, timeoutMs, what);
  }
}

/**
 * Until control[slot] reaches `target`: a short spin (a chunk takes ~20–200 µs), then
 * Atomics.wait; throws saying the workers did not `what` when a wait times out.
 */
function awaitCount(
  control: Int32Array,
  slot: number,
  target: number,
  timeoutMs: number,
  what: string,
): void {
  let spins = 0;
  for (;;) {
    const now = Atomics.load(control, slot);
    if (now === target) return;
    if (++spins < MAIN_SPINS) continue;
    if (Atomics.wait(control, slot, now, timeoutMs) === "timed-out") {
      throw new Error(`packed GEMV: worker threads did not ${what} within ${timeoutMs} ms`);
    }
  }
}

/** Tests: the calling thread claims no chunks, so every row runs on a worker. */
let leaveRowsToWorkers = false;

/**
 * Tests only: with true the calling thread takes no rows of a split product (the workers run
 * them all), so a test sees what the workers compute; returns the previous setting.
 */
export function setLeaveRowsToWorkers(on: boolean): boolean {
  const previous = leaveRowsToWorkers;
  leaveRowsToWorkers = on;
  return previous;
}

/** Chunks of products the workers have run since they started (0 without workers). */
export function gemvWorkerChunks(): number {
  return pool?.workerChunks() ?? 0;
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
  timingRecords.clear();
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
 * The kernels of `instance` (over arena `arena`) with each call's rows split over the threads
 * by `runRows`: same signatures, same results. A Q8_0 row is blocks·34 bytes, a bf16 row
 * cols·2; q8Decode is split by blocks (any block boundary will do for a tile).
 */
export function splitKernels(instance: PackedKernelExports, arena: number): PackedKernelExports {
  return {
    ...instance,
    memory: instance.memory,
    q8Gemv(w, xq, xs, y, rows, blocks) {
      const job = { w, rowBytes: blocks * 34, inputs: [xq, xs], y, rows, width: blocks };
      runRows(instance, arena, { kernel: "q8Gemv", ...job });
    },
    bf16Gemv(w, x, y, rows, cols) {
      const job = { w, rowBytes: cols * 2, inputs: [x], y, rows, width: cols };
      runRows(instance, arena, { kernel: "bf16Gemv", ...job });
    },
    q8Decode(w, out, blocks) {
      const job = { w, rowBytes: 34, inputs: [], y: out, rows: blocks, width: 1 };
      runRows(instance, arena, { kernel: "q8Decode", ...job });
    },
  };
}

/**
 * y = W·x for `job`, over as many threads as the weights are worth (`MIN_BYTES_PER_THREAD`
 * per thread, at most one per row): the same kernel on every row, so the result is bit for bit
 * the one-thread result.
 *
 * Whether a split pays depends on the machine: a core's share of memory bandwidth, other jobs
 * on the cores (a descheduled worker holds up the product), BLAS threads spinning between
 * calls. So each kind and size class of product keeps the measured time per byte of both ways
 * (moving averages) and takes the faster, trying the other way every `EXPLORE_EVERY`-th time
 * so that the averages follow the machine as it changes.
 */
export function runRows(kernels: PackedKernelExports, arena: number, job: RowJob): void {
  const threads = failure === undefined ? requested : 1;
  // Bytes the job reads (and, decoding a tile, writes: 4 per value).
  const bytes = job.rows * (job.rowBytes + (job.kernel === "q8Decode" ? job.width * 128 : 0));
  const worth = minBytesPerThread > 0 ? Math.floor(bytes / minBytesPerThread) : Infinity;
  const parts = Math.min(threads, job.rows, worth);
  const workers = parts >= 2 && memories.has(arena) ? runningPool() : undefined;
  if (!workers) {
    runRange(kernels, job, 0, job.rows);
    return;
  }
  const record = timings(job.kernel, bytes);
  const split = !adaptive || leaveRowsToWorkers || chooseSplit(record);
  const start = performance.now();
  if (split) {
    workers.run(kernels, arena, job, Math.min(job.rows, MAX_CHUNKS, parts * CHUNKS_PER_THREAD));
  } else {
    runRange(kernels, job, 0, job.rows);
  }
  const perByte = (performance.now() - start) / bytes;
  const mean = split ? "split" : "single";
  record[mean] = Number.isNaN(record[mean])
    ? perByte
    : record[mean] + TIMING_SMOOTHING * (perByte - record[mean]);
}

/** Measured ms per byte of one kind and size class of product, on one thread and split. */
interface Timings {
  single: number;
  split: number;
  /** Products seen. */
  count: number;
}

/** The faster way by the averages, the other one every `EXPLORE_EVERY`-th product. */
function chooseSplit(record: Timings): boolean {
  const n = record.count++;
  // Both ways once each at first (their first products also pay for warming caches up).
  if (n < 4) return n % 2 === 1;
  const splitFaster = record.split < record.single;
  return n % EXPLORE_EVERY === 0 ? !splitFaster : splitFaster;
}

/** Whether products choose between one thread and a split (benches turn it off: always split). */
let adaptive = true;

/** Benches: false splits every product worth it, paying or not; returns the previous setting. */
export function setSplitAdaptation(on: boolean): boolean {
  const previous = adaptive;
  adaptive = on;
  timingRecords.clear();
  return previous;
}

/** Weight of the newest product in a moving average of its time per byte. */
const TIMING_SMOOTHING = 0.1;
/** Every this many products of a class take the way the averages do not prefer. */
const EXPLORE_EVERY = 16;
const timingRecords = new Map<string, Timings>();

/** The timings of `kernel`'s products of about `bytes` bytes (within a factor of two). */
function timings(kernel: RowKernel, bytes: number): Timings {
  const key = `${kernel} ${Math.floor(Math.log2(Math.max(1, bytes)))}`;
  let record = timingRecords.get(key);
  if (!record) timingRecords.set(key, record = { single: NaN, split: NaN, count: 0 });
  return record;
}
