/**
 * Weight precision for inference: `quantize: int8` (GGUF's Q8_0 layout) or `quantize: bf16`,
 * chosen when a model is opened for generate, chat, serve, responses, evaluate and the local
 * judge. Training always runs in fp32.
 *
 * Which tensors: the same rule as the GGUF export (llm/export/gguf.ts `tensorType`), so a model
 * quantized here and the Q8_0 file llama.cpp reads hold the same numbers:
 * - int8: every matrix whose rows are a whole number of 32-value blocks becomes Q8_0 (blocks of
 *   32 with an fp16 scale d = max|x|/127, q = round(x/d)); other matrices fp16;
 * - bf16: every matrix becomes bf16 (round to nearest even);
 * - vectors (norm scales, biases) stay fp32 in both.
 *
 * `applyPrecision` rounds each weight through the 16- or 8-bit codec and stores the result back
 * in fp32: for bf16 its numbers are what the packed kernels compute (up to summation order).
 * int8 also rounds the input of every Q8_0 product to Q8_0 (per block of 32 of the input row,
 * as llama.cpp's CPU backend does: llm/engine/packed_matrix.ts `quantizeActivationsQ8_0`), so
 * its reference is applyPrecision plus that rounding before each such linear layer (what
 * tests/llm/model/packed_test.ts builds). The memory saving comes from holding the packed
 * bytes instead (llm/engine/packed_matrix.ts): the loaders (`loadHfModel`, `loadModel` with
 * `quantize`, which `openModelFolder` calls) build an "empty" model and fill it with
 * `PackedModelFiller`, matrix by matrix; `packModel` packs a model already in memory. A packed
 * model is inference-only: its linear layers and embeddings refuse to record gradients, and
 * `saveModel` refuses it.
 */
import * as tf from "@tensorflow/tfjs";
import { packedByteLength, PackedMatrix, type PackedType } from "../engine/packed_matrix.ts";
import { decodeTensor, encodeTensor, type GgmlType } from "../weights/gguf.ts";
import type { GPTModel } from "./gpt.ts";
import { Embedding, Linear, newVariable } from "./layers.ts";
import { assignStateTensor } from "./sharded.ts";

/** How a model's weights are held for inference. */
export type Quantization = "none" | "bf16" | "int8";

/** Every value of {@link Quantization}, for schemas and flags. */
export const QUANTIZATIONS: readonly Quantization[] = ["none", "bf16", "int8"];

/**
 * Bytes per parameter of the matrices as `quantize` holds them (Q8_0: 34 bytes per block of
 * 32), for memory checks before a model is read; vectors, a small share, are left out.
 */
export function bytesPerParameter(quantize: Quantization): number {
  return quantize === "int8" ? 34 / 32 : quantize === "bf16" ? 2 : 4;
}

/** The storage type of one weight of `shape` under `quantize` (GGUF's names). */
export function storageType(shape: readonly number[], quantize: Quantization): GgmlType {
  if (quantize === "none" || shape.length < 2) return "F32";
  if (quantize === "bf16") return "BF16";
  return shape[shape.length - 1] % 32 === 0 ? "Q8_0" : "F16";
}

/** `values` as they read back after being stored as `type`. */
export function roundTrip(type: GgmlType, values: Float32Array): Float32Array {
  if (type === "F32") return values;
  return decodeTensor(type, encodeTensor(type, values), values.length);
}

/**
 * Rounds every weight of `model` to what `quantize` stores (see the module comment), in place.
 * A tied head is rounded once, with the embedding it is.
 */
export function applyPrecision(model: GPTModel, quantize: Quantization): void {
  if (quantize === "none") return;
  for (const [, variable] of model.uniqueParameters()) {
    const type = storageType(variable.shape, quantize);
    if (type === "F32") continue;
    const rounded = roundTrip(type, variable.dataSync() as Float32Array);
    variable.assign(tf.tensor(rounded, variable.shape, "float32"));
  }
}

/** Checks a `quantize` value read from `where` (a flag, a YAML key). */
export function parseQuantization(value: unknown, where: string): Quantization {
  if (typeof value === "string" && (QUANTIZATIONS as readonly string[]).includes(value)) {
    return value as Quantization;
  }
  throw new Error(
    `${where}: quantize must be one of ${QUANTIZATIONS.join(", ")} (got ${JSON.stringify(value)})`,
  );
}

// ---------------------------------------------------------------------------------------------
// Packed weights: the matrices held as their stored bytes (llm/engine/packed_matrix.ts)

/**
 * One weight matrix that a quantized model holds packed: a linear layer's weight or an
 * embedding table (a tied head shares the embedding's). Filled row block by row block, so a
 * loader never needs the float32 matrix whole.
 */
export interface PackedSlot {
  /** The state_dict name (`trf_blocks.0.att.W_query.weight`, `tok_emb.weight`, ...). */
  name: string;
  rows: number;
  cols: number;
  /** Where the matrix goes (both layers of a tied embedding/head). */
  layers: (Linear | Embedding)[];
}

/**
 * The matrices of `model` that can be packed, by state_dict name: every Linear's weight (the
 * output head too, unless tied: then it is `tok_emb.weight`'s slot) and the token and position
 * embeddings. A vocabulary sharded for WebGPU is not packed (its shards stay float32).
 */
export function packedSlots(model: GPTModel): Map<string, PackedSlot> {
  const slots = new Map<string, PackedSlot>();
  const add = (name: string, layer: Linear | Embedding, rows: number, cols: number) => {
    slots.set(name, { name, rows, cols, layers: [layer] });
  };
  if (model.tok_emb instanceof Embedding) {
    add("tok_emb.weight", model.tok_emb, model.tok_emb.numEmbeddings, model.tok_emb.dim);
  }
  if (model.pos_emb) {
    add("pos_emb.weight", model.pos_emb, model.pos_emb.numEmbeddings, model.pos_emb.dim);
  }
  for (const { name, role, layer } of model.linearLayers()) {
    if (!(layer instanceof Linear)) continue;
    if (role === "head" && model.tiedHead) {
      slots.get("tok_emb.weight")?.layers.push(layer);
      continue;
    }
    add(`${name}.weight`, layer, layer.outFeatures, layer.inFeatures);
  }
  return slots;
}

/** The packed storage type of a slot's matrix under `quantize` (never F32). */
export function packedType(slot: PackedSlot, quantize: Exclude<Quantization, "none">): PackedType {
  return storageType([slot.rows, slot.cols], quantize) as PackedType;
}

function setSlot(slot: PackedSlot, matrix: PackedMatrix): void {
  slot.layers.forEach((layer, i) => {
    // A tied head's variable is the embedding's: disposed once, by the first.
    if (layer instanceof Linear) layer.setPacked(matrix, { disposeVariable: i === 0 });
    else layer.setPacked(matrix);
  });
}

/**
 * Packs the weight matrices of an already loaded float32 `model` in place (each float32 matrix
 * freed as its packed copy is made); other matrices (a sharded vocabulary) are rounded as
 * `applyPrecision` does. The loaders (`loadHfModel`, `loadModel` with `quantize`) pack while
 * reading instead, never holding the float32 model.
 */
export function packModel(model: GPTModel, quantize: Quantization): void {
  if (quantize === "none") return;
  for (const slot of packedSlots(model).values()) {
    const layer = slot.layers[0];
    if (layer.packed) continue;
    const values = layer.weight.dataSync() as Float32Array;
    setSlot(
      slot,
      PackedMatrix.fromFloat32(packedType(slot, quantize), slot.rows, slot.cols, values),
    );
  }
  applyPrecision(model, quantize);
}

/** Whether any matrix of `model` is held packed. */
export function isPacked(model: GPTModel): boolean {
  return [...packedSlots(model).values()].some((slot) => slot.layers[0].packed !== null);
}

/**
 * Bytes the weights of `model` take (or, for an "empty" model about to be loaded with
 * `quantize`, will take): packed matrices at their stored size, everything else float32.
 */
export function weightBytes(model: GPTModel, quantize: Quantization = "none"): number {
  let bytes = 0;
  for (const slot of packedSlots(model).values()) {
    const layer = slot.layers[0];
    if (layer.packed) bytes += layer.packed.byteLength;
    else if (quantize !== "none") {
      bytes += packedByteLength(packedType(slot, quantize), slot.rows, slot.cols);
    }
  }
  for (const [, variable] of model.uniqueParameters()) bytes += variable.size * 4;
  return bytes;
}

/**
 * Fills a model built with init mode "empty" from a checkpoint's tensors, packing each matrix
 * as it arrives (whole, or a block of rows at a time) so no float32 matrix is ever held whole;
 * other tensors (norms, biases) are float32 as usual.
 */
export class PackedModelFiller {
  private readonly slots: Map<string, PackedSlot>;
  private readonly others: Map<string, ReturnType<GPTModel["stateTensors"]>[number]>;
  private readonly filled = new Set<string>();

  /**
   * With `quantize: "none"` the matrices become float32 variables over the given arrays (no
   * copy: a mapped file's pages), which saves allocating and zero-filling them first.
   */
  constructor(readonly model: GPTModel, readonly quantize: Quantization) {
    this.slots = packedSlots(model);
    this.others = new Map(model.stateTensors().map((t) => [t.name, t]));
  }

  /** Whether `name` is one of the packed matrices. */
  isPacked(name: string): boolean {
    return this.slots.has(name);
  }

  /** The storage type `name` is packed as (undefined: float32). */
  typeOf(name: string): PackedType | undefined {
    const slot = this.slots.get(name);
    return slot && this.quantize !== "none" ? packedType(slot, this.quantize) : undefined;
  }

  /** [rows, cols] of a packed matrix. */
  shapeOf(name: string): [number, number] | undefined {
    const slot = this.slots.get(name);
    return slot ? [slot.rows, slot.cols] : undefined;
  }

  private matrix(name: string): PackedMatrix {
    const slot = this.slots.get(name);
    if (!slot) throw new Error(`PackedModelFiller: "${name}" is not a packed matrix`);
    const existing = slot.layers[0].packed;
    if (existing) return existing;
    if (this.quantize === "none") {
      throw new Error(`PackedModelFiller: "${name}" is float32 here; give it whole to set()`);
    }
    const matrix = new PackedMatrix(packedType(slot, this.quantize), slot.rows, slot.cols);
    setSlot(slot, matrix);
    return matrix;
  }

  /** A whole tensor's float32 values (kept, not copied, when not quantized). */
  set(name: string, data: Float32Array): void {
    const slot = this.slots.get(name);
    if (slot && this.quantize === "none") {
      if (data.length !== slot.rows * slot.cols) {
        throw new Error(
          `PackedModelFiller: "${name}" [${slot.rows}, ${slot.cols}] needs ${
            slot.rows * slot.cols
          } values, got ${data.length}`,
        );
      }
      const variable = newVariable([slot.rows, slot.cols], data);
      for (const layer of slot.layers) layer.weight = variable;
      this.filled.add(name);
      return;
    }
    if (slot) {
      this.setRows(name, 0, data);
      return;
    }
    const target = this.others.get(name);
    if (!target) throw new Error(`PackedModelFiller: the model has no tensor "${name}"`);
    assignStateTensor(target, data);
    this.filled.add(name);
  }

  /** Rows `first`.. of a packed matrix, as float32 values (whole rows). */
  setRows(name: string, first: number, data: Float32Array): void {
    const matrix = this.matrix(name);
    matrix.setRows(first, data);
    if (first + data.length / matrix.cols === matrix.rows) this.filled.add(name);
  }

  /** Rows `first`.. of a bf16 matrix from bf16 bits (kept exactly, when it is packed as BF16). */
  setBf16Rows(name: string, first: number, bits: Uint16Array): void {
    const matrix = this.matrix(name);
    matrix.setBf16Rows(first, bits);
    if (first + bits.length / matrix.cols === matrix.rows) this.filled.add(name);
  }

  /** Throws naming the tensors never filled. */
  checkComplete(source: string): void {
    const missing = [...this.slots.keys(), ...this.others.keys()].filter((n) =>
      !this.filled.has(n)
    );
    if (missing.length > 0) {
      throw new Error(
        `${source}: no values were read for ${missing.map((n) => `"${n}"`).join(", ")}`,
      );
    }
  }
}
