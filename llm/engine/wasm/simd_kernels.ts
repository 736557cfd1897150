/**
 * The exp-heavy inner loops of the fused ops (softmax, cross-entropy, GELU) as WebAssembly SIMD:
 * four float32 lanes per instruction where the plain-JS loops of fused_math.ts compute one
 * double at a time. V8 compiles these to SSE/AVX: 2–3× faster than the JS loops on one core, copies
 * included (bench/simd.ts; the exp loop alone is ≈ 3×).
 *
 * The module is assembled at start-up by encoder.ts (no compiled files in the repository).
 * Data is copied into the module's linear memory, processed and copied back out; copies are
 * memcpy-fast next to the arithmetic. Where WebAssembly SIMD is unavailable `simdKernels()`
 * returns undefined and the callers keep the JS loops.
 *
 * exp is Cephes' `expf`: x = k·ln2 + r with k = round(x·log2 e) and |r| ≤ ln2/2 (Cody–Waite,
 * ln2 in two parts), e^r by a degree-6 polynomial, 2^k built in the exponent bits. Relative error
 * ≈ 1.2e-7 (float32 rounding is 6e-8); inputs here are ≤ 0 (shifted by a row maximum, or −2|u|
 * for tanh); below −87.34 the result is 0, as float32's e^x (denormals aside); NaN stays NaN.
 */
import { MULBERRY32_STEP } from "../../random.ts";
import { buildModule, FunctionBuilder, type Local } from "./encoder.ts";

const LOG2E = Math.LOG2E;
const LN2_HI = 0.693359375;
const LN2_LO = -2.12194440e-4;
const EXP_POLY = [
  1.9875691500e-4,
  1.3981999507e-3,
  8.3334519073e-3,
  4.1665795894e-2,
  1.6666665459e-1,
  5.0000001201e-1,
];
const EXP_MIN = -87.33654;
const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);
const GELU_CUBIC = 0.044715;

/** Emits e^(top of stack) for an f32x4 on the stack, leaving the result; `scratch` are v128 locals. */
function emitExp(f: FunctionBuilder, x: Local, k: Local, r: Local): void {
  f.tee(x).f32Const(EXP_MIN).f32x4Splat().f32x4Max();
  // k = round(x·log2 e)
  f.f32Const(LOG2E).f32x4Splat().f32x4Mul().f32x4Nearest().set(k);
  // r = x − k·ln2_hi − k·ln2_lo (x re-clamped from the local)
  f.get(x).f32Const(EXP_MIN).f32x4Splat().f32x4Max();
  f.get(k).f32Const(LN2_HI).f32x4Splat().f32x4Mul().f32x4Sub();
  f.get(k).f32Const(LN2_LO).f32x4Splat().f32x4Mul().f32x4Sub().set(r);
  // p(r) by Horner, then e^r ≈ p·r² + r + 1
  f.f32Const(EXP_POLY[0]).f32x4Splat();
  for (const c of EXP_POLY.slice(1)) {
    f.get(r).f32x4Mul().f32Const(c).f32x4Splat().f32x4Add();
  }
  f.get(r).f32x4Mul().get(r).f32x4Mul().get(r).f32x4Add().f32Const(1).f32x4Splat().f32x4Add();
  // × 2^k: (k + 127) << 23 as float bits
  f.get(k).i32x4TruncSatF32x4S().i32Const(127).i32x4Splat().i32x4Add().i32Const(23).i32x4Shl();
  f.f32x4Mul();
  // Lanes below the float32 range underflow to 0.
  f.get(x).f32Const(EXP_MIN).f32x4Splat().f32x4Lt().v128AndNot();
}

/**
 * A loop over `n` floats, 4 at a time: `body(masked)` sees the byte offset in `offset` and, in
 * the last partial vector (n not a multiple of 4), a lane mask in `mask` (lane < remaining).
 */
function emitVectorLoop(
  f: FunctionBuilder,
  n: Local,
  offset: Local,
  mask: Local,
  body: (masked: boolean) => void,
): void {
  const end = f.local("i32");
  f.i32Const(0).set(offset);
  f.get(n).i32Const(-4).i32And().i32Const(2).i32Shl().set(end);
  f.block().loop();
  f.get(offset).get(end).i32GeS().brIf(1);
  body(false);
  f.get(offset).i32Const(16).i32Add().set(offset);
  f.br(0).end().end();
  f.get(n).i32Const(3).i32And().if();
  f.i32x4Const(0, 1, 2, 3).get(n).i32Const(3).i32And().i32x4Splat().i32x4LtS().set(mask);
  body(true);
  f.end();
}

/** Stores the vector on the stack at `address`; in a masked tail only the mask's lanes. */
function emitStore(f: FunctionBuilder, address: Local, value: Local, mask: Local, masked: boolean) {
  f.get(address);
  if (masked) {
    f.get(value).get(address).v128Load().get(mask).v128Bitselect();
  } else {
    f.get(value);
  }
  f.v128Store();
}

/** max(src[0..n)) as f32 (NaN if any is NaN). */
function rowMax(): FunctionBuilder {
  const f = new FunctionBuilder("rowMax", ["i32", "i32"], ["f32"]);
  const [src, n] = [f.param(0), f.param(1)];
  const [offset, mask, acc] = [f.local("i32"), f.local("v128"), f.local("v128")];
  f.f32Const(-Infinity).f32x4Splat().set(acc);
  emitVectorLoop(f, n, offset, mask, (masked) => {
    f.get(acc).get(src).get(offset).i32Add().v128Load();
    if (masked) f.f32Const(-Infinity).f32x4Splat().get(mask).v128Bitselect();
    f.f32x4Max().set(acc);
  });
  // max of the four lanes: swap halves, then neighbours
  f.get(acc).get(acc).get(acc)
    .i8x16Shuffle([8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7]).f32x4Max().set(acc);
  f.get(acc).get(acc).get(acc)
    .i8x16Shuffle([4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11]).f32x4Max();
  f.f32x4ExtractLane(0);
  return f;
}

/**
 * Σ e^(src[i]·scale − shift) over [0, n) in double precision; with `store`, also writes each
 * e^… to dst[i].
 */
function expShiftSum(store: boolean): FunctionBuilder {
  const f = new FunctionBuilder(
    store ? "expShiftSum" : "expShiftSumOnly",
    ["i32", "i32", "i32", "f32", "f32"],
    ["f64"],
  );
  const [src, dst, n, scale, shift] = [0, 1, 2, 3, 4].map((i) => f.param(i));
  const [offset, mask, sumLo, sumHi] = [
    f.local("i32"),
    f.local("v128"),
    f.local("v128"),
    f.local("v128"),
  ];
  const [x, k, r, e, address] = [
    f.local("v128"),
    f.local("v128"),
    f.local("v128"),
    f.local("v128"),
    f.local("i32"),
  ];
  const [scaleV, shiftV] = [f.local("v128"), f.local("v128")];
  f.get(scale).f32x4Splat().set(scaleV);
  f.get(shift).f32x4Splat().set(shiftV);
  emitVectorLoop(f, n, offset, mask, (masked) => {
    f.get(src).get(offset).i32Add().v128Load().get(scaleV).f32x4Mul().get(shiftV).f32x4Sub();
    emitExp(f, x, k, r);
    if (masked) f.get(mask).v128And();
    f.set(e);
    if (store) {
      f.get(dst).get(offset).i32Add().set(address);
      emitStore(f, address, e, mask, masked);
    }
    // Two f64x2 accumulators: lanes 0–1 and 2–3 widened to double.
    f.get(sumLo).get(e).f64x2PromoteLowF32x4().f64x2Add().set(sumLo);
    f.get(sumHi).get(e).get(e).i8x16Shuffle([
      8,
      9,
      10,
      11,
      12,
      13,
      14,
      15,
      8,
      9,
      10,
      11,
      12,
      13,
      14,
      15,
    ])
      .f64x2PromoteLowF32x4().f64x2Add().set(sumHi);
  });
  f.get(sumLo).get(sumHi).f64x2Add().tee(sumLo).f64x2ExtractLane(0);
  f.get(sumLo).f64x2ExtractLane(1).f64Add();
  return f;
}

/** ptr[i] *= factor over [0, n). */
function scaleInPlace(): FunctionBuilder {
  const f = new FunctionBuilder("scaleInPlace", ["i32", "i32", "f32"]);
  const [ptr, n, factor] = [f.param(0), f.param(1), f.param(2)];
  const [offset, mask, value, address, factorV] = [
    f.local("i32"),
    f.local("v128"),
    f.local("v128"),
    f.local("i32"),
    f.local("v128"),
  ];
  f.get(factor).f32x4Splat().set(factorV);
  emitVectorLoop(f, n, offset, mask, (masked) => {
    f.get(ptr).get(offset).i32Add().tee(address).v128Load().get(factorV).f32x4Mul().set(value);
    emitStore(f, address, value, mask, masked);
  });
  return f;
}

/** ptr[i] = 0 over [0, n). */
function fillZero(): FunctionBuilder {
  const f = new FunctionBuilder("fillZero", ["i32", "i32"]);
  const [ptr, n] = [f.param(0), f.param(1)];
  const [offset, mask, zero, address] = [
    f.local("i32"),
    f.local("v128"),
    f.local("v128"),
    f.local("i32"),
  ];
  emitVectorLoop(f, n, offset, mask, (masked) => {
    f.get(ptr).get(offset).i32Add().set(address);
    emitStore(f, address, zero, mask, masked);
  });
  return f;
}

/**
 * One [queries, keys] matrix of attention scores → softmax(scores·scale) per row, where query q
 * sees keys 0..offset+q and the rest get 0: rowMax, expShiftSum, scaleInPlace and fillZero per
 * row, called by index (their positions in `MODULE_FUNCTIONS`).
 */
function causalSoftmax(): FunctionBuilder {
  const f = new FunctionBuilder("causalSoftmax", ["i32", "i32", "i32", "i32", "i32", "f32"]);
  const [src, dst, numQueries, numKeys, offset, scale] = [0, 1, 2, 3, 4, 5].map((i) => f.param(i));
  const [q, row, visible, max, sum] = [
    f.local("i32"),
    f.local("i32"),
    f.local("i32"),
    f.local("f32"),
    f.local("f64"),
  ];
  const index = (name: string) => MODULE_FUNCTIONS.findIndex((g) => g.name === name);
  f.block().loop();
  f.get(q).get(numQueries).i32GeS().brIf(1);
  f.get(q).get(numKeys).i32Mul().i32Const(2).i32Shl().set(row);
  // visible = min(numKeys, offset + q + 1)
  f.get(numKeys).get(offset).get(q).i32Add().i32Const(1).i32Add().tee(visible)
    .get(numKeys).get(visible).i32LtS().select().set(visible);
  // scale > 0, so max(x·scale) = max(x)·scale (rounding is monotone)
  f.get(src).get(row).i32Add().get(visible).call(index("rowMax")).get(scale).f32Mul().set(max);
  f.get(src).get(row).i32Add().get(dst).get(row).i32Add().get(visible).get(scale).get(max)
    .call(index("expShiftSum")).set(sum);
  f.get(dst).get(row).i32Add().get(visible).f64Const(1).get(sum).f64Div().f32DemoteF64()
    .call(index("scaleInPlace"));
  f.get(dst).get(row).i32Add().get(visible).i32Const(2).i32Shl().i32Add()
    .get(numKeys).get(visible).i32Sub().call(index("fillZero"));
  f.get(q).i32Const(1).i32Add().set(q);
  f.br(0).end().end();
  return f;
}

/**
 * GELU (tanh form) over [0, n): y = 0.5·x·(1 + tanh u), u = √(2/π)·(x + 0.044715·x³), and, with
 * `withTanh`, tanh u for the backward. With e = e^(−2|u|): tanh u = sign(u)·(1 − e)/(1 + e), and
 * 1 + tanh u = 2/(1 + e) for u ≥ 0, 2e/(1 + e) for u < 0, so y = x·(u < 0 ? e : 1)/(1 + e)
 * with no cancellation where tanh u ≈ −1.
 */
function gelu(withTanh: boolean): FunctionBuilder {
  const f = new FunctionBuilder(
    withTanh ? "geluWithTanh" : "gelu",
    ["i32", "i32", "i32", "i32"],
  );
  const [src, dstY, dstT, n] = [0, 1, 2, 3].map((i) => f.param(i));
  const [offset, mask, v, u, e, k, r, x, out, address] = [
    f.local("i32"),
    f.local("v128"),
    f.local("v128"),
    f.local("v128"),
    f.local("v128"),
    f.local("v128"),
    f.local("v128"),
    f.local("v128"),
    f.local("v128"),
    f.local("i32"),
  ];
  emitVectorLoop(f, n, offset, mask, (masked) => {
    // u = x·(c + c·0.044715·x²)
    f.get(src).get(offset).i32Add().v128Load().tee(v).get(v).f32x4Mul()
      .f32Const(SQRT_2_OVER_PI * GELU_CUBIC).f32x4Splat().f32x4Mul()
      .f32Const(SQRT_2_OVER_PI).f32x4Splat().f32x4Add().get(v).f32x4Mul().set(u);
    // e = e^(−2|u|)
    f.get(u).f32x4Abs().f32Const(-2).f32x4Splat().f32x4Mul();
    emitExp(f, x, k, r);
    f.set(e);
    // y = x·(u < 0 ? e : 1)/(1 + e)
    f.get(v).get(e).f32Const(1).f32x4Splat().get(u).f32Const(0).f32x4Splat().f32x4Lt()
      .v128Bitselect().f32x4Mul();
    f.get(e).f32Const(1).f32x4Splat().f32x4Add().f32x4Div().set(out);
    f.get(dstY).get(offset).i32Add().set(address);
    emitStore(f, address, out, mask, masked);
    if (withTanh) {
      // tanh u = (1 − e)/(1 + e) with u's sign bit
      f.f32Const(1).f32x4Splat().get(e).f32x4Sub()
        .f32Const(1).f32x4Splat().get(e).f32x4Add().f32x4Div()
        .get(u).f32Const(-0).f32x4Splat().v128And().v128Or().set(out);
      f.get(dstT).get(offset).i32Add().set(address);
      emitStore(f, address, out, mask, masked);
    }
  });
  return f;
}

/**
 * One AdamW step over [0, n) in float32, in PyTorch's order of operations (torch.optim.AdamW,
 * single-tensor path): p ← p·(1 − lr·wd); m ← β1·m + (1 − β1)·g; v ← β2·v + (1 − β2)·g²;
 * p ← p − step_size·m/(√v/√(1 − β2ᵗ) + ε). Updates p (written to `out`, which may be p), m, v.
 */
function adamw(): FunctionBuilder {
  const f = new FunctionBuilder("adamw", [
    "i32",
    "i32",
    "i32",
    "i32",
    "i32",
    "i32",
    "f32",
    "f32",
    "f32",
    "f32",
    "f32",
    "f32",
    "f32",
    "f32",
  ]);
  const [p, g, m, v, out, n] = [0, 1, 2, 3, 4, 5].map((i) => f.param(i));
  const scalars = [6, 7, 8, 9, 10, 11, 12, 13].map((i) => f.param(i));
  const [decay, beta1, oneMinusBeta1, beta2, oneMinusBeta2, eps, negStepSize, bc2Sqrt] = scalars
    .map((param) => {
      const splat = f.local("v128");
      f.get(param).f32x4Splat().set(splat);
      return splat;
    });
  const [offset, mask, grad, mNew, vNew, pNew, address] = [
    f.local("i32"),
    f.local("v128"),
    f.local("v128"),
    f.local("v128"),
    f.local("v128"),
    f.local("v128"),
    f.local("i32"),
  ];
  emitVectorLoop(f, n, offset, mask, (masked) => {
    f.get(g).get(offset).i32Add().v128Load().set(grad);
    // m ← β1·m + (1 − β1)·g
    f.get(m).get(offset).i32Add().v128Load().get(beta1).f32x4Mul()
      .get(grad).get(oneMinusBeta1).f32x4Mul().f32x4Add().set(mNew);
    // v ← β2·v + (1 − β2)·g·g
    f.get(v).get(offset).i32Add().v128Load().get(beta2).f32x4Mul()
      .get(grad).get(grad).f32x4Mul().get(oneMinusBeta2).f32x4Mul().f32x4Add().set(vNew);
    // p ← p·decay + (−step_size)·(m / (√v / √bc2 + ε))
    f.get(p).get(offset).i32Add().v128Load().get(decay).f32x4Mul()
      .get(mNew).get(vNew).f32x4Sqrt().get(bc2Sqrt).f32x4Div().get(eps).f32x4Add().f32x4Div()
      .get(negStepSize).f32x4Mul().f32x4Add().set(pNew);
    f.get(m).get(offset).i32Add().set(address);
    emitStore(f, address, mNew, mask, masked);
    f.get(v).get(offset).i32Add().set(address);
    emitStore(f, address, vNew, mask, masked);
    f.get(out).get(offset).i32Add().set(address);
    emitStore(f, address, pNew, mask, masked);
  });
  return f;
}

/**
 * fround(x·scale) for an f32x4 x (in local `x`) and a double `scale` splatted in local
 * `scale64`: the product in double precision, rounded once to float32, as the JS loops compute it
 * (an f32 product would round `scale` first and differ in the last bit).
 */
function emitScaleInDouble(f: FunctionBuilder, x: Local, scale64: Local): void {
  f.get(x).f64x2PromoteLowF32x4().get(scale64).f64x2Mul().f32x4DemoteF64x2Zero();
  f.get(x).get(x).i8x16Shuffle([8, 9, 10, 11, 12, 13, 14, 15, 8, 9, 10, 11, 12, 13, 14, 15])
    .f64x2PromoteLowF32x4().get(scale64).f64x2Mul().f32x4DemoteF64x2Zero();
  f.i8x16Shuffle([0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23]);
}

/**
 * Inverted dropout over [0, n): element i is kept when mulberry32's (i+1)-th draw from state
 * `stateBase`, as a u32, is ≥ `threshold` (= ⌈rate·2³²⌉, the JS loop's `uniform >= rate`); kept
 * elements are scaled by 1/(1 − rate), the others are 0. The keep mask goes to `mask` as bytes
 * (1 = kept). mulberry32's state advances by a constant per draw, so lane j of a vector simply
 * starts j steps further on. Writes up to 3 elements (12 bytes, 3 mask bytes) past n: the caller
 * leaves slack.
 */
function dropout(): FunctionBuilder {
  const f = new FunctionBuilder("dropout", ["i32", "i32", "i32", "i32", "i32", "i32", "f64"]);
  const [src, dst, mask, n, stateBase, threshold, keepScale] = [0, 1, 2, 3, 4, 5, 6].map((i) =>
    f.param(i)
  );
  const x = f.local("v128");
  const [offset, lanes, state, t, keep, scaleV, thresholdV, step] = [
    f.local("i32"),
    f.local("v128"),
    f.local("v128"),
    f.local("v128"),
    f.local("v128"),
    f.local("v128"),
    f.local("v128"),
    f.local("v128"),
  ];
  const C = MULBERRY32_STEP;
  f.get(stateBase).i32x4Splat()
    .i32x4Const(C, Math.imul(C, 2), Math.imul(C, 3), Math.imul(C, 4)).i32x4Add().set(state);
  f.i32Const(Math.imul(C, 4)).i32x4Splat().set(step);
  f.get(keepScale).f64x2Splat().set(scaleV);
  f.get(threshold).i32x4Splat().set(thresholdV);
  const body = () => {
    // t = imul(t ^ (t >>> 15), t | 1)
    f.get(state).get(state).i32Const(15).i32x4ShrU().v128Xor()
      .get(state).i32Const(1).i32x4Splat().v128Or().i32x4Mul().set(t);
    // t ^= t + imul(t ^ (t >>> 7), t | 61)
    f.get(t).get(t).get(t).get(t).i32Const(7).i32x4ShrU().v128Xor()
      .get(t).i32Const(61).i32x4Splat().v128Or().i32x4Mul().i32x4Add().v128Xor().set(t);
    // keep = (t ^ (t >>> 14)) ≥ threshold, unsigned
    f.get(t).get(t).i32Const(14).i32x4ShrU().v128Xor().get(thresholdV).i32x4GeU().set(keep);
    // y = keep ? x·scale : 0
    f.get(src).get(offset).i32Add().v128Load().set(x);
    f.get(dst).get(offset).i32Add();
    emitScaleInDouble(f, x, scaleV);
    f.get(keep).v128And().v128Store();
    // mask bytes: all-ones lanes → 1, narrowed 32 → 16 → 8 bits, the low 4 bytes stored
    f.get(mask).get(offset).i32Const(2).i32ShrU().i32Add()
      .get(keep).i32Const(1).i32x4Splat().v128And().set(lanes);
    f.get(lanes).get(lanes).i16x8NarrowI32x4U().set(lanes);
    f.get(lanes).get(lanes).i8x16NarrowI16x8U().v128Store32Lane(0);
    f.get(state).get(step).i32x4Add().set(state);
  };
  emitVectorLoop(f, n, offset, f.local("v128"), () => body());
  return f;
}

/** The dropout backward: dst = mask ? src·keepScale : 0 over [0, n) (same slack as `dropout`). */
function dropoutApply(): FunctionBuilder {
  const f = new FunctionBuilder("dropoutApply", ["i32", "i32", "i32", "i32", "f64"]);
  const [src, mask, dst, n, keepScale] = [0, 1, 2, 3, 4].map((i) => f.param(i));
  const [offset, scaleV, address, x] = [
    f.local("i32"),
    f.local("v128"),
    f.local("i32"),
    f.local("v128"),
  ];
  f.get(keepScale).f64x2Splat().set(scaleV);
  emitVectorLoop(f, n, offset, f.local("v128"), () => {
    f.get(src).get(offset).i32Add().v128Load().set(x);
    f.get(dst).get(offset).i32Add();
    emitScaleInDouble(f, x, scaleV);
    f.get(mask).get(offset).i32Const(2).i32ShrU().i32Add().set(address);
    f.get(address).v128Load8x4U().i32Const(0).i32x4Splat().i32x4Ne().v128And().v128Store();
  });
  return f;
}

/** The module's functions; `call` refers to them by position in this list. */
const MODULE_FUNCTIONS = [
  rowMax(),
  expShiftSum(true),
  expShiftSum(false),
  scaleInPlace(),
  fillZero(),
  gelu(false),
  gelu(true),
  adamw(),
  dropout(),
  dropoutApply(),
];
// causalSoftmax calls functions of this list by their index, so it is added once the list exists.
MODULE_FUNCTIONS.push(causalSoftmax());

interface Exports {
  memory: WebAssembly.Memory;
  rowMax(src: number, n: number): number;
  expShiftSum(src: number, dst: number, n: number, scale: number, shift: number): number;
  expShiftSumOnly(src: number, dst: number, n: number, scale: number, shift: number): number;
  scaleInPlace(ptr: number, n: number, factor: number): void;
  fillZero(ptr: number, n: number): void;
  causalSoftmax(
    src: number,
    dst: number,
    numQueries: number,
    numKeys: number,
    offset: number,
    scale: number,
  ): void;
  gelu(src: number, dstY: number, dstT: number, n: number): void;
  dropout(
    src: number,
    dst: number,
    mask: number,
    n: number,
    stateBase: number,
    threshold: number,
    keepScale: number,
  ): void;
  dropoutApply(src: number, mask: number, dst: number, n: number, keepScale: number): void;
  adamw(
    p: number,
    g: number,
    m: number,
    v: number,
    out: number,
    n: number,
    decay: number,
    beta1: number,
    oneMinusBeta1: number,
    beta2: number,
    oneMinusBeta2: number,
    eps: number,
    negStepSize: number,
    biasCorrection2Sqrt: number,
  ): void;
  geluWithTanh(src: number, dstY: number, dstT: number, n: number): void;
}

/** The instantiated module and a view of its memory that follows `memory.grow`. */
export class SimdKernels {
  private heap: Float32Array;

  constructor(readonly exports: Exports) {
    this.heap = new Float32Array(exports.memory.buffer);
  }

  /** A float32 view of the linear memory with room for `floats` floats (+ slack for tails). */
  reserve(floats: number): Float32Array {
    const bytes = floats * 4 + 64;
    const have = this.exports.memory.buffer.byteLength;
    if (bytes > have) this.exports.memory.grow(Math.ceil((bytes - have) / 65536));
    if (this.heap.buffer !== this.exports.memory.buffer) {
      this.heap = new Float32Array(this.exports.memory.buffer);
    }
    return this.heap;
  }

  /** A byte view of the linear memory (valid until the next `reserve` that grows it). */
  bytes(): Uint8Array {
    return new Uint8Array(this.exports.memory.buffer);
  }
}

let cached: SimdKernels | null | undefined;
let failure: string | undefined;

/** The SIMD kernels, or undefined where WebAssembly SIMD is not available. */
export function simdKernels(): SimdKernels | undefined {
  if (cached === undefined) {
    try {
      const module = new WebAssembly.Module(buildModule(MODULE_FUNCTIONS));
      const instance = new WebAssembly.Instance(module, {});
      cached = new SimdKernels(instance.exports as unknown as Exports);
    } catch (error) {
      cached = null;
      failure = (error as Error).message;
    }
  }
  return cached ?? undefined;
}

/** Why the SIMD kernels are unavailable (for tests and diagnostics), or undefined. */
export function simdKernelsError(): string | undefined {
  simdKernels();
  return failure;
}
