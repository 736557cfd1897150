/**
 * One worker thread of the packed GEMV pool (gemv_pool.ts): instances of the kernel module over
 * the arenas' shared memories, and a loop that waits on the control block for a job and claims
 * chunks of its rows until none is left.
 *
 * Messages (arenas opened or closed) arrive through the event loop, which the wait loop blocks:
 * the main thread posts the message, then a MAIL job that ends the loop; the message handler
 * takes the message, answers on the done counter and enters the loop again.
 */
import { parentPort, workerData } from "node:worker_threads";
import {
  ARENA,
  CHUNKS,
  DONE,
  EXIT,
  GENERATION,
  INPUT0,
  INPUT1,
  KERNEL_IDS,
  KIND,
  MAIL,
  ROW_BYTES,
  ROWS,
  runChunks,
  W,
  WIDTH,
  type WorkerMail,
  Y,
} from "./gemv_pool.ts";
import { type PackedKernelExports, packedKernelsOver } from "./wasm/packed_kernels.ts";

/** Spins on the generation before blocking: the next product of a token follows within µs. */
const WORKER_SPINS = 0;

const { control: buffer, index } = workerData as { control: SharedArrayBuffer; index: number };
const control = new Int32Array(buffer);
const args = new Uint32Array(buffer);
const instances = new Map<number, PackedKernelExports>();
let module: WebAssembly.Module | undefined;
/** The generation of the last job taken (the pool starts at 0). */
let seen = 0;

function answer(): void {
  Atomics.add(control, DONE, 1);
  Atomics.notify(control, DONE);
}

/** Runs jobs until a MAIL (returns to read it) or an EXIT (returns for good). */
function serve(): void {
  for (;;) {
    let spins = 0;
    let now: number;
    while ((now = Atomics.load(control, GENERATION)) === seen) {
      if (++spins > WORKER_SPINS) Atomics.wait(control, GENERATION, seen);
    }
    seen = now;
    const kind = args[KIND];
    if (kind === MAIL) return;
    // EXIT: out of the wait, so that the pool's terminate() can end the thread.
    if (kind === EXIT) return;
    const job = {
      kernel: KERNEL_IDS[kind],
      w: args[W],
      rowBytes: args[ROW_BYTES],
      inputs: [args[INPUT0], args[INPUT1]],
      y: args[Y],
      rows: args[ROWS],
      width: args[WIDTH],
    };
    const kernels = instances.get(args[ARENA]);
    const { error } = runChunks(control, seen, kernels, job, args[CHUNKS], true);
    if (error !== undefined) console.error(`packed GEMV worker ${index}:`, error);
  }
}

parentPort!.on("message", (mail: WorkerMail) => {
  module = mail.module ?? module;
  for (const [id, memory] of mail.adopt ?? []) {
    instances.set(id, packedKernelsOver(module!, memory));
  }
  for (const id of mail.forget ?? []) instances.delete(id);
  answer();
  serve();
});
