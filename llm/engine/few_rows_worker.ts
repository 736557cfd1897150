/**
 * The helper thread of few_rows_gemm.ts: it opens the same BLAS library, then takes column
 * chunks of the product the main thread posts in the shared control block and computes them
 * with sgemm on one BLAS thread, until told to stop. The protocol (which word means what, and
 * why a chunk is claimed by compare-and-swap) is described in few_rows_gemm.ts.
 *
 * A worker loads its own module graph: this one imports only blas.ts's CBLAS constants and
 * signature and few_rows_gemm.ts's control words (neither pulls in tfjs).
 */
import { parentPort } from "node:worker_threads";
import { CBLAS_NO_TRANS, CBLAS_ROW_MAJOR, CBLAS_TRANS, sgemmSignature } from "./blas.ts";
import {
  CHUNK_BITS,
  CHUNKS,
  CLAIM,
  FINISHED,
  HELPER_CHUNKS,
  K,
  M,
  N,
  STOP,
  WIDTH,
} from "./few_rows_gemm.ts";

interface Start {
  library: string;
  control: SharedArrayBuffer;
}

parentPort!.once("message", ({ library, control }: Start) => {
  let lib;
  try {
    lib = Deno.dlopen(
      library,
      {
        cblas_sgemm: sgemmSignature("pointer"),
      },
    );
  } catch (error) {
    parentPort!.postMessage({ ready: false, reason: String(error) });
    return;
  }
  parentPort!.postMessage({ ready: true });
  const sgemm = lib.symbols.cblas_sgemm;
  const words = new Int32Array(control, 0, 16);
  const pointers = new BigInt64Array(control, 64, 3);
  for (;;) {
    const claim = Atomics.load(words, CLAIM);
    if (Atomics.load(words, STOP)) break;
    const chunk = claim & CHUNK_BITS;
    if (chunk >= Atomics.load(words, CHUNKS)) {
      // Nothing left to take: sleep until the main thread posts a product (or stops us).
      Atomics.wait(words, CLAIM, claim);
      continue;
    }
    const [m, n, k, width] = [words[M], words[N], words[K], words[WIDTH]];
    const [x, w, c] = [pointers[0], pointers[1], pointers[2]];
    // The parameters read above belong to this claim only if the claim word is unchanged.
    if (Atomics.compareExchange(words, CLAIM, claim, claim + 1) !== claim) continue;
    const first = chunk * width;
    const columns = Math.min(width, n - first);
    sgemm(
      CBLAS_ROW_MAJOR,
      CBLAS_NO_TRANS,
      CBLAS_TRANS,
      m,
      columns,
      k,
      1,
      Deno.UnsafePointer.create(x),
      k,
      Deno.UnsafePointer.create(w + BigInt(first * k * 4)),
      k,
      0,
      Deno.UnsafePointer.create(c + BigInt(first * 4)),
      n,
    );
    Atomics.add(words, HELPER_CHUNKS, 1);
    Atomics.add(words, FINISHED, 1);
    Atomics.notify(words, FINISHED);
  }
  lib.close();
});
