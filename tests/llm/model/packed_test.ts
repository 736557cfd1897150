/**
 * Packed (quantized) weights against the reference: the kernels against plain loops over the
 * decoded weights, and whole models loaded with `quantize` against the same checkpoint loaded in
 * float32 and rounded by `applyPrecision` (llm/model/precision.ts) — same logits up to
 * summation order, same greedy tokens, and the stored bytes the formats promise.
 *
 * Run on the cpu engine (BLAS + the fused ops), where the packed GEMV and the tiled sgemm both
 * run: one-token steps take the GEMV, the prompt takes the tiles.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { initEngine } from "../../../llm/engine/backend.ts";
import { blasInUse } from "../../../llm/engine/cpu_kernels.ts";
import { GEMV_MAX_ROWS, PackedMatrix, type PackedType } from "../../../llm/engine/packed_matrix.ts";
import { loadHfModel } from "../../../llm/families/load.ts";
import { generate } from "../../../llm/model/generate.ts";
import { GPTModel } from "../../../llm/model/gpt.ts";
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
import { decodeTensor, encodeTensor } from "../../../llm/weights/gguf.ts";
import { openSafetensors } from "../../../llm/weights/safetensors.ts";

await initEngine({ backend: "cpu", log: () => {} });
const FIXTURES = new URL("../../fixtures/hf/", import.meta.url).pathname;

function randomValues(n: number, rng: SeededRandom, scale = 1): Float32Array {
  return Float32Array.from({ length: n }, () => (2 * rng.next() - 1) * scale);
}

/** y = x·Wᵀ in double precision over W as `type` decodes it. */
function plainProduct(type: PackedType, w: Float32Array, x: Float32Array, n: number, rows: number) {
  const cols = w.length / rows;
  const decoded = decodeTensor(type, encodeTensor(type, w), w.length);
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
        // Inputs with a wide range inside a block (the int16 split must keep the small ones).
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
  const difference = relativeDifference(logitsOf(packed, prompt), logitsOf(reference, prompt));
  assert.ok(difference < 1e-4, `${label}: logits differ by ${difference} (relative)`);
  assert.deepEqual(await greedy(packed, prompt), await greedy(reference, prompt), label);
}

const HF_CASES = ["llama3", "llama3-sharded", "qwen3", "gemma3", "phi3", "phi2", "smollm2"];

for (const quantize of ["int8", "bf16"] as const) {
  for (const name of HF_CASES) {
    Deno.test(`${name} loaded with quantize ${quantize} = float32 + applyPrecision`, async () => {
      const dir = join(FIXTURES, name);
      const { model: reference } = await loadHfModel(dir);
      applyPrecision(reference, quantize);
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
