/**
 * Matrix–vector products that read low-precision weights where they lie: Q8_0 blocks (GGUF's
 * layout: an fp16 scale then 32 int8 values, 34 bytes) and bf16 rows, each output row a dot
 * product with one float32 input row. Decoding multiplies every weight once per token, so the
 * cost is in reading and widening the weights, not in the arithmetic: a Q8_0 weight is 1.06
 * bytes where fp32 is 4.
 *
 * Q8_0 × activations: as in llama.cpp's CPU backend, the input row is quantized to Q8_0 as well
 * (packed_matrix.ts `quantizeActivationsQ8_0`: per block of 32, an fp16 scale and int8 values),
 * and each block's dot product is exact integer arithmetic, scaled by the float32 product of
 * the two fp16 scales and summed in float32: ggml's vec_dot_q8_0_q8_0 up to summation order.
 * Where the engine has relaxed SIMD (Deno 2's V8 does) the integer products are
 * i32x4.relaxed_dot_i8x16_i7x16_add_s, 16 weights an instruction, used only within its exact
 * range (the input as magnitudes 0–127 and signs); elsewhere i32x4.dot_i16x8_s over weights
 * sign-extended as they are loaded, 8 weights an instruction. Both give the same sums.
 * bf16 needs no arithmetic to widen: its bits are a float32's upper half, so a byte shuffle
 * with zeros makes four float32 lanes.
 *
 * The module is assembled at start-up by encoder.ts; its memory holds the weights themselves
 * (see packed_matrix.ts: each arena is one instance), so a call copies only the input and
 * output rows. The memory is imported and shared, so worker threads hold instances over the same
 * weights and split a product's rows (gemv_pool.ts).
 */
import { buildModule, FunctionBuilder } from "./encoder.ts";

/** 2^112: an fp16's exponent field shifted 13 bits up is a float32's, off by 2^-112. */
const HALF_EXPONENT_FIX = 2 ** 112;

type Local = ReturnType<FunctionBuilder["local"]>;

/** How the Q8_0 GEMV is unrolled (the benchmark tries several; the module uses the default). */
export interface Q8GemvShape {
  /** Output rows computed together, sharing each block's input loads. */
  rowsPerStep: number;
  /** With one row per step: four blocks per iteration, their four scales computed as a vector. */
  groupBlocks: boolean;
  /**
   * The integer products by relaxed SIMD's i32x4.relaxed_dot_i8x16_i7x16_add_s (16 weights an
   * instruction) over the input as magnitudes and signs (`Q8InputLayout` "magnitude-sign"),
   * instead of i32x4.dot_i16x8_s over the input widened to int16 ("int16").
   */
  relaxedDot: boolean;
}

/**
 * How q8Gemv wants the input's int8 values q, 64 bytes per block of 32: "int16", each widened to
 * int16; "magnitude-sign", the 32 bytes |q| then 32 bytes of 0x00 (q ≥ 0) or 0xff (q < 0).
 */
export type Q8InputLayout = "int16" | "magnitude-sign";

/** Whether this engine validates a module using relaxed SIMD's dot product (Deno 2's V8 does). */
function hasRelaxedDot(): boolean {
  const f = new FunctionBuilder("probe", ["i32"], ["v128"]);
  f.get(f.param(0)).v128Load().get(f.param(0)).v128Load().get(f.param(0)).v128Load();
  f.i32x4RelaxedDotI8x16I7x16AddS();
  try {
    return WebAssembly.validate(buildModule([f]));
  } catch {
    return false;
  }
}

export const Q8_GEMV_SHAPE: Q8GemvShape = {
  rowsPerStep: 1,
  groupBlocks: true,
  relaxedDot: hasRelaxedDot(),
};

/** The input layout the module's q8Gemv reads. */
export const Q8_INPUT_LAYOUT: Q8InputLayout = Q8_GEMV_SHAPE.relaxedDot ? "magnitude-sign" : "int16";

/** Pushes the float32 value of the fp16 scale at `address` (finite values and subnormals). */
function emitHalfScale(f: FunctionBuilder, address: Local, h: Local): void {
  f.get(address).i32Load16U().set(h);
  f.get(h).i32Const(0x7fff).i32And().i32Const(13).i32Shl();
  f.get(h).i32Const(0x8000).i32And().i32Const(16).i32Shl().i32Or().f32ReinterpretI32();
  f.f32Const(HALF_EXPONENT_FIX).f32Mul();
}

/**
 * Pushes Σ_j q_w[j] · q_x[j] over one block as four i32 lanes: the weights at wp + at (after
 * the 2-byte scale), the input's four vectors (its 64 bytes) either in locals or loaded from
 * xp + xAt. `relaxed`: the input is |q_x| then the sign masks, the signs move onto the weights
 * ((w ^ m) − m is −w where m = −1), and w·sign · |q_x| is the relaxed dot product (|q_x| ≤ 127:
 * its exact range; |w| ≤ 127 too, as every Q8_0 quantizer writes them).
 */
function emitBlockDot(
  f: FunctionBuilder,
  wp: Local,
  at: number,
  x: Local[] | { xp: Local; xAt: number },
  relaxed: { part: Local } | null,
): void {
  const pushX = (k: number) => {
    if (Array.isArray(x)) f.get(x[k]);
    else f.get(x.xp).v128Load(x.xAt + 16 * k);
  };
  if (relaxed) {
    for (const half of [0, 1]) {
      f.get(wp).v128Load(at + 2 + 16 * half);
      pushX(2 + half);
      f.v128Xor();
      pushX(2 + half);
      f.i8x16Sub();
      pushX(half);
      if (half === 0) f.i32x4Const(0, 0, 0, 0);
      else f.get(relaxed.part);
      f.i32x4RelaxedDotI8x16I7x16AddS();
      if (half === 0) f.set(relaxed.part);
    }
    return;
  }
  const pushProduct = (k: number) => {
    f.get(wp).v128Load8x8S(at + 2 + 8 * k);
    pushX(k);
    f.i32x4DotI16x8S();
  };
  // Four products of 8, summed as a tree.
  pushProduct(0);
  pushProduct(1);
  f.i32x4Add();
  pushProduct(2);
  pushProduct(3);
  f.i32x4Add().i32x4Add();
}

/** i32x4 lanes picked from two vectors (0–3 the first, 4–7 the second) as a byte shuffle. */
function i32Lanes(lanes: number[]): number[] {
  return lanes.flatMap((lane) => [0, 1, 2, 3].map((b) => lane * 4 + b));
}

/**
 * q8Gemv(w, xq, xs, y, rows, blocks): y[o] = Σ_b (d_w[o,b] · xs[b]) · Σ_j q_w[o,b,j] · xq[b,j],
 * llama.cpp's Q8_0 × Q8_0 dot product: w the rows' Q8_0 blocks (`blocks` per row, 34 bytes
 * each), xq the input's int8 values (64 bytes per block, as `Q8InputLayout` says), xs the
 * input's block scales as float32 (fp16 values). Each block's sum is exact integer arithmetic;
 * its scale is the float32 product of the two fp16 scales; the blocks are summed in float32
 * (four lanes, one block each in turn). Rows are
 * independent: (w + first·34·blocks, xq, xs, y + 4·first, count) computes rows first.. alone.
 */
export function q8GemvBuilder(shape: Q8GemvShape = Q8_GEMV_SHAPE): FunctionBuilder {
  const f = new FunctionBuilder("q8Gemv", ["i32", "i32", "i32", "i32", "i32", "i32"]);
  const [w, xq, xs, y, rows, blocks] = [0, 1, 2, 3, 4, 5].map((i) => f.param(i));
  const [row, block, xp, sp, rowBytes, h] = [0, 1, 2, 3, 4, 5].map(() => f.local("i32"));
  const xScale = f.local("f32");
  const xv = [0, 1, 2, 3].map(() => f.local("v128"));
  const sums = [0, 1, 2, 3].map(() => f.local("v128"));
  const [pairs0, pairs1, scales] = [0, 1, 2].map(() => f.local("v128"));
  const relaxed = shape.relaxedDot ? { part: f.local("v128") } : null;
  const wp = Array.from({ length: shape.rowsPerStep }, () => f.local("i32"));
  const acc = Array.from({ length: shape.rowsPerStep }, () => f.local("v128"));
  f.get(blocks).i32Const(34).i32Mul().set(rowBytes);
  f.i32Const(0).set(row);
  // Rows `step` at a time while that many are left, then one at a time.
  for (const step of new Set([shape.rowsPerStep, 1])) {
    f.block().loop();
    f.get(row).i32Const(step).i32Add().get(rows).i32GtS().brIf(1);
    for (let r = 0; r < step; r++) {
      f.get(row).i32Const(r).i32Add().get(rowBytes).i32Mul().get(w).i32Add().set(wp[r]);
      f.i32x4Const(0, 0, 0, 0).set(acc[r]);
    }
    f.get(xq).set(xp);
    f.get(xs).set(sp);
    f.i32Const(0).set(block);
    if (step === 1 && shape.groupBlocks) {
      // Four blocks at a time: their sums reduced to one vector [S0, S1, S2, S3], times the
      // vector of their four scales.
      f.block().loop();
      f.get(block).i32Const(4).i32Add().get(blocks).i32GtS().brIf(1);
      for (let k = 0; k < 4; k++) {
        emitBlockDot(f, wp[0], 34 * k, { xp, xAt: 64 * k }, relaxed);
        f.set(sums[k]);
      }
      for (const [pairs, a, b] of [[pairs0, 0, 1], [pairs1, 2, 3]] as const) {
        f.get(sums[a]).get(sums[b]).i8x16Shuffle(i32Lanes([0, 4, 1, 5]));
        f.get(sums[a]).get(sums[b]).i8x16Shuffle(i32Lanes([2, 6, 3, 7])).i32x4Add().set(pairs);
      }
      f.get(pairs0).get(pairs1).i8x16Shuffle(i32Lanes([0, 1, 4, 5]));
      f.get(pairs0).get(pairs1).i8x16Shuffle(i32Lanes([2, 3, 6, 7])).i32x4Add();
      f.f32x4ConvertI32x4S();
      // The four fp16 weight scales into the low halves of four i32 lanes, then to float32.
      f.i32x4Const(0, 0, 0, 0).set(scales);
      for (let k = 0; k < 4; k++) {
        f.get(wp[0]).get(scales).v128Load16Lane(2 * k, 34 * k).set(scales);
      }
      f.get(scales).i32x4Const(0x7fff, 0x7fff, 0x7fff, 0x7fff).v128And().i32Const(13).i32x4Shl();
      f.get(scales).i32x4Const(0x8000, 0x8000, 0x8000, 0x8000).v128And().i32Const(16).i32x4Shl();
      f.v128Or().f32Const(HALF_EXPONENT_FIX).f32x4Splat().f32x4Mul();
      f.get(sp).v128Load().f32x4Mul();
      f.f32x4Mul().get(acc[0]).f32x4Add().set(acc[0]);
      f.get(wp[0]).i32Const(4 * 34).i32Add().set(wp[0]);
      f.get(xp).i32Const(4 * 64).i32Add().set(xp);
      f.get(sp).i32Const(16).i32Add().set(sp);
      f.get(block).i32Const(4).i32Add().set(block);
      f.br(0).end().end();
    }
    // One block at a time (the last few blocks of a row, or every block with several rows).
    f.block().loop();
    f.get(block).get(blocks).i32GeS().brIf(1);
    for (let k = 0; k < 4; k++) f.get(xp).v128Load(16 * k).set(xv[k]);
    f.get(sp).f32Load().set(xScale);
    for (let r = 0; r < step; r++) {
      emitBlockDot(f, wp[r], 0, xv, relaxed);
      f.f32x4ConvertI32x4S();
      emitHalfScale(f, wp[r], h);
      f.get(xScale).f32Mul().f32x4Splat();
      f.f32x4Mul().get(acc[r]).f32x4Add().set(acc[r]);
      f.get(wp[r]).i32Const(34).i32Add().set(wp[r]);
    }
    f.get(xp).i32Const(64).i32Add().set(xp);
    f.get(sp).i32Const(4).i32Add().set(sp);
    f.get(block).i32Const(1).i32Add().set(block);
    f.br(0).end().end();
    for (let r = 0; r < step; r++) {
      f.get(row).i32Const(r).i32Add().set(h);
      emitStoreLaneSum(f, acc[r], y, h);
    }
    f.get(row).i32Const(step).i32Add().set(row);
    f.br(0).end().end();
  }
  return f;
}

/** The module's q8Gemv: the unrolling the benchmark found fastest (bench/q8_gemv.ts). */
function q8Gemv(): FunctionBuilder {
  return q8GemvBuilder(Q8_GEMV_SHAPE);
}

/** y[row] = the sum of the four lanes of `acc` (pairs first, as a tree). */
function emitStoreLaneSum(
  f: FunctionBuilder,
  acc: ReturnType<FunctionBuilder["local"]>,
  y: ReturnType<FunctionBuilder["local"]>,
  row: ReturnType<FunctionBuilder["local"]>,
): void {
  f.get(y).get(row).i32Const(2).i32Shl().i32Add();
  f.get(acc).get(acc).get(acc)
    .i8x16Shuffle([8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7]).f32x4Add().set(acc);
  f.get(acc).f32x4ExtractLane(0).get(acc).f32x4ExtractLane(1).f32Add();
  f.f32Store();
}

/** Byte lanes putting 4 of the 8 u16 in b (lanes 16–31) into the upper halves of f32 lanes. */
function upperHalves(first: number): number[] {
  const lanes: number[] = [];
  for (let i = 0; i < 4; i++) lanes.push(0, 1, 16 + 2 * (first + i), 17 + 2 * (first + i));
  return lanes;
}

/**
 * bf16Gemv(w, x, y, rows, cols): y[o] = Σ_i bf16(w[o, i]) · x[i], w row-major bf16, `cols` a
 * multiple of 16. Four accumulators, so that the additions do not wait on each other.
 */
function bf16Gemv(): FunctionBuilder {
  const f = new FunctionBuilder("bf16Gemv", ["i32", "i32", "i32", "i32", "i32"]);
  const [w, x, y, rows, cols] = [0, 1, 2, 3, 4].map((i) => f.param(i));
  const [row, wp, xp, xEnd, v, zero] = [
    f.local("i32"),
    f.local("i32"),
    f.local("i32"),
    f.local("i32"),
    f.local("v128"),
    f.local("v128"),
  ];
  const acc = [f.local("v128"), f.local("v128"), f.local("v128"), f.local("v128")];
  f.i32x4Const(0, 0, 0, 0).set(zero);
  f.get(x).get(cols).i32Const(2).i32Shl().i32Add().set(xEnd);
  f.get(w).set(wp);
  f.i32Const(0).set(row);
  f.block().loop();
  f.get(row).get(rows).i32GeS().brIf(1);
  for (const a of acc) f.get(zero).set(a);
  f.get(x).set(xp);
  f.block().loop();
  f.get(xp).get(xEnd).i32GeS().brIf(1);
  for (const step of [0, 1]) {
    f.get(wp).v128Load(step * 16).set(v);
    for (const part of [0, 1]) {
      const a = acc[step * 2 + part];
      f.get(zero).get(v).i8x16Shuffle(upperHalves(part * 4));
      f.get(xp).v128Load((step * 8 + part * 4) * 4).f32x4Mul();
      f.get(a).f32x4Add().set(a);
    }
  }
  f.get(wp).i32Const(32).i32Add().set(wp);
  f.get(xp).i32Const(64).i32Add().set(xp);
  f.br(0).end().end();
  f.get(acc[0]).get(acc[1]).f32x4Add().get(acc[2]).get(acc[3]).f32x4Add().f32x4Add().set(acc[0]);
  emitStoreLaneSum(f, acc[0], y, row);
  f.get(row).i32Const(1).i32Add().set(row);
  f.br(0).end().end();
  return f;
}

/**
 * q8Decode(w, out, blocks): the float32 values d·q of `blocks` consecutive Q8_0 blocks at w
 * into out (a prompt's products convert weights a tile at a time for sgemm).
 */
function q8Decode(): FunctionBuilder {
  const f = new FunctionBuilder("q8Decode", ["i32", "i32", "i32"]);
  const [w, out, blocks] = [0, 1, 2].map((i) => f.param(i));
  const [wp, op, end, h, d, v, half16] = [
    f.local("i32"),
    f.local("i32"),
    f.local("i32"),
    f.local("i32"),
    f.local("v128"),
    f.local("v128"),
    f.local("v128"),
  ];
  f.get(w).set(wp);
  f.get(out).set(op);
  f.get(w).get(blocks).i32Const(34).i32Mul().i32Add().set(end);
  f.block().loop();
  f.get(wp).get(end).i32GeS().brIf(1);
  emitHalfScale(f, wp, h);
  f.f32x4Splat().set(d);
  for (const half of [0, 16]) {
    f.get(wp).v128Load(2 + half).set(v);
    for (const [high, at] of [[false, 0], [true, 8]] as const) {
      f.get(v);
      if (high) f.i16x8ExtendHighI8x16S();
      else f.i16x8ExtendLowI8x16S();
      f.set(half16);
      for (const [upper, lane] of [[false, 0], [true, 4]] as const) {
        f.get(op);
        f.get(half16);
        if (upper) f.i32x4ExtendHighI16x8S();
        else f.i32x4ExtendLowI16x8S();
        f.f32x4ConvertI32x4S().get(d).f32x4Mul().v128Store((half + at + lane) * 4);
      }
    }
  }
  f.get(wp).i32Const(34).i32Add().set(wp);
  f.get(op).i32Const(128).i32Add().set(op);
  f.br(0).end().end();
  return f;
}

/** What one instance exports. */
export interface PackedKernelExports {
  memory: WebAssembly.Memory;
  q8Gemv(w: number, xq: number, xs: number, y: number, rows: number, blocks: number): void;
  bf16Gemv(w: number, x: number, y: number, rows: number, cols: number): void;
  q8Decode(w: number, out: number, blocks: number): void;
}

/** The compiled kernels and the kind of memory their instances import. */
export interface PackedKernelModule {
  module: WebAssembly.Module;
  /** The imported memory is shared (threads can run the kernels on it at once). */
  shared: boolean;
}

let compiled: PackedKernelModule | null | undefined;

/** Whether this runtime makes shared WebAssembly memories (SharedArrayBuffer underneath). */
function sharedMemoryWorks(): boolean {
  try {
    const memory = new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true });
    return memory.buffer instanceof SharedArrayBuffer;
  } catch {
    return false;
  }
}

/**
 * The compiled kernel module (once per process), importing its memory as env.memory: a shared
 * one where the runtime has them, so that worker threads run the same kernels over the same
 * weights (gemv_pool.ts); undefined where WebAssembly SIMD is unavailable.
 */
export function packedKernelModule(): PackedKernelModule | undefined {
  if (compiled === undefined) {
    try {
      const shared = sharedMemoryWorks();
      const bytes = buildModule([q8Gemv(), bf16Gemv(), q8Decode()], 1, { shared });
      compiled = { module: new WebAssembly.Module(bytes), shared };
    } catch {
      compiled = null;
    }
  }
  return compiled ?? undefined;
}

/** The kernels of `module` over `memory` (a worker's instance over an arena made elsewhere). */
export function packedKernelsOver(
  module: WebAssembly.Module,
  memory: WebAssembly.Memory,
): PackedKernelExports {
  return new WebAssembly.Instance(module, { env: { memory } })
    .exports as unknown as PackedKernelExports;
}

/**
 * A fresh instance over a new memory (growable to 4 GiB, shared where possible), or undefined
 * where WebAssembly SIMD is unavailable.
 */
export function instantiatePackedKernels(): PackedKernelExports | undefined {
  const kernels = packedKernelModule();
  if (!kernels) return undefined;
  const memory = new WebAssembly.Memory({ initial: 1, maximum: 65536, shared: kernels.shared });
  return packedKernelsOver(kernels.module, memory);
}
