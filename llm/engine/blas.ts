/**
 * A BLAS library reached through Deno's FFI: just enough of CBLAS for matrix products.
 *
 * Why: TensorFlow.js's pure-JS `cpu` kernels multiply matrices at about 1 GFLOP/s; OpenBLAS
 * (Linux) or Accelerate (macOS) does the same work two orders of magnitude faster. Arguments
 * are the tensors' own Float32Arrays, passed as `buffer` parameters, so nothing is copied.
 *
 * Search order: `options.path`, then the `GROUNDUP_BLAS` environment variable (a path or a
 * library name), then the usual names and places of each platform. Failure is not an error:
 * `loadBlas` says why, and the caller falls back to plain tfjs.
 */

/** Row-major storage, the layout of every tfjs tensor (CBLAS_ORDER). */
export const CBLAS_ROW_MAJOR = 101;
/** CBLAS_TRANSPOSE values. */
export const CBLAS_NO_TRANS = 111;
export const CBLAS_TRANS = 112;

/**
 * The FFI signature of cblas_sgemm(order, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta,
 * C, ldc), its matrices passed as `matrices`: "buffer" (typed arrays, this thread) or "pointer"
 * (raw addresses, a helper thread computing into the caller's arrays).
 */
export function sgemmSignature<T extends "buffer" | "pointer">(matrices: T) {
  return {
    parameters: [
      "i32",
      "i32",
      "i32",
      "i32",
      "i32",
      "i32",
      "f32",
      matrices,
      "i32",
      matrices,
      "i32",
      "f32",
      matrices,
      "i32",
    ],
    result: "void",
  } as const;
}

/** Where the library is looked for, most specific first (a bare name lets the loader search). */
const CANDIDATES: Record<string, string[]> = {
  linux: [
    // Debian/Ubuntu `libopenblas0-pthread` (and -openmp / -serial via the alternatives system)
    "libopenblas.so.0",
    "/usr/lib/x86_64-linux-gnu/libopenblas.so.0",
    "/usr/lib/aarch64-linux-gnu/libopenblas.so.0",
    "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0",
    "/usr/lib/aarch64-linux-gnu/openblas-pthread/libopenblas.so.0",
    // Fedora / Arch / hand-built
    "/usr/lib64/libopenblas.so.0",
    "/usr/lib64/libopenblasp.so.0",
    "/usr/local/lib/libopenblas.so.0",
    "/opt/OpenBLAS/lib/libopenblas.so.0",
    "libopenblas.so",
    // Whatever the system BLAS alternative points to (OpenBLAS, BLIS, or the slow reference BLAS)
    "libblas.so.3",
    "libcblas.so.3",
  ],
  darwin: [
    "/System/Library/Frameworks/Accelerate.framework/Accelerate",
    "/opt/homebrew/opt/openblas/lib/libopenblas.dylib",
    "/usr/local/opt/openblas/lib/libopenblas.dylib",
  ],
  windows: ["libopenblas.dll", "openblas.dll"],
};

const SYMBOLS = {
  cblas_sgemm: sgemmSignature("buffer"),
  // void cblas_sgemv(order, trans, M, N, alpha, A, lda, X, incX, beta, Y, incY)
  cblas_sgemv: {
    parameters: [
      "i32",
      "i32",
      "i32",
      "i32",
      "f32",
      "buffer",
      "i32",
      "buffer",
      "i32",
      "f32",
      "buffer",
      "i32",
    ],
    result: "void",
    optional: true,
  },
  // OpenBLAS extras; absent from Accelerate and the reference BLAS.
  openblas_set_num_threads: { parameters: ["i32"], result: "void", optional: true },
  openblas_get_num_threads: { parameters: [], result: "i32", optional: true },
  openblas_get_config: { parameters: [], result: "pointer", optional: true },
  openblas_get_corename: { parameters: [], result: "pointer", optional: true },
} as const satisfies Deno.ForeignLibraryInterface;

/** A loaded BLAS library. All matrices are row-major Float32Arrays (views are fine). */
export interface Blas {
  /** The name or path that was opened. */
  readonly path: string;
  /** A human-readable description, e.g. "OpenBLAS 0.3.21 DYNAMIC_ARCH ... Zen (core Zen)". */
  readonly description: string;
  /**
   * C = alpha · op(A) · op(B) + beta · C, row-major. op(A) is M×K, op(B) is K×N, C is M×N.
   * lda/ldb/ldc are the row strides of A, B, C as stored (so for transA, A is stored K×M).
   */
  sgemm(
    transA: boolean,
    transB: boolean,
    m: number,
    n: number,
    k: number,
    alpha: number,
    a: Float32Array,
    lda: number,
    b: Float32Array,
    ldb: number,
    beta: number,
    c: Float32Array,
    ldc: number,
  ): void;
  /** Threads BLAS uses, or undefined where the library does not say (Accelerate). */
  threads(): number | undefined;
  /** Ask for n threads; false where the library has no such control. */
  setThreads(n: number): boolean;
  /** Unload the library. Any kernel still holding this object must not be called afterwards. */
  close(): void;
}

export type BlasLoadResult = { ok: true; blas: Blas } | { ok: false; reason: string };

export interface LoadBlasOptions {
  /** Library path or name to try first (before GROUNDUP_BLAS and the default list). */
  path?: string;
  /** Threads to ask OpenBLAS for (default: OpenBLAS's own choice, usually the core count). */
  threads?: number;
}

/** The library names and paths `loadBlas` tries, in order, on this platform. */
export function blasCandidates(options: LoadBlasOptions = {}): string[] {
  const fromEnv = readEnv("GROUNDUP_BLAS");
  const explicit = [options.path, fromEnv].filter((p): p is string => !!p);
  return [...explicit, ...(CANDIDATES[Deno.build.os] ?? [])];
}

/**
 * Open the first BLAS library that exports `cblas_sgemm`. Never throws: without `--allow-ffi`
 * or without any library, the result says why.
 */
export function loadBlas(options: LoadBlasOptions = {}): BlasLoadResult {
  if (typeof Deno?.dlopen !== "function") {
    return { ok: false, reason: "this runtime has no Deno.dlopen" };
  }
  if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") {
    return { ok: false, reason: "no FFI permission (run with --allow-ffi or -A)" };
  }
  const explicit = options.path ?? readEnv("GROUNDUP_BLAS");
  const failures: string[] = [];
  for (const candidate of blasCandidates(options)) {
    let lib: Deno.DynamicLibrary<typeof SYMBOLS>;
    try {
      lib = Deno.dlopen(candidate, SYMBOLS);
    } catch (error) {
      failures.push(`${candidate}: ${firstLine(error)}`);
      // A path the user named explicitly must work; silently using another library would hide
      // a typo or a broken install.
      if (candidate === explicit) {
        return { ok: false, reason: `cannot open BLAS library ${candidate}: ${firstLine(error)}` };
      }
      continue;
    }
    const blas = wrap(candidate, lib);
    if (options.threads !== undefined) blas.setThreads(options.threads);
    return { ok: true, blas };
  }
  return {
    ok: false,
    reason: `no BLAS library with cblas_sgemm found (tried ${failures.length}: ` +
      `${failures.slice(0, 3).join("; ")}${failures.length > 3 ? "; ..." : ""}); ` +
      `install libopenblas0-pthread or set GROUNDUP_BLAS=/path/to/libopenblas.so`,
  };
}

function wrap(path: string, lib: Deno.DynamicLibrary<typeof SYMBOLS>): Blas {
  const s = lib.symbols;
  const cString = (ptr: Deno.PointerValue | undefined) =>
    ptr ? Deno.UnsafePointerView.getCString(ptr) : undefined;
  const config = cString(s.openblas_get_config?.());
  const core = cString(s.openblas_get_corename?.());
  const description = config
    ? `${config}${core && !config.includes(core) ? ` (core ${core})` : ""}`
    : path.includes("Accelerate")
    ? "Apple Accelerate"
    : `BLAS ${path}`;
  let closed = false;
  return {
    path,
    description,
    sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) {
      if (closed) throw new Error(`BLAS library ${path} was closed; cannot call sgemm`);
      if (m === 1 && !transA && s.cblas_sgemv) {
        // One row (a token at a time in generation): sgemm would pack B, a copy of the whole
        // weight matrix per call; sgemv streams it once (3–6× faster at GPT-2's shapes).
        // C = alpha·B·aᵀ (B stored N×K) or alpha·Bᵀ·aᵀ (B stored K×N), + beta·C.
        s.cblas_sgemv(
          CBLAS_ROW_MAJOR,
          transB ? CBLAS_NO_TRANS : CBLAS_TRANS,
          transB ? n : k,
          transB ? k : n,
          alpha,
          b,
          ldb,
          a,
          1,
          beta,
          c,
          1,
        );
        return;
      }
      s.cblas_sgemm(
        CBLAS_ROW_MAJOR,
        transA ? CBLAS_TRANS : CBLAS_NO_TRANS,
        transB ? CBLAS_TRANS : CBLAS_NO_TRANS,
        m,
        n,
        k,
        alpha,
        a,
        lda,
        b,
        ldb,
        beta,
        c,
        ldc,
      );
    },
    threads: () => s.openblas_get_num_threads?.() ?? undefined,
    setThreads(n: number) {
      if (!s.openblas_set_num_threads) return false;
      s.openblas_set_num_threads(Math.max(1, Math.floor(n)));
      return true;
    },
    close() {
      if (closed) return;
      closed = true;
      lib.close();
    },
  };
}

function readEnv(name: string): string | undefined {
  // Without --allow-env, behave as if unset rather than prompting or throwing.
  if (Deno.permissions.querySync({ name: "env", variable: name }).state !== "granted") {
    return undefined;
  }
  return Deno.env.get(name) || undefined;
}

function firstLine(error: unknown): string {
  return String(error instanceof Error ? error.message : error).split("\n")[0];
}
