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
 * `applyPrecision` is the reference: it rounds each weight through the 16- or 8-bit codec and
 * stores the result back in fp32, so its numbers are exactly what the packed kernels compute
 * (up to summation order). The memory saving comes from the engine keeping the packed bytes
 * instead (see the engine's packed weights); the quality figures do not depend on which.
 */
import * as tf from "@tensorflow/tfjs";
import { decodeTensor, encodeTensor, type GgmlType } from "../weights/gguf.ts";
import type { GPTModel } from "./gpt.ts";

/** How a model's weights are held for inference. */
export type Quantization = "none" | "bf16" | "int8";

/** Every value of {@link Quantization}, for schemas and flags. */
export const QUANTIZATIONS: readonly Quantization[] = ["none", "bf16", "int8"];

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
