/**
 * Weight matrices held packed for inference: Q8_0 (GGUF's blocks of 32 int8 with an fp16
 * scale, 34 bytes per 32 values), fp16 or bf16 (2 bytes per value), never as float32.
 *
 * The bytes live in WebAssembly memories ("arenas"), so the SIMD kernels of
 * wasm/packed_kernels.ts read them in place: a product copies only its input and output rows.
 * One arena is one instance of the kernel module; a memory addresses at most 4 GiB, so a large
 * model spreads its matrices over several arenas (an 8B model at Q8_0 takes three).
 *
 * `multiply` is y = x·Wᵀ for x [n, cols]: one row (decoding) runs the GEMV kernel; many rows
 * (a prompt) convert W a tile of rows at a time into float32 scratch and hand each tile to
 * sgemm when BLAS is loaded, so the float32 copy never exceeds one tile.
 */
import type { Blas } from "./blas.ts";
import { closeArena, openArena, splitKernels } from "./gemv_pool.ts";
import { decodeTensor, encodeTensor, floatToHalf, halfToFloat } from "../weights/gguf.ts";
import {
  instantiatePackedKernels,
  type PackedKernelExports,
  Q8_INPUT_LAYOUT,
} from "./wasm/packed_kernels.ts";

/** What the many-row product needs of a BLAS library. */
export type Sgemm = Pick<Blas, "sgemm">;

/** How a packed matrix stores its values (GGUF's type names). */
export type PackedType = "Q8_0" | "F16" | "BF16";

/** Bytes a [rows, cols] matrix takes as `type`. */
export function packedByteLength(type: PackedType, rows: number, cols: number): number {
  if (type === "Q8_0") {
    if (cols % 32 !== 0) {
      throw new Error(`Q8_0 stores rows of whole 32-value blocks; a row has ${cols} values`);
    }
    return rows * (cols / 32) * 34;
  }
  return rows * cols * 2;
}

const PAGE = 65536;
/** Weights one arena takes before the next is opened (room left for the call scratch). */
const ARENA_WEIGHT_LIMIT = 3.75 * 2 ** 30;
const ALIGN = 64;

const alignUp = (n: number, to: number) => Math.ceil(n / to) * to;

/**
 * One kernel instance and the weights its memory holds. The memory is shared with the GEMV
 * worker threads (gemv_pool.ts), which hold their own instances over it, and `kernels` are the
 * instance's kernels with their rows split over those threads. A SharedArrayBuffer grows in
 * place, but views made before a growth keep their old length, so views are taken afresh after
 * every `reserve`.
 */
class Arena {
  /** Bytes used by weights (the scratch of a call lies after them). */
  used = ALIGN;
  /** The name the GEMV workers know this arena by. */
  readonly id: number;
  readonly kernels: PackedKernelExports;
  constructor(instance: PackedKernelExports) {
    this.id = openArena(instance.memory);
    this.kernels = splitKernels(instance, this.id);
  }

  get memory(): WebAssembly.Memory {
    return this.kernels.memory;
  }

  /** Makes the memory at least `bytes` long. */
  reserve(bytes: number): void {
    const have = this.memory.buffer.byteLength;
    if (bytes > have) this.memory.grow(Math.ceil((bytes - have) / PAGE));
  }

  allocate(bytes: number): number {
    const offset = this.used;
    this.reserve(offset + bytes);
    this.used = alignUp(offset + bytes, ALIGN);
    return offset;
  }
}

let arenas: Arena[] = [];

/** An arena with room for `bytes` more weights (a new one when the last is full). */
function arenaFor(bytes: number): Arena {
  const last = arenas[arenas.length - 1];
  if (last && last.used + bytes <= ARENA_WEIGHT_LIMIT) return last;
  if (bytes > ARENA_WEIGHT_LIMIT) {
    throw new Error(`a packed matrix of ${bytes} bytes exceeds one WebAssembly memory`);
  }
  const kernels = instantiatePackedKernels();
  if (!kernels) throw new Error("packed weights need WebAssembly SIMD, which is not available");
  const arena = new Arena(kernels);
  arenas.push(arena);
  return arena;
}

/**
 * Forgets arenas whose matrices are all gone. Arenas are append-only (a model's weights live as
 * long as the model), so a process that opens models one after another calls this after
 * disposing the old one; memory of an arena is returned when it is unreferenced.
 */
function releaseArena(arena: Arena): void {
  arenas = arenas.filter((a) => a !== arena);
  closeArena(arena.id);
}

const liveMatrices = new WeakMap<Arena, number>();

/** A [rows, cols] weight matrix (PyTorch's [out, in]) stored as `type` in an arena. */
export class PackedMatrix {
  private readonly arena: Arena;
  /** Byte offset of row 0 in the arena's memory. */
  private readonly offset: number;
  /** Bytes of the stored values. */
  readonly byteLength: number;
  private disposed = false;

  /** An uninitialised matrix; fill it with `setRows` (or use `PackedMatrix.fromFloat32`). */
  constructor(readonly type: PackedType, readonly rows: number, readonly cols: number) {
    this.byteLength = packedByteLength(type, rows, cols);
    this.arena = arenaFor(this.byteLength);
    this.offset = this.arena.allocate(this.byteLength);
    liveMatrices.set(this.arena, (liveMatrices.get(this.arena) ?? 0) + 1);
  }

  /** `values` ([rows, cols] row-major) rounded to `type`. */
  static fromFloat32(
    type: PackedType,
    rows: number,
    cols: number,
    values: Float32Array,
  ): PackedMatrix {
    const matrix = new PackedMatrix(type, rows, cols);
    matrix.setRows(0, values);
    return matrix;
  }

  /** [rows, cols] as it reads back: the same values `decodeTensor` gives for the GGUF bytes. */
  get shape(): [number, number] {
    return [this.rows, this.cols];
  }

  /** Bytes of one row. */
  get rowBytes(): number {
    return this.byteLength / this.rows;
  }

  /** The stored bytes (a view of the arena: valid until the next allocation grows it). */
  bytes(): Uint8Array {
    this.check();
    return new Uint8Array(this.arena.memory.buffer, this.offset, this.byteLength);
  }

  /** Rounds `values` (whole rows, row-major) to `type` into rows first.. . */
  setRows(first: number, values: Float32Array): void {
    if (values.length % this.cols !== 0 || first + values.length / this.cols > this.rows) {
      throw new Error(
        `PackedMatrix.setRows: ${values.length} values from row ${first} do not fit [${this.rows}, ${this.cols}]`,
      );
    }
    if (this.type === "Q8_0") {
      // Straight into the arena (the loader's hot loop: billions of values for an 8B model).
      const start = first * this.rowBytes;
      const length = (values.length / 32) * 34;
      quantizeQ8_0Into(values, this.bytes().subarray(start, start + length));
      return;
    }
    if (this.type === "BF16") {
      const start = first * this.rowBytes;
      const bytes = this.bytes();
      if (start % 2 === 0 && (bytes.byteOffset + start) % 2 === 0) {
        const words = new Uint16Array(bytes.buffer, bytes.byteOffset + start, values.length);
        roundToBf16(values, words);
        return;
      }
    }
    this.setRowBytes(first, encodeTensor(this.type, values));
  }

  /**
   * Rows from row `first` given as bf16 bits: kept bit for bit when the matrix is BF16,
   * otherwise rounded to its type as their float32 values would be.
   */
  setBf16Rows(first: number, bits: Uint16Array): void {
    if (this.type === "BF16") {
      this.setRowBytes(first, new Uint8Array(bits.buffer, bits.byteOffset, bits.byteLength));
    } else if (this.type === "Q8_0") {
      const start = first * this.rowBytes;
      if (bits.length % this.cols !== 0 || first + bits.length / this.cols > this.rows) {
        throw new Error(
          `PackedMatrix.setBf16Rows: ${bits.length} values from row ${first} do not fit [${this.rows}, ${this.cols}]`,
        );
      }
      quantizeQ8_0FromBf16(bits, this.bytes().subarray(start, start + (bits.length / 32) * 34));
    } else {
      const words = new Uint32Array(bits.length);
      for (let i = 0; i < bits.length; i++) words[i] = bits[i] << 16;
      this.setRows(first, new Float32Array(words.buffer));
    }
  }

  /** Stores already encoded rows (e.g. a bf16 file's bits, unchanged) from row `first`. */
  setRowBytes(first: number, encoded: Uint8Array): void {
    const start = first * this.rowBytes;
    if (encoded.length % this.rowBytes !== 0 || start + encoded.length > this.byteLength) {
      throw new Error(
        `PackedMatrix.setRowBytes: ${encoded.length} bytes from row ${first} do not fit ` +
          `[${this.rows}, ${this.cols}] ${this.type}`,
      );
    }
    this.bytes().set(encoded, start);
  }

  /** Rows first..first+count as float32, into `out` (row-major). */
  decodeRows(
    first: number,
    count: number,
    out: Float32Array = new Float32Array(count * this.cols),
  ): Float32Array {
    const rowBytes = this.rowBytes;
    const bytes = this.bytes().subarray(first * rowBytes, (first + count) * rowBytes);
    decodeInto(this.type, bytes, out, count * this.cols);
    return out;
  }

  /**
   * y = x·Wᵀ (+ bias): x [n, cols] row-major → [n, rows]. `blas` (OpenBLAS) takes the
   * products of several rows; without it, or for one row, the kernels here do.
   */
  multiply(x: Float32Array, n: number, bias?: Float32Array, blas?: Sgemm): Float32Array {
    this.check();
    const { rows, cols } = this;
    if (x.length < n * cols) {
      throw new Error(`PackedMatrix.multiply: x holds ${x.length} values, expected ${n}×${cols}`);
    }
    const out = new Float32Array(n * rows);
    if (n === 0 || rows === 0) return out;
    if (blas && n >= GEMV_MAX_ROWS && cols > 0) this.tiledSgemm(blas, x, n, out);
    else {
      for (let r = 0; r < n; r++) {
        this.gemv(x.subarray(r * cols, (r + 1) * cols), out.subarray(r * rows, (r + 1) * rows));
      }
    }
    if (bias) {
      for (let r = 0; r < n; r++) {
        for (let o = 0; o < rows; o++) out[r * rows + o] += bias[o];
      }
    }
    return out;
  }

  /** One row: y[o] = Σ_i W[o, i] x[i]. */
  private gemv(x: Float32Array, y: Float32Array): void {
    const { rows, cols, arena } = this;
    if (this.type === "F16" || (this.type === "BF16" && cols % 16 !== 0)) {
      // No kernel for these (fp16 only holds the few matrices Q8_0 cannot): a tile at a time.
      gemvByTiles(this, x, y);
      return;
    }
    const blocks = cols / 32;
    const scratch = alignUp(arena.used, ALIGN);
    // Q8_0: the input's int8 values (64 bytes a block, in the kernel's layout), then its scales.
    const inputBytes = this.type === "Q8_0" ? blocks * 64 + blocks * 4 : cols * 4;
    const yAt = alignUp(scratch + inputBytes, ALIGN);
    arena.reserve(yAt + rows * 4);
    const buffer = arena.memory.buffer;
    if (this.type === "Q8_0") {
      const xs = scratch + blocks * 64;
      const scales = new Float32Array(buffer, xs, blocks);
      if (Q8_INPUT_LAYOUT === "int16") {
        quantizeActivationsQ8_0(x, new Int16Array(buffer, scratch, blocks * 32), scales);
      } else {
        const q = inputScratch(cols);
        quantizeActivationsQ8_0(x, q, scales);
        toMagnitudeSign(q, new Uint8Array(buffer, scratch, blocks * 64));
      }
      arena.kernels.q8Gemv(this.offset, scratch, xs, yAt, rows, blocks);
    } else {
      new Float32Array(buffer, scratch, cols).set(x);
      arena.kernels.bf16Gemv(this.offset, scratch, yAt, rows, cols);
    }
    y.set(new Float32Array(arena.memory.buffer, yAt, rows));
  }

  /** Many rows: W a tile of rows at a time into float32, each tile one sgemm. */
  private tiledSgemm(blas: Sgemm, x: Float32Array, n: number, out: Float32Array): void {
    const { rows, cols, arena } = this;
    if (this.type === "Q8_0") {
      // The input on the grid the GEMV quantizes it to (a copy: x is the caller's).
      x = roundToQ8_0Grid(x.subarray(0, n * cols), new Float32Array(n * cols));
    }
    const tileRows = Math.max(1, Math.min(rows, Math.floor(TILE_VALUES / cols)));
    // Q8_0 tiles are decoded by the SIMD kernel into the arena's scratch; others in JS.
    const inArena = this.type === "Q8_0";
    const tileAt = alignUp(arena.used, ALIGN);
    if (inArena) arena.reserve(tileAt + tileRows * cols * 4);
    let tile = inArena
      ? new Float32Array(arena.memory.buffer, tileAt, tileRows * cols)
      : new Float32Array(tileRows * cols);
    for (let first = 0; first < rows; first += tileRows) {
      const count = Math.min(tileRows, rows - first);
      if (inArena) {
        arena.kernels.q8Decode(this.offset + first * this.rowBytes, tileAt, (count * cols) / 32);
        tile = new Float32Array(arena.memory.buffer, tileAt, count * cols);
      } else {
        this.decodeRows(first, count, tile);
      }
      // out[:, first:first+count] = x · tileᵀ, written in place (ldc = rows).
      blas.sgemm(false, true, n, count, cols, 1, x, cols, tile, cols, 0, out.subarray(first), rows);
    }
  }

  /** Frees the stored bytes' claim on their arena (the model is being disposed). */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    const left = (liveMatrices.get(this.arena) ?? 1) - 1;
    liveMatrices.set(this.arena, left);
    if (left === 0) releaseArena(this.arena);
  }

  /** Throws once the matrix is disposed. */
  private check(): void {
    if (this.disposed) throw new Error("PackedMatrix: used after dispose");
  }
}

/**
 * Rows of x from which a product goes through float32 tiles and sgemm rather than one GEMV per
 * row. Measured on the 8B model (bench/load_8b.ts): a 4-row prompt took 39.8 s by tiles where
 * one GEMV took 3.3 s, so a few rows stay on the GEMV.
 */
export const GEMV_MAX_ROWS = 8;
/** Float32 values per tile of the converted weights (1 MiB: stays in a core's L2 cache). */
const TILE_VALUES = 1 << 18;

/** y = W x by float32 tiles of W, for types the GEMV kernel does not read. */
function gemvByTiles(matrix: PackedMatrix, x: Float32Array, y: Float32Array): void {
  const { rows, cols } = matrix;
  const tileRows = Math.max(1, Math.min(rows, Math.floor(TILE_VALUES / Math.max(cols, 1))));
  const tile = new Float32Array(tileRows * cols);
  for (let first = 0; first < rows; first += tileRows) {
    const count = Math.min(tileRows, rows - first);
    matrix.decodeRows(first, count, tile);
    for (let o = 0; o < count; o++) {
      let sum = 0;
      const base = o * cols;
      for (let i = 0; i < cols; i++) sum += tile[base + i] * x[i];
      y[first + o] = sum;
    }
  }
}

/**
 * The input row of a Q8_0 product quantized as llama.cpp's CPU backend does it (ggml's x86
 * `quantize_row_q8_0`, its vec_dot_type for Q8_0 weights): per block of 32, amax = max|x|,
 * d = amax/127 stored as fp16, q = round-half-even(x · (127/amax)) (0 for an all-zero block).
 * `q` gets the int8 values (as int16: the "int16" layout of the GEMV kernel), `scales` each block's
 * fp16 d as float32.
 */
export function quantizeActivationsQ8_0(
  x: Float32Array,
  q: Int16Array,
  scales: Float32Array,
): void {
  for (let b = 0; b < scales.length; b++) scales[b] = quantizeActivationBlock(x, b * 32, q);
}

let inputValues = new Int16Array(0);

/** A reused buffer for `length` quantized input values. */
function inputScratch(length: number): Int16Array {
  if (inputValues.length < length) inputValues = new Int16Array(length);
  return inputValues.subarray(0, length);
}

/**
 * Quantized input values (int8 range) → the "magnitude-sign" layout of the relaxed-SIMD q8Gemv:
 * per block of 32, the 32 bytes |q| then 32 bytes 0xff where q < 0, 0 elsewhere.
 */
export function toMagnitudeSign(q: Int16Array, out: Uint8Array): void {
  for (let start = 0; start < q.length; start += 32) {
    const at = start * 2;
    for (let j = 0; j < 32; j++) {
      const v = q[start + j];
      out[at + j] = v < 0 ? -v : v;
      out[at + 32 + j] = v < 0 ? 0xff : 0;
    }
  }
}

/** One block of `quantizeActivationsQ8_0`: x[start..start+32) → q[start..], returns d. */
function quantizeActivationBlock(x: Float32Array, start: number, q: Int16Array): number {
  let amax = 0;
  for (let j = start; j < start + 32; j++) {
    const a = Math.abs(x[j]);
    if (a > amax) amax = a;
  }
  const id = amax !== 0 ? fround(127 / amax) : 0;
  for (let j = start; j < start + 32; j++) {
    // Adding and subtracting 1.5·2^52 rounds a double to an integer, ties to even (the SIMD
    // rounding mode; Math.round sends ties toward +∞). x·id is a float32 value, |x·id| ≤ 128.
    q[j] = fround(x[j] * id) + ROUND_TO_EVEN - ROUND_TO_EVEN;
  }
  return halfTable[floatToHalf(fround(amax / 127))];
}

/**
 * `x` (whole blocks of 32) replaced by the values its Q8_0 quantization stands for, q · d
 * (`quantizeActivationsQ8_0`'s grid): the many-row product rounds its input to the grid the
 * one-row GEMV multiplies, so a prompt computed at once and token by token agree.
 */
export function roundToQ8_0Grid(x: Float32Array, out: Float32Array = x): Float32Array {
  const q = new Int16Array(x.length);
  for (let start = 0; start < x.length; start += 32) {
    const d = quantizeActivationBlock(x, start, q);
    for (let j = start; j < start + 32; j++) out[j] = q[j] * d;
  }
  return out;
}

const fround = Math.fround;
/** 1.5·2^52: doubles from here on are integers (see quantizeActivationBlock). */
const ROUND_TO_EVEN = 1.5 * 2 ** 52;

/**
 * Q8_0 blocks of `values` into `out` (34 bytes per 32 values): the same bytes as gguf.ts
 * `quantizeQ8_0` (llama.cpp's quantize_row_q8_0_ref: d = amax/127 in float32, q = roundf(x/d)
 * with 1/d in float32, d stored as fp16), written in place with typed arrays.
 */
export function quantizeQ8_0Into(values: Float32Array, out: Uint8Array): void {
  const signed = new Int8Array(out.buffer, out.byteOffset, out.byteLength);
  const blocks = values.length / 32;
  for (let b = 0; b < blocks; b++) quantizeBlock(values, b * 32, out, signed, b * 34);
}

/** One block of 32 values from values[start] into the 34 bytes at out[at] (signed: same bytes). */
function quantizeBlock(
  values: Float32Array,
  start: number,
  out: Uint8Array,
  signed: Int8Array,
  at: number,
): void {
  let amax = 0;
  for (let j = 0; j < 32; j++) {
    const a = Math.abs(values[start + j]);
    if (a > amax) amax = a;
  }
  const d = fround(amax / 127);
  const id = d ? fround(1 / d) : 0;
  const half = floatToHalf(d);
  out[at] = half & 0xff;
  out[at + 1] = half >>> 8;
  for (let j = 0; j < 32; j++) {
    const x = fround(values[start + j] * id);
    // roundf: halves away from zero.
    signed[at + 2 + j] = x < 0 ? -Math.floor(-x + 0.5) : Math.floor(x + 0.5);
  }
}

/**
 * float32 → bf16 bits, round to nearest even, NaN kept quiet: gguf.ts `encodeTensor("BF16")`'s
 * rule (ggml's fp32_to_bf16) over whole arrays.
 */
function roundToBf16(values: Float32Array, out: Uint16Array): void {
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  for (let i = 0; i < bits.length; i++) {
    const x = bits[i];
    out[i] = (x & 0x7fffffff) > 0x7f800000
      ? ((x >>> 16) | 64) & 0xffff
      : ((x + (0x7fff + ((x >>> 16) & 1))) >>> 16) & 0xffff;
  }
}

const blockValues = new Float32Array(32);
const blockBits = new Uint32Array(blockValues.buffer);

/**
 * Q8_0 blocks of bf16 values (given as their bits) into `out`: the same bytes as widening them
 * to float32 and calling `quantizeQ8_0Into`, without the float32 copy (the 8B loader's path).
 */
export function quantizeQ8_0FromBf16(bits: Uint16Array, out: Uint8Array): void {
  const signed = new Int8Array(out.buffer, out.byteOffset, out.byteLength);
  const blocks = bits.length / 32;
  for (let b = 0; b < blocks; b++) {
    const start = b * 32;
    for (let j = 0; j < 32; j++) blockBits[j] = bits[start + j] << 16;
    quantizeBlock(blockValues, 0, out, signed, b * 34);
  }
}

const halfTable = new Float32Array(65536);
for (let bits = 0; bits < 65536; bits++) halfTable[bits] = halfToFloat(bits);

/** `count` float32 values of `bytes` stored as `type` into `out` (what decodeTensor gives). */
function decodeInto(type: PackedType, bytes: Uint8Array, out: Float32Array, count: number): void {
  if (bytes.byteOffset % 2 !== 0) {
    out.set(decodeTensor(type, bytes, count));
    return;
  }
  if (type === "Q8_0") {
    const words = new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >> 1);
    const signed = new Int8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const blocks = count / 32;
    for (let b = 0; b < blocks; b++) {
      const d = halfTable[words[b * 17]];
      const base = b * 34 + 2;
      const at = b * 32;
      for (let j = 0; j < 32; j++) out[at + j] = signed[base + j] * d;
    }
  } else if (type === "F16") {
    const words = new Uint16Array(bytes.buffer, bytes.byteOffset, count);
    for (let i = 0; i < count; i++) out[i] = halfTable[words[i]];
  } else {
    const words = new Uint16Array(bytes.buffer, bytes.byteOffset, count);
    const bits = new Uint32Array(out.buffer, out.byteOffset, count);
    for (let i = 0; i < count; i++) bits[i] = words[i] << 16;
  }
}
