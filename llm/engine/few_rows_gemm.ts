/**
 * Products x·Wᵀ with few rows of x (batched decoding: one token per row, 2–64 rows) split by
 * output columns between the calling thread and one helper thread, each running sgemm on ONE
 * BLAS thread.
 *
 * Why: at 8 rows OpenBLAS's own two threads gain nothing over one when the other core is free,
 * and lose half the speed when it is busy (a whole 124M decode step's products on the shared
 * 2-core VM: 92–106 ms on 2 threads, 55–70 ms on 1; bench/RESULTS.md, "Batched decode: few-row
 * products on a helper thread"), yet one thread leaves the second core idle while the step
 * streams 500 MB of weights. Splitting the weight's rows (the output columns) in chunks that both
 * threads claim from a shared counter uses both cores, and when the other core is busy (another
 * process), the calling thread simply claims the chunks the helper has not taken: it never waits
 * for a helper that is not running, only for a chunk already in progress.
 *
 * Values match the plain path up to float rounding: OpenBLAS's kernels sum in an order that
 * depends on the column range and thread count (its own 1- and 2-thread results already differ
 * in the last bits at 768 columns), so greedy tokens are compared, not bits; small products are
 * identical.
 *
 * The helper (few_rows_worker.ts) is a node:worker_threads Worker, unref'd so it never keeps
 * the process alive, that opens the same library: the threads meet in a SharedArrayBuffer
 * control block and pass the operands as raw pointers (the Float32Arrays stay alive on the
 * calling thread, which blocks until the product is complete).
 *
 * The control block: CLAIM = (job << 16) | next chunk; a thread claims chunk i by
 * compare-and-swap of CLAIM from i to i + 1 after reading the job's parameters, so a
 * parameter read that raced with the next job's posting fails the swap (the job number
 * changed). Between jobs CLAIM is closed (chunk 0xffff, more than any job has). FINISHED
 * counts the chunks done; the caller waits on it.
 */
import { Worker } from "node:worker_threads";
import type { Blas } from "./blas.ts";

// The control block's Int32 words (few_rows_worker.ts imports them).
export const CLAIM = 0;
export const FINISHED = 1;
export const CHUNKS = 2;
export const M = 3;
export const N = 4;
export const K = 5;
export const WIDTH = 6;
export const STOP = 7;
/** Chunks the helper has computed since it started (what `fewRowsStats` reports). */
export const HELPER_CHUNKS = 8;
export const CHUNK_BITS = 0xffff;
/** A CLAIM whose chunk index no job reaches: nothing can be claimed between jobs. */
const closed = (job: number) => (job << 16) | CHUNK_BITS;

/**
 * Rows (of x) at most for which the split path is used. Measured in decode steps of 124M under
 * load (4–6 on 2 cores), split vs BLAS's two threads: 2 rows 125 vs 137 ms, 4: 123 vs 165,
 * 16: 105 vs 195, 32: 373 vs 687, 64: 603 vs 734. Taller products (prefills) stay on BLAS's
 * threads, which pack x once for both (each chunk here packs it again).
 */
export const FEW_ROWS_MAX = 64;
/** Chunks per product: enough for the caller to take over a busy helper's share. */
const CHUNKS_PER_PRODUCT = 8;
/** Narrowest chunk, in output columns (a kernel call has its own fixed cost). */
const MIN_CHUNK_COLUMNS = 64;
/** How long the caller waits for a chunk in progress before declaring the helper dead. */
const HELPER_TIMEOUT_MS = 60_000;

/** A started helper thread and the control block it shares with the calling thread. */
export interface FewRowsHelper {
  /** Stops the helper thread (it finishes the chunk it is on). */
  close(): void;
}

interface Helper extends FewRowsHelper {
  blas: Blas;
  words: Int32Array;
  pointers: BigInt64Array;
  job: number;
  dead?: string;
}

let active: Helper | undefined;
let products = 0;

type StartResult = { ok: true; helper: FewRowsHelper } | { ok: false; reason: string };
/** A start in progress: a second caller meanwhile (two engines started at once) shares it. */
let starting: Promise<StartResult> | undefined;

/**
 * Starts the helper thread for `blas` (an OpenBLAS whose thread count can be set), or says why
 * not. Resolves once the helper has opened the library; the split path is used from then on.
 */
export function startFewRowsHelper(blas: Blas): Promise<StartResult> {
  starting ??= start(blas).finally(() => starting = undefined);
  return starting;
}

async function start(blas: Blas): Promise<StartResult> {
  const threads = blas.threads();
  if (active?.blas === blas && threads !== undefined && threads > 1) {
    return { ok: true, helper: active };
  }
  stopFewRowsHelper();
  if (threads === undefined) {
    return { ok: false, reason: "the BLAS library's threads are not settable" };
  }
  if (threads < 2) return { ok: false, reason: "BLAS runs on one thread" };
  const control = new SharedArrayBuffer(64 + 3 * 8);
  const words = new Int32Array(control, 0, 16);
  words[CLAIM] = closed(0);
  let worker: Worker;
  try {
    worker = new Worker(new URL("./few_rows_worker.ts", import.meta.url));
  } catch (error) {
    // e.g. no read permission for the worker's module: the plain path still works.
    return { ok: false, reason: `no helper thread: ${(error as Error).message ?? error}` };
  }
  const started = new Promise<{ ready: boolean; reason?: string }>((resolve) => {
    worker.once("message", resolve);
    worker.once("error", (error) => resolve({ ready: false, reason: String(error) }));
  });
  worker.postMessage({ library: blas.path, control });
  const answer = await started;
  // From now on it only sleeps in Atomics.wait: it must not keep the process alive.
  worker.unref();
  if (!answer.ready) {
    await worker.terminate();
    return { ok: false, reason: `helper thread failed: ${answer.reason}` };
  }
  const helper: Helper = {
    blas,
    words,
    pointers: new BigInt64Array(control, 64, 3),
    job: 0,
    close() {
      Atomics.store(words, STOP, 1);
      Atomics.store(words, CLAIM, closed(++helper.job & 0x7fff));
      Atomics.notify(words, CLAIM);
      if (active === helper) active = undefined;
    },
  };
  active = helper;
  return { ok: true, helper };
}

/** Stops the helper thread, if one runs; products then take the plain path. */
export function stopFewRowsHelper(): void {
  active?.close();
}

/**
 * out [m, n] = x [m, k] · wᵀ (w [n, k]), all row-major and tightly packed, split between this
 * thread and the helper. False (nothing computed) when there is no helper or m is outside
 * 2..FEW_ROWS_MAX: the caller then runs its plain sgemm.
 */
export function fewRowsProduct(
  x: Float32Array,
  w: Float32Array,
  out: Float32Array,
  m: number,
  n: number,
  k: number,
): boolean {
  const helper = active;
  if (!helper || m < 2 || m > FEW_ROWS_MAX || n === 0 || k === 0) return false;
  if (helper.dead) throw new Error(helper.dead);
  const { blas, words, pointers } = helper;
  const width = Math.max(MIN_CHUNK_COLUMNS, Math.ceil(n / CHUNKS_PER_PRODUCT));
  const chunks = Math.ceil(n / width);
  // Asked for one BLAS thread since the helper started: keep to one core.
  const threads = blas.threads();
  if (threads === undefined || threads < 2) return false;
  blas.setThreads(1);
  try {
    // Post the job (CLAIM is closed since the last one), then open it.
    const job = (++helper.job) & 0x7fff;
    words[M] = m;
    words[N] = n;
    words[K] = k;
    words[WIDTH] = width;
    pointers[0] = pointerOf(x);
    pointers[1] = pointerOf(w);
    pointers[2] = pointerOf(out);
    Atomics.store(words, FINISHED, 0);
    Atomics.store(words, CHUNKS, chunks);
    Atomics.store(words, CLAIM, job << 16);
    Atomics.notify(words, CLAIM);
    for (;;) {
      const claim = Atomics.load(words, CLAIM);
      const chunk = claim & CHUNK_BITS;
      if (chunk >= chunks) break;
      if (Atomics.compareExchange(words, CLAIM, claim, claim + 1) !== claim) continue;
      const first = chunk * width;
      const columns = Math.min(width, n - first);
      blas.sgemm(
        false,
        true,
        m,
        columns,
        k,
        1,
        x,
        k,
        w.subarray(first * k, (first + columns) * k),
        k,
        0,
        out.subarray(first, (m - 1) * n + first + columns),
        n,
      );
      Atomics.add(words, FINISHED, 1);
    }
    // Every chunk is claimed; wait for those the helper is still computing.
    const deadline = performance.now() + HELPER_TIMEOUT_MS;
    for (
      let done = Atomics.load(words, FINISHED);
      done < chunks;
      done = Atomics.load(words, FINISHED)
    ) {
      if (performance.now() > deadline) {
        helper.dead = `few-row products: the helper thread left a chunk unfinished for ` +
          `${HELPER_TIMEOUT_MS / 1000} s`;
        throw new Error(helper.dead);
      }
      Atomics.wait(words, FINISHED, done, 100);
    }
    Atomics.store(words, CLAIM, closed(job));
    products++;
  } finally {
    blas.setThreads(threads);
  }
  return true;
}

/**
 * Whether the helper runs, the products split since the process started, and the chunks the
 * helper thread computed (the rest the calling thread did): how much the second core took.
 */
export function fewRowsStats(): { helper: boolean; products: number; helperChunks: number } {
  return {
    helper: active !== undefined,
    products,
    helperChunks: active ? Atomics.load(active.words, HELPER_CHUNKS) : 0,
  };
}

function pointerOf(values: Float32Array): bigint {
  return BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(values)));
}
