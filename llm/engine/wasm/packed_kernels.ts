/**
 * Matrix–vector products that read low-precision weights where they lie: Q8_0 blocks (GGUF's
 * layout: an fp16 scale then 32 int8 values, 34 bytes) and bf16 rows, each output row a dot
 * product with one float32 input row. Decoding multiplies every weight once per token, so the
 * cost is in reading and widening the weights, not in the arithmetic: a Q8_0 weight is 1.06
 * bytes where fp32 is 4.
 *
 * Q8_0 × activations: the input row is first split per block of 32 into two int16 parts with
 * one float scale d = max|x|/32767: x ≈ d·(high + low/32768), an error below 5e-10 of the block's
 * largest value (float32 itself rounds at 6e-8; llama.cpp quantizes the input to int8 instead).
 * Each block's dot products are then exact integer arithmetic (i32x4.dot_i16x8_s over the
 * weights widened to int16), scaled once by d_weight · d_input: the result is the float32
 * product with the decoded weights up to summation order. bf16 needs no arithmetic to widen: its bits are a float32's upper half,
 * so a byte shuffle with zeros makes four float32 lanes.
 *
 * The module is assembled at start-up by encoder.ts; its memory holds the weights themselves
 * (see packed_matrix.ts: each arena is one instance), so a call copies only the input and
 * output rows. The memory is imported and shared, so worker threads hold instances over the same
 * weights and split a product's rows (gemv_pool.ts).
 */
import { buildModule, FunctionBuilder } from "./encoder.ts";

/** 2^112: an fp16's exponent field shifted 13 bits up is a float32's, off by 2^-112. */
const HALF_EXPONENT_FIX = 2 ** 112;
/** The low int16 part of the input counts 1/32768 of a step of the high part. */
export const LOW_PART_SCALE = 32768;

/**
 * q8Gemv(w, xq, xs, y, rows, blocks): y[o] = Σ_b d_w[o,b] · xs[b] · Σ_j q_w[o,b,j] ·
 * (high[b,j] + low[b,j]/32768), with w the rows' Q8_0 blocks (`blocks` per row, 34 bytes each),
 * xq per block the 32 int16 high parts then the 32 low parts (128 bytes), xs the float32 scale
 * per block.
 */
function q8Gemv(): FunctionBuilder {
  const f = new FunctionBuilder("q8Gemv", ["i32", "i32", "i32", "i32", "i32", "i32"]);
  const [w, xq, xs, y, rows, blocks] = [0, 1, 2, 3, 4, 5].map((i) => f.param(i));
  const [lsum, lo, hi] = [f.local("v128"), f.local("v128"), f.local("v128")];
  const [row, block, wp, xp, sp, isum, facc, v, h] = [
    f.local("i32"),
    f.local("i32"),
    f.local("i32"),
    f.local("i32"),
    f.local("i32"),
    f.local("v128"),
    f.local("v128"),
    f.local("v128"),
    f.local("i32"),
  ];
  f.get(w).set(wp);
  f.i32Const(0).set(row);
  f.block().loop();
  f.get(row).get(rows).i32GeS().brIf(1);
  f.i32x4Const(0, 0, 0, 0).set(facc);
  f.get(xq).set(xp);
  f.get(xs).set(sp);
  f.i32Const(0).set(block);
  f.block().loop();
  f.get(block).get(blocks).i32GeS().brIf(1);
  // Integer dot products of the block with both parts of the input: two halves of 16 int8
  // weights, each widened to two i16x8 and multiplied with the high and the low int16 parts.
  for (const half of [0, 16]) {
    f.get(wp).v128Load(2 + half).set(v);
    f.get(v).i16x8ExtendLowI8x16S().set(lo);
    f.get(v).i16x8ExtendHighI8x16S().set(hi);
    for (const [sum, part] of [[isum, 0], [lsum, 64]] as const) {
      f.get(lo).get(xp).v128Load(part + half * 2).i32x4DotI16x8S();
      f.get(hi).get(xp).v128Load(part + half * 2 + 16).i32x4DotI16x8S();
      f.i32x4Add();
      if (half === 0) f.set(sum);
      else f.get(sum).i32x4Add().set(sum);
    }
  }
  // The weight scale: fp16 bits → float32 (finite values; subnormals too, by the 2^112 factor).
  f.get(wp).i32Load16U().set(h);
  f.get(h).i32Const(0x7fff).i32And().i32Const(13).i32Shl();
  f.get(h).i32Const(0x8000).i32And().i32Const(16).i32Shl().i32Or().f32ReinterpretI32();
  f.f32Const(HALF_EXPONENT_FIX).f32Mul().get(sp).f32Load().f32Mul().f32x4Splat();
  f.get(lsum).f32x4ConvertI32x4S().f32Const(1 / LOW_PART_SCALE).f32x4Splat().f32x4Mul();
  f.get(isum).f32x4ConvertI32x4S().f32x4Add();
  f.f32x4Mul().get(facc).f32x4Add().set(facc);
  f.get(wp).i32Const(34).i32Add().set(wp);
  f.get(xp).i32Const(128).i32Add().set(xp);
  f.get(sp).i32Const(4).i32Add().set(sp);
  f.get(block).i32Const(1).i32Add().set(block);
  f.br(0).end().end();
  emitStoreLaneSum(f, facc, y, row);
  f.get(row).i32Const(1).i32Add().set(row);
  f.br(0).end().end();
  return f;
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
  f.get(wp).i32Load16U().set(h);
  f.get(h).i32Const(0x7fff).i32And().i32Const(13).i32Shl();
  f.get(h).i32Const(0x8000).i32And().i32Const(16).i32Shl().i32Or().f32ReinterpretI32();
  f.f32Const(HALF_EXPONENT_FIX).f32Mul().f32x4Splat().set(d);
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
