/**
 * Packed (quantized) weights against the reference: the kernels against plain loops over the
 * decoded weights (Q8_0: ggml's q8_0 × q8_0 dot product, the input quantized as llama.cpp's CPU
 * backend does), and whole models loaded with `quantize` against the same checkpoint loaded in
 * float32 and rounded by `applyPrecision` (llm/model/precision.ts), for int8 with the inputs of
 * the Q8_0 linear layers rounded to the Q8_0 grid too — same logits up to summation order (and,
 * for int8, the rare input value that float32 summation order moves across a rounding
 * boundary), same greedy tokens, and the stored bytes the formats promise.
 *
 * Run on the cpu engine (BLAS + the fused ops), where the packed GEMV and the tiled sgemm both
 * run: one-token steps take the GEMV, the prompt takes the tiles.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { initEngine } from "../../../llm/engine/backend.ts";
import { blasInUse } from "../../../llm/engine/cpu_kernels.ts";
import {
  GEMV_MAX_ROWS,
  PackedMatrix,
  type PackedType,
  quantizeActivationsQ8_0,
  roundToQ8_0Grid,
  toMagnitudeSign,
} from "../../../llm/engine/packed_matrix.ts";
import { buildModule } from "../../../llm/engine/wasm/encoder.ts";
import { Q8_GEMV_SHAPE, q8GemvBuilder } from "../../../llm/engine/wasm/packed_kernels.ts";
import { loadHfModel } from "../../../llm/families/load.ts";
import { generate } from "../../../llm/model/generate.ts";
import { GPTModel } from "../../../llm/model/gpt.ts";
import { Linear } from "../../../llm/model/layers.ts";
import {
  applyPrecision,
  isPacked,
  packedSlots,
  packModel,
  type Quantization,
  storageType,
  weightBytes,
} from "../../../llm/model/precision.ts";
import { loadModel, saveModel } from "../../../llm/model/weights_io.ts";
import { SeededRandom } from "../../../llm/random.ts";
import { decodeTensor, encodeTensor, halfToFloat } from "../../../llm/weights/gguf.ts";
import { openSafetensors } from "../../../llm/weights/safetensors.ts";

await initEngine({ backend: "cpu", log: () => {} });
const FIXTURES = new URL("../../fixtures/hf/", import.meta.url).pathname;

function randomValues(n: number, rng: SeededRandom, scale = 1): Float32Array {
  return Float32Array.from({ length: n }, () => (2 * rng.next() - 1) * scale);
}

/**
 * y = x·Wᵀ in double precision over W as `type` decodes it; for Q8_0 over x rounded to the Q8_0
 * grid as well (what llama.cpp multiplies).
 */
function plainProduct(type: PackedType, w: Float32Array, x: Float32Array, n: number, rows: number) {
  const cols = w.length / rows;
  const decoded = decodeTensor(type, encodeTensor(type, w), w.length);
  if (type === "Q8_0") {
    const grid = new Float32Array(x.length);
    for (let r = 0; r < n; r++) {
      const { q, d } = ggmlQuantizeRow(x.subarray(r * cols, (r + 1) * cols));
      q.forEach((v, i) => grid[r * cols + i] = v * d[i >> 5]);
    }
    x = grid;
  }
  const out = new Float64Array(n * rows);
  for (let r = 0; r < n; r++) {
    for (let o = 0; o < rows; o++) {
      let sum = 0;
      for (let i = 0; i < cols; i++) sum += decoded[o * cols + i] * x[r * cols + i];
      out[r * rows + o] = sum;
    }
  }
  return out;
}

Deno.test("Q8_0 packing rounds ties and extremes as llama.cpp's reference does", () => {
  // Halves (x/d = k + 0.5) round away from zero; an all-zero block has d = 0.
  const values = new Float32Array(96);
  for (let j = 0; j < 32; j++) values[j] = (j - 16) * 0.5 + (j === 5 ? 127 : 0);
  for (let j = 32; j < 64; j++) values[j] = j % 2 ? -1e-8 : 3e4;
  const matrix = PackedMatrix.fromFloat32("Q8_0", 1, 96, values);
  try {
    assert.deepEqual(matrix.bytes(), encodeTensor("Q8_0", values));
  } finally {
    matrix.dispose();
  }
});

/**
 * ggml's x86 quantize_row_q8_0 (the AVX2 path llama.cpp's CPU backend quantizes a Q8_0
 * product's input with), written from its rule: per block of 32, amax = max|x|,
 * d = fp16(amax/127) (float32 division), id = 127/amax in float32 (0 for a zero block),
 * q = x·id in float32 rounded to nearest, ties to even (_mm256_round_ps, _MM_ROUND_NEAREST).
 */
function ggmlQuantizeRow(x: Float32Array): { q: Int8Array; d: Float32Array } {
  const blocks = x.length / 32;
  const q = new Int8Array(x.length);
  const d = new Float32Array(blocks);
  for (let b = 0; b < blocks; b++) {
    const block = x.subarray(b * 32, b * 32 + 32);
    const amax = Math.max(...block.map(Math.abs));
    const half = encodeTensor("F16", Float32Array.of(Math.fround(amax / 127)));
    d[b] = decodeTensor("F16", half, 1)[0];
    const id = amax === 0 ? 0 : Math.fround(127 / amax);
    block.forEach((v, j) => {
      const scaled = Math.fround(v * id);
      const floor = Math.floor(scaled);
      const fraction = scaled - floor;
      const even = floor % 2 === 0 ? floor : floor + 1;
      q[b * 32 + j] = fraction > 0.5 ? floor + 1 : fraction < 0.5 ? floor : even;
    });
  }
  return { q, d };
}

/**
 * ggml's vec_dot_q8_0_q8_0 over the stored bytes of one row: Σ_b fp32(d_w) · fp32(d_x) ·
 * Σ_j q_w · q_x, the block scales multiplied in float32, the sums in double precision here.
 */
function ggmlDotQ8_0(row: Uint8Array, x: { q: Int8Array; d: Float32Array }): number {
  const view = new DataView(row.buffer, row.byteOffset, row.byteLength);
  let sum = 0;
  for (let b = 0; b < x.d.length; b++) {
    let integer = 0;
    for (let j = 0; j < 32; j++) integer += view.getInt8(b * 34 + 2 + j) * x.q[b * 32 + j];
    sum += Math.fround(halfToFloat(view.getUint16(b * 34, true)) * x.d[b]) * integer;
  }
  return sum;
}

Deno.test("a Q8_0 product's input is quantized as llama.cpp's CPU backend does", () => {
  const rng = new SeededRandom(19);
  const x = new Float32Array(32 * 6);
  // Block 0: amax 127, so id = 1 and x·id is x itself: every .5 is a tie (to even, not away).
  for (let j = 0; j < 32; j++) x[j] = j === 0 ? 127 : (j - 16) + 0.5;
  // Block 1: all zero (d = 0, q = 0). Block 2: one large value among tiny ones.
  for (let j = 0; j < 32; j++) x[64 + j] = j === 9 ? -3e4 : 1e-3 * (j - 16);
  // Blocks 3–5: random, and one where amax/127 is an fp16 subnormal.
  x.set(randomValues(64, rng, 3), 96);
  x.set(randomValues(32, rng, 1e-4), 160);
  const q = new Int16Array(x.length);
  const d = new Float32Array(6);
  quantizeActivationsQ8_0(x, q, d);
  const want = ggmlQuantizeRow(x);
  assert.deepEqual(Array.from(q), Array.from(want.q));
  assert.deepEqual(d, want.d);
  // Ties went to even (2.5 → 2, 4.5 → 4, −2.5 → −2), where C's roundf goes away from zero.
  assert.deepEqual([q[18], q[20], q[13]], [2, 4, -2]);
  assert.deepEqual(Array.from(q.subarray(32, 64)), new Array(32).fill(0));
  assert.equal(d[1], 0);
  // The grid the prompt path rounds to: q·d, per value.
  const grid = roundToQ8_0Grid(x, new Float32Array(x.length));
  grid.forEach((v, i) => assert.equal(v, Math.fround(want.q[i] * want.d[i >> 5]), `[${i}]`));
});

Deno.test("Q8_0 GEMV = ggml's q8_0 × q8_0 dot product over the stored bytes", () => {
  const rng = new SeededRandom(7);
  // 13 rows (not a multiple of 4), 800 columns: 25 blocks (whole groups of 4 and a tail).
  for (const [rows, cols] of [[13, 800], [6, 32], [3, 128]]) {
    const w = randomValues(rows * cols, rng);
    const matrix = PackedMatrix.fromFloat32("Q8_0", rows, cols, w);
    try {
      // Inputs with a wide range inside a block (most values fall in the lowest steps).
      const x = randomValues(cols, rng).map((v, i) => i % 7 === 0 ? v * 1e-3 : v);
      const got = matrix.multiply(x, 1);
      const quantized = ggmlQuantizeRow(x);
      for (let o = 0; o < rows; o++) {
        const row = matrix.bytes().subarray(o * matrix.rowBytes, (o + 1) * matrix.rowBytes);
        const want = ggmlDotQ8_0(row, quantized);
        // Only the float32 summation of the blocks differs: a few ulps of the largest terms.
        assert.ok(
          Math.abs(got[o] - want) <= 1e-6 * cols,
          `[${rows}, ${cols}] row ${o}: ${got[o]} vs ${want}`,
        );
      }
    } finally {
      matrix.dispose();
    }
  }
});

Deno.test("every q8Gemv unrolling, with and without relaxed SIMD, = ggml's dot product", () => {
  const rng = new SeededRandom(11);
  const [rows, cols] = [13, 800]; // 13 rows: a multiple of no step; 25 blocks: groups and a tail
  const blocks = cols / 32;
  const matrix = PackedMatrix.fromFloat32("Q8_0", rows, cols, randomValues(rows * cols, rng));
  const x = randomValues(cols, rng).map((v, i) => i % 5 === 0 ? -v * 1e-2 : v);
  const quantized = ggmlQuantizeRow(x);
  const q = Int16Array.from(quantized.q);
  const want = Array.from(
    { length: rows },
    (_, o) =>
      ggmlDotQ8_0(
        matrix.bytes().subarray(o * matrix.rowBytes, (o + 1) * matrix.rowBytes),
        quantized,
      ),
  );
  try {
    for (const relaxedDot of Q8_GEMV_SHAPE.relaxedDot ? [false, true] : [false]) {
      const unrollings: [number, boolean][] = [[1, true], [1, false], [4, false], [3, true]];
      for (const [rowsPerStep, groupBlocks] of unrollings) {
        const shape = { rowsPerStep, groupBlocks, relaxedDot };
        const module = new WebAssembly.Module(buildModule([q8GemvBuilder(shape)]));
        const kernel = new WebAssembly.Instance(module, {}).exports as unknown as {
          memory: WebAssembly.Memory;
          q8Gemv(w: number, xq: number, xs: number, y: number, rows: number, b: number): void;
        };
        kernel.memory.grow(1);
        // y (52 bytes) at 0, the weights at 64, then the input's values and scales.
        const xqAt = 64 * Math.ceil((64 + matrix.byteLength) / 64);
        const [xsAt, yAt] = [xqAt + cols * 2, 0];
        new Uint8Array(kernel.memory.buffer, 64, matrix.byteLength).set(matrix.bytes());
        const xq = new Uint8Array(kernel.memory.buffer, xqAt, cols * 2);
        if (relaxedDot) toMagnitudeSign(q, xq);
        else xq.set(new Uint8Array(q.buffer));
        new Float32Array(kernel.memory.buffer, xsAt, blocks).set(quantized.d);
        // Rows 2.. alone, as a thread's share of the rows is computed.
        kernel.q8Gemv(64 + 2 * matrix.rowBytes, xqAt, xsAt, yAt + 8, rows - 2, blocks);
        kernel.q8Gemv(64, xqAt, xsAt, yAt, 2, blocks);
        const got = new Float32Array(kernel.memory.buffer, yAt, rows);
        for (let o = 0; o < rows; o++) {
          assert.ok(
            Math.abs(got[o] - want[o]) <= 1e-6 * cols,
            `${JSON.stringify(shape)} row ${o}: ${got[o]} vs ${want[o]}`,
          );
        }
      }
    }
  } finally {
    matrix.dispose();
  }
});

const CASES: { type: PackedType; rows: number; cols: number }[] = [
  { type: "Q8_0", rows: 37, cols: 32 * 13 }, // rows not a multiple of 4, many blocks
  { type: "Q8_0", rows: 5, cols: 32 },
  { type: "BF16", rows: 29, cols: 16 * 11 },
  { type: "BF16", rows: 7, cols: 24 }, // not whole 16-value steps: the tile path
  { type: "F16", rows: 11, cols: 24 },
];

for (const { type, rows, cols } of CASES) {
  Deno.test(`packed ${type} [${rows}, ${cols}]: products equal the loop over decoded weights`, () => {
    const rng = new SeededRandom(rows * cols);
    const w = randomValues(rows * cols, rng);
    const matrix = PackedMatrix.fromFloat32(type, rows, cols, w);
    try {
      // The stored bytes are the GGUF codec's (for Q8_0: llama.cpp's reference quantizer).
      assert.deepEqual(matrix.bytes(), encodeTensor(type, w));
      assert.deepEqual(
        matrix.decodeRows(0, rows),
        decodeTensor(type, encodeTensor(type, w), w.length),
      );
      const bias = randomValues(rows, rng);
      // 1 row: the GEMV; 3 rows: GEMVs; 9 rows with BLAS: float32 tiles into sgemm.
      assert.ok(GEMV_MAX_ROWS > 3 && GEMV_MAX_ROWS <= 9);
      for (const [n, blas] of [[1, undefined], [3, undefined], [9, blasInUse()]] as const) {
        // Inputs with a wide range inside a block.
        const x = randomValues(n * cols, rng).map((v, i) => i % 7 === 0 ? v * 1e-3 : v);
        const got = matrix.multiply(x, n, bias, blas);
        const want = plainProduct(type, w, x, n, rows);
        for (let i = 0; i < want.length; i++) {
          const expected = want[i] + bias[i % rows];
          assert.ok(
            Math.abs(got[i] - expected) <= 2e-6 * Math.sqrt(cols) * (1 + Math.abs(expected)),
            `n=${n} [${i}]: ${got[i]} vs ${expected}`,
          );
        }
      }
    } finally {
      matrix.dispose();
    }
  });
}

/** Max |a − b| / max |b|. */
function relativeDifference(a: Float32Array, b: Float32Array): number {
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return diff / scale;
}

function logitsOf(model: GPTModel, prompt: number[]): Float32Array {
  return tf.tidy(() => {
    const ids = tf.tensor2d([prompt], undefined, "int32");
    return model.forward(ids).dataSync() as Float32Array;
  });
}

/** Stored bytes: Q8_0 34 per 32 values, fp16/bf16 2 per value, as the slot's type says. */
function assertPackedBytes(model: GPTModel, quantize: Exclude<Quantization, "none">): void {
  for (const slot of packedSlots(model).values()) {
    const packed = slot.layers[0].packed;
    assert.ok(packed, `${slot.name} is packed`);
    const values = slot.rows * slot.cols;
    const type = storageType([slot.rows, slot.cols], quantize);
    assert.equal(packed.type, type, slot.name);
    assert.equal(packed.byteLength, type === "Q8_0" ? (values / 32) * 34 : values * 2, slot.name);
    for (const layer of slot.layers) assert.equal(layer.packed, packed, `${slot.name}: shared`);
    assert.throws(() => layer0Weight(slot.layers[0]), /packed as/);
  }
}

const layer0Weight = (layer: { weight: unknown }) => layer.weight;

/**
 * The int8 reference's second half: every linear layer whose weight is Q8_0 rounds its input
 * to the Q8_0 grid first (ggmlQuantizeRow, q·d), as llama.cpp and the packed kernels do.
 */
function roundQ8_0Inputs(model: GPTModel): void {
  for (const { layer } of model.linearLayers()) {
    if (!(layer instanceof Linear)) continue;
    if (storageType([layer.outFeatures, layer.inFeatures], "int8") !== "Q8_0") continue;
    const apply = layer.apply.bind(layer);
    layer.apply = (x: tf.Tensor) => {
      const values = x.dataSync() as Float32Array;
      const grid = new Float32Array(values.length);
      for (let start = 0; start < values.length; start += layer.inFeatures) {
        const { q, d } = ggmlQuantizeRow(values.subarray(start, start + layer.inFeatures));
        q.forEach((v, i) => grid[start + i] = v * d[i >> 5]);
      }
      const rounded = tf.tensor(grid, x.shape, "float32");
      try {
        return apply(rounded);
      } finally {
        rounded.dispose();
      }
    };
  }
}

/** Greedy tokens of `model` after `prompt` (the KV cache: prompt on the tiles, steps on GEMV). */
function greedy(model: GPTModel, prompt: number[], vocabLimit?: number): Promise<number[]> {
  return generate(model, prompt, { maxNewTokens: 12, temperature: 0, vocabLimit });
}

async function comparePacked(
  label: string,
  reference: GPTModel,
  packed: GPTModel,
  quantize: Exclude<Quantization, "none">,
): Promise<void> {
  assert.ok(isPacked(packed), `${label}: packed`);
  assertPackedBytes(packed, quantize);
  const vocab = packed.config.vocab_size;
  const prompt = Array.from({ length: 9 }, (_, i) => (i * 37 + 11) % vocab);
  // 9 tokens: the tiled sgemm path; 3 tokens: one GEMV per row. Measured ≤ 1e-6 (summation
  // order); 1e-4 leaves room for an input value that float32 summation order moves across an
  // int8 rounding boundary (one step of one block: ~1/127 of that block's term), and still
  // fails a reference whose inputs are not rounded (int8: 0.6–3% off).
  for (const tokens of [prompt, prompt.slice(0, 3)]) {
    const difference = relativeDifference(logitsOf(packed, tokens), logitsOf(reference, tokens));
    assert.ok(
      difference < 1e-4,
      `${label}, ${tokens.length} tokens: logits differ by ${difference} (relative)`,
    );
  }
  assert.deepEqual(await greedy(packed, prompt), await greedy(reference, prompt), label);
}

const HF_CASES = ["llama3", "llama3-sharded", "qwen3", "gemma3", "phi3", "phi2", "smollm2"];

for (const quantize of ["int8", "bf16"] as const) {
  for (const name of HF_CASES) {
    Deno.test(`${name} loaded with quantize ${quantize} = float32 + applyPrecision`, async () => {
      const dir = join(FIXTURES, name);
      const { model: reference } = await loadHfModel(dir);
      applyPrecision(reference, quantize);
      if (quantize === "int8") roundQ8_0Inputs(reference);
      const { model: packed } = await loadHfModel(dir, { quantize });
      try {
        await comparePacked(`${name} ${quantize}`, reference, packed, quantize);
        // The packed model holds no float32 matrices: only vectors remain variables.
        for (const [param, variable] of packed.uniqueParameters()) {
          assert.equal(variable.rank, 1, `${param} is a vector`);
        }
      } finally {
        reference.dispose();
        packed.dispose();
      }
    });
  }

  Deno.test(`GPT-2 (our folder) loaded with quantize ${quantize} = float32 + applyPrecision`, async () => {
    // GPT-2 124M's widths cut down: 64-wide rows (whole Q8_0 blocks), a tied head, a 50-token
    // vocabulary (not whole blocks: its head rows are still 64 wide).
    const config = {
      vocab_size: 50,
      context_length: 32,
      emb_dim: 64,
      n_heads: 4,
      n_layers: 2,
      drop_rate: 0,
      qkv_bias: true,
    };
    const dir = await Deno.makeTempDir({ prefix: "packed_gpt2_" });
    const original = new GPTModel(config, { seed: 5, tiedHead: true });
    try {
      await saveModel(dir, original);
      const reference = await loadModel(dir);
      applyPrecision(reference, quantize);
      if (quantize === "int8") roundQ8_0Inputs(reference);
      const packed = await loadModel(dir, { quantize });
      // Packing a loaded float32 model in place gives the same model.
      const packedInPlace = await loadModel(dir);
      packModel(packedInPlace, quantize);
      try {
        await comparePacked(`gpt2 ${quantize}`, reference, packed, quantize);
        await comparePacked(`gpt2 ${quantize} packModel`, reference, packedInPlace, quantize);
        assert.equal(weightBytes(packed), weightBytes(packedInPlace));
        assert.ok(weightBytes(packed) < weightBytes(reference) / (quantize === "int8" ? 3 : 1.9));
      } finally {
        for (const m of [reference, packed, packedInPlace]) m.dispose();
      }
    } finally {
      original.dispose();
      await Deno.remove(dir, { recursive: true });
    }
  });
}

Deno.test("a bf16 checkpoint loaded with quantize bf16 keeps its exact bits", async () => {
  const dir = join(FIXTURES, "qwen3-bf16");
  const { model } = await loadHfModel(dir, { quantize: "bf16" });
  try {
    await using file = await openSafetensors(join(dir, "model.safetensors"));
    const raw = await Deno.readFile(join(dir, "model.safetensors"));
    const q = file.header.tensors.get("model.layers.0.self_attn.q_proj.weight")!;
    assert.equal(q.dtype, "BF16");
    const start = file.header.dataStart + q.dataOffsets[0];
    const fileBits = raw.slice(start, file.header.dataStart + q.dataOffsets[1]);
    const packed = packedSlots(model).get("trf_blocks.0.att.W_query.weight")!.layers[0].packed!;
    assert.equal(packed.type, "BF16");
    assert.deepEqual(packed.bytes(), fileBits);
  } finally {
    model.dispose();
  }
});

Deno.test("a packed model refuses to train", async () => {
  const { model } = await loadHfModel(join(FIXTURES, "llama3"), { quantize: "int8" });
  try {
    const ids = tf.tensor2d([[1, 2, 3]], undefined, "int32");
    assert.throws(
      () => tf.variableGrads(() => tf.sum(model.forward(ids, { training: true })) as tf.Scalar),
      /quantized \(inference only\)/,
    );
    ids.dispose();
  } finally {
    model.dispose();
  }
});
