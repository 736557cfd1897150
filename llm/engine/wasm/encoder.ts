/**
 * A small WebAssembly binary writer: just enough to build the SIMD kernels of simd_kernels.ts
 * in TypeScript at start-up, so the repository carries no compiled blobs and needs no toolchain.
 *
 * A `FunctionBuilder` collects one function's body as a stack-machine instruction stream (the
 * method names follow the text format: `f32x4Add()` is `f32x4.add`); `buildModule` wraps the
 * functions in a module with one growable linear memory, its own or imported (shared between
 * threads). Opcodes are those of the WebAssembly 2.0 core spec (fixed-width SIMD: prefix 0xfd +
 * LEB128 sub-opcode), plus the threads proposal's shared-memory limits flag; they were checked
 * against wabt's `wat2wasm` output when this file was written, and the tests run every kernel
 * against the plain-JS loops.
 */

export type ValueType = "i32" | "f32" | "f64" | "v128";

const VALUE_TYPE: Record<ValueType, number> = { i32: 0x7f, f32: 0x7d, f64: 0x7c, v128: 0x7b };

function unsignedLeb(value: number, out: number[]): void {
  do {
    let byte = value & 0x7f;
    value >>>= 7;
    if (value !== 0) byte |= 0x80;
    out.push(byte);
  } while (value !== 0);
}

function signedLeb(value: number, out: number[]): void {
  for (;;) {
    const byte = value & 0x7f;
    value >>= 7;
    const done = (value === 0 && (byte & 0x40) === 0) || (value === -1 && (byte & 0x40) !== 0);
    out.push(done ? byte : byte | 0x80);
    if (done) return;
  }
}

function encodeName(name: string, out: number[]): void {
  const bytes = new TextEncoder().encode(name);
  unsignedLeb(bytes.length, out);
  out.push(...bytes);
}

/** A local variable or parameter, by index. */
export type Local = number & { readonly __local: unique symbol };

export class FunctionBuilder {
  readonly params: ValueType[];
  readonly results: ValueType[];
  private readonly locals: ValueType[] = [];
  private readonly code: number[] = [];

  constructor(readonly name: string, params: ValueType[], results: ValueType[] = []) {
    this.params = params;
    this.results = results;
  }

  /** The i-th parameter. */
  param(i: number): Local {
    if (i >= this.params.length) throw new Error(`${this.name}: no parameter ${i}`);
    return i as Local;
  }

  /** A new local of `type`. */
  local(type: ValueType): Local {
    this.locals.push(type);
    return (this.params.length + this.locals.length - 1) as Local;
  }

  private op(...bytes: number[]): this {
    this.code.push(...bytes);
    return this;
  }

  private simd(subOpcode: number, ...immediates: number[]): this {
    this.code.push(0xfd);
    unsignedLeb(subOpcode, this.code);
    this.code.push(...immediates);
    return this;
  }

  // Control. Blocks carry no values (block type 0x40).
  block(): this {
    return this.op(0x02, 0x40);
  }
  loop(): this {
    return this.op(0x03, 0x40);
  }
  if(): this {
    return this.op(0x04, 0x40);
  }
  end(): this {
    return this.op(0x0b);
  }
  br(depth: number): this {
    return this.op(0x0c, depth);
  }
  brIf(depth: number): this {
    return this.op(0x0d, depth);
  }
  /** Calls the module's function number `index` (its position in `buildModule`'s list). */
  call(index: number): this {
    this.op(0x10);
    unsignedLeb(index, this.code);
    return this;
  }
  /** Pops c, b, a: a if c ≠ 0, else b. */
  select(): this {
    return this.op(0x1b);
  }

  // Locals.
  get(local: Local): this {
    this.op(0x20);
    unsignedLeb(local, this.code);
    return this;
  }
  set(local: Local): this {
    this.op(0x21);
    unsignedLeb(local, this.code);
    return this;
  }
  tee(local: Local): this {
    this.op(0x22);
    unsignedLeb(local, this.code);
    return this;
  }

  // Scalars.
  i32Const(value: number): this {
    this.op(0x41);
    signedLeb(value | 0, this.code);
    return this;
  }
  f32Const(value: number): this {
    const bytes = new Uint8Array(Float32Array.of(value).buffer);
    return this.op(0x43, ...bytes);
  }
  f64Const(value: number): this {
    const bytes = new Uint8Array(Float64Array.of(value).buffer);
    return this.op(0x44, ...bytes);
  }
  i32LtS(): this {
    return this.op(0x48);
  }
  i32GeS(): this {
    return this.op(0x4e);
  }
  i32GtS(): this {
    return this.op(0x4a);
  }
  i32Add(): this {
    return this.op(0x6a);
  }
  i32Sub(): this {
    return this.op(0x6b);
  }
  i32Mul(): this {
    return this.op(0x6c);
  }
  i32And(): this {
    return this.op(0x71);
  }
  i32Shl(): this {
    return this.op(0x74);
  }
  i32ShrU(): this {
    return this.op(0x76);
  }
  f32Mul(): this {
    return this.op(0x94);
  }
  f32Add(): this {
    return this.op(0x92);
  }
  i32Or(): this {
    return this.op(0x72);
  }
  f32ReinterpretI32(): this {
    return this.op(0xbe);
  }
  /** Loads an unsigned 16-bit value (little-endian) at address + offset. */
  i32Load16U(offset = 0): this {
    this.op(0x2f, 1);
    unsignedLeb(offset, this.code);
    return this;
  }
  f32Load(offset = 0): this {
    this.op(0x2a, 2);
    unsignedLeb(offset, this.code);
    return this;
  }
  f32Store(offset = 0): this {
    this.op(0x38, 2);
    unsignedLeb(offset, this.code);
    return this;
  }
  f64Div(): this {
    return this.op(0xa3);
  }
  f32DemoteF64(): this {
    return this.op(0xb6);
  }
  f64Add(): this {
    return this.op(0xa0);
  }

  // SIMD (v128). Loads and stores are unaligned (align hint 0).
  v128Load(offset = 0): this {
    this.simd(0x00, 0);
    unsignedLeb(offset, this.code);
    return this;
  }
  v128Store(offset = 0): this {
    this.simd(0x0b, 0);
    unsignedLeb(offset, this.code);
    return this;
  }
  /** Loads 4 bytes and widens each to a 32-bit lane (a byte mask → i32x4). */
  v128Load8x4U(offset = 0): this {
    // v128.load32_zero then i16x8/i32x4 widening: 4 bytes → 4 × u32.
    this.simd(0x5c, 2);
    unsignedLeb(offset, this.code);
    return this.simd(0x89).simd(0xa9); // i16x8.extend_low_i8x16_u, i32x4.extend_low_i16x8_u
  }
  /** Stores lane `lane` of an i32x4 (4 bytes). */
  v128Store32Lane(lane: number, offset = 0): this {
    this.simd(0x5a, 2);
    unsignedLeb(offset, this.code);
    this.code.push(lane);
    return this;
  }
  v128Const(bytes: Uint8Array): this {
    if (bytes.length !== 16) throw new Error("v128.const needs 16 bytes");
    return this.simd(0x0c, ...bytes);
  }
  i32x4Const(a: number, b: number, c: number, d: number): this {
    return this.v128Const(new Uint8Array(Int32Array.of(a, b, c, d).buffer));
  }
  /** Lanes 0..15 of the concatenation (a, b). */
  i8x16Shuffle(lanes: number[]): this {
    if (lanes.length !== 16) throw new Error("i8x16.shuffle needs 16 lane indices");
    return this.simd(0x0d, ...lanes);
  }
  f64x2Splat(): this {
    return this.simd(0x14);
  }
  f64x2Mul(): this {
    return this.simd(0xf2);
  }
  /** Two f64 lanes → f32 lanes 0–1 (lanes 2–3 zero). */
  f32x4DemoteF64x2Zero(): this {
    return this.simd(0x5e);
  }
  i32x4Splat(): this {
    return this.simd(0x11);
  }
  f32x4Splat(): this {
    return this.simd(0x13);
  }
  f32x4ExtractLane(lane: number): this {
    return this.simd(0x1f, lane);
  }
  f64x2ExtractLane(lane: number): this {
    return this.simd(0x21, lane);
  }
  i32x4Ne(): this {
    return this.simd(0x38);
  }
  i8x16NarrowI16x8U(): this {
    return this.simd(0x66);
  }
  i16x8NarrowI32x4U(): this {
    return this.simd(0x86);
  }
  i32x4LtS(): this {
    return this.simd(0x39);
  }
  i32x4GeU(): this {
    return this.simd(0x40);
  }
  f32x4Lt(): this {
    return this.simd(0x43);
  }
  v128And(): this {
    return this.simd(0x4e);
  }
  v128AndNot(): this {
    return this.simd(0x4f);
  }
  v128Or(): this {
    return this.simd(0x50);
  }
  v128Xor(): this {
    return this.simd(0x51);
  }
  /** bitselect(a, b, mask): bits of a where mask is 1, of b where 0. */
  v128Bitselect(): this {
    return this.simd(0x52);
  }
  f64x2PromoteLowF32x4(): this {
    return this.simd(0x5f);
  }
  f32x4Nearest(): this {
    return this.simd(0x6a);
  }
  i32x4Shl(): this {
    return this.simd(0xab);
  }
  i32x4ShrU(): this {
    return this.simd(0xad);
  }
  i32x4Add(): this {
    return this.simd(0xae);
  }
  i32x4Mul(): this {
    return this.simd(0xb5);
  }
  f32x4Abs(): this {
    return this.simd(0xe0);
  }
  f32x4Sqrt(): this {
    return this.simd(0xe3);
  }
  f32x4Add(): this {
    return this.simd(0xe4);
  }
  f32x4Sub(): this {
    return this.simd(0xe5);
  }
  f32x4Mul(): this {
    return this.simd(0xe6);
  }
  f32x4Div(): this {
    return this.simd(0xe7);
  }
  f32x4Max(): this {
    return this.simd(0xe9);
  }
  f64x2Add(): this {
    return this.simd(0xf0);
  }
  i32x4TruncSatF32x4S(): this {
    return this.simd(0xf8);
  }
  f32x4ConvertI32x4S(): this {
    return this.simd(0xfa);
  }
  /** Bytes 0–7 (signed) widened to eight i16 lanes. */
  i16x8ExtendLowI8x16S(): this {
    return this.simd(0x87);
  }
  /** Bytes 8–15 (signed) widened to eight i16 lanes. */
  i16x8ExtendHighI8x16S(): this {
    return this.simd(0x88);
  }
  /** i16 lanes 0–3 (signed) widened to four i32 lanes. */
  i32x4ExtendLowI16x8S(): this {
    return this.simd(0xa7);
  }
  /** i16 lanes 4–7 (signed) widened to four i32 lanes. */
  i32x4ExtendHighI16x8S(): this {
    return this.simd(0xa8);
  }
  /** Pairwise products of i16 lanes summed into four i32 lanes. */
  i32x4DotI16x8S(): this {
    return this.simd(0xba);
  }
  i32x4ShrS(): this {
    return this.simd(0xac);
  }
  i8x16Sub(): this {
    return this.simd(0x71);
  }
  /**
   * Relaxed SIMD: pops a (i8x16), b (i8x16 with values 0–127), c (i32x4); each i32 lane of c
   * plus the four products a·b of its bytes. Exact (no saturation, the same on every engine)
   * while b stays within 0–127; x64 runs it as one vpdpbusd where AVX-VNNI exists.
   */
  i32x4RelaxedDotI8x16I7x16AddS(): this {
    return this.simd(0x113);
  }
  /** Loads 8 bytes and widens each (signed) to an i16 lane: 8 int8 weights → i16x8. */
  v128Load8x8S(offset = 0): this {
    this.simd(0x01, 0);
    unsignedLeb(offset, this.code);
    return this;
  }
  /** Pops an address and a v128; loads 2 bytes into i16 lane `lane` of the v128. */
  v128Load16Lane(lane: number, offset = 0): this {
    this.simd(0x55, 0);
    unsignedLeb(offset, this.code);
    this.code.push(lane);
    return this;
  }

  /** The function's code entry: locals then body. */
  encodeBody(): number[] {
    const body: number[] = [];
    // One local declaration per local (count 1): simple, and the list is short.
    unsignedLeb(this.locals.length, body);
    for (const type of this.locals) body.push(1, VALUE_TYPE[type]);
    body.push(...this.code, 0x0b);
    const entry: number[] = [];
    unsignedLeb(body.length, entry);
    entry.push(...body);
    return entry;
  }
}

function section(id: number, content: number[], out: number[]): void {
  out.push(id);
  unsignedLeb(content.length, out);
  out.push(...content);
}

/** Where a module's memory comes from (see `buildModule`). */
export interface ImportedMemory {
  /**
   * true: a shared memory (a SharedArrayBuffer underneath) that several instances on several
   * threads use at once; it must be declared with a maximum, here the full 4 GiB.
   */
  shared: boolean;
}

/**
 * A module with the functions (exported under their names) and one memory exported as "memory"
 * (`initialPages` of 64 KiB; growable to 4 GiB). With `importMemory` the memory is not the
 * module's own but imported as env.memory (and exported again under the same name), so the
 * caller creates it, e.g. `new WebAssembly.Memory({ initial, maximum: 65536, shared: true })`,
 * and instances on other threads can share it.
 */
export function buildModule(
  functions: FunctionBuilder[],
  initialPages = 1,
  importMemory?: ImportedMemory,
): Uint8Array<ArrayBuffer> {
  const out = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
  const types: number[] = [];
  unsignedLeb(functions.length, types);
  for (const f of functions) {
    types.push(0x60);
    unsignedLeb(f.params.length, types);
    types.push(...f.params.map((t) => VALUE_TYPE[t]));
    unsignedLeb(f.results.length, types);
    types.push(...f.results.map((t) => VALUE_TYPE[t]));
  }
  section(1, types, out);
  // Memory limits: flag 0x01 = a minimum and a maximum; 0x03 = the same, shared.
  const limits: number[] = [importMemory?.shared ? 0x03 : 0x01];
  unsignedLeb(initialPages, limits);
  unsignedLeb(65536, limits);
  if (importMemory) {
    const imports: number[] = [1];
    encodeName("env", imports);
    encodeName("memory", imports);
    imports.push(0x02, ...limits); // import kind 2: a memory
    section(2, imports, out);
  }
  const funcs: number[] = [];
  unsignedLeb(functions.length, funcs);
  functions.forEach((_, i) => unsignedLeb(i, funcs));
  section(3, funcs, out);
  if (!importMemory) section(5, [1, ...limits], out);
  const exports: number[] = [];
  unsignedLeb(functions.length + 1, exports);
  functions.forEach((f, i) => {
    encodeName(f.name, exports);
    exports.push(0x00);
    unsignedLeb(i, exports);
  });
  encodeName("memory", exports);
  exports.push(0x02, 0x00);
  section(7, exports, out);
  const code: number[] = [];
  unsignedLeb(functions.length, code);
  for (const f of functions) code.push(...f.encodeBody());
  section(10, code, out);
  return Uint8Array.from(out);
}
