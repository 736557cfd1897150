/**
 * Seeded parameter initialisation following PyTorch's defaults, so a fresh model of ours is
 * distributed like a fresh `GPTModel` of the book (the values differ: different RNG).
 */
import { SeededRandom } from "../random.ts";

/**
 * How a new layer fills its parameters: seeded random (PyTorch's defaults), zeros (fast, for
 * loading), or "empty": weight matrices of linear layers and embeddings are not allocated at all,
 * because a quantized loader packs each one in (llm/model/precision.ts); vectors are zeros.
 */
export type InitMode = "random" | "zeros" | "empty";

/** How the layers of one model fill their parameters; they draw from one shared RNG in order. */
export interface ParameterInit {
  /** Random (PyTorch's default distributions) or zeros. */
  mode: InitMode;
  /** The generator every layer draws from, so a seed fixes the whole model. */
  rng: SeededRandom;
}

/** U(-bound, bound). */
export function uniform(size: number, bound: number, rng: SeededRandom): Float32Array {
  const out = new Float32Array(size);
  for (let i = 0; i < size; i++) out[i] = (2 * rng.next() - 1) * bound;
  return out;
}

/** N(0, 1) by the Box–Muller transform (both outputs of each pair are used). */
export function standardNormal(size: number, rng: SeededRandom): Float32Array {
  const out = new Float32Array(size);
  for (let i = 0; i < size; i += 2) {
    // 1 - next() lies in (0, 1], so the logarithm is finite.
    const radius = Math.sqrt(-2 * Math.log(1 - rng.next()));
    const angle = 2 * Math.PI * rng.next();
    out[i] = radius * Math.cos(angle);
    if (i + 1 < size) out[i + 1] = radius * Math.sin(angle);
  }
  return out;
}

/**
 * nn.Linear's default: kaiming_uniform_(a=√5) gives U(-1/√in, 1/√in) for the weight, and the
 * bias uses the same bound.
 */
export function linearInitBound(inFeatures: number): number {
  return 1 / Math.sqrt(inFeatures);
}
