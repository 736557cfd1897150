/**
 * A small seeded pseudo-random generator (mulberry32) whose whole state is one 32-bit
 * integer, so it can be saved in a checkpoint and resumed exactly.
 */
/** mulberry32's state increment per draw (also used by the dropout loops in llm/engine). */
export const MULBERRY32_STEP = 0x6d2b79f5;

/** mulberry32: fast, seeded, and resumable from `state`. Not for cryptography. */
export class SeededRandom {
  #state: number;

  /** Any number; only its low 32 bits (as unsigned) matter. */
  constructor(seed: number) {
    this.#state = seed >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    let t = (this.#state = (this.#state + MULBERRY32_STEP) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Uniform integer in [0, n). */
  nextInt(n: number): number {
    return Math.floor(this.next() * n);
  }

  /**
   * The whole state (a 32-bit unsigned integer): `new SeededRandom(state)` continues the sequence
   * exactly.
   */
  get state(): number {
    return this.#state;
  }

  set state(value: number) {
    this.#state = value >>> 0;
  }
}

/** A seeded Fisher–Yates permutation of 0..n-1. */
export function permutation(n: number, rng: SeededRandom): Uint32Array {
  const order = new Uint32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = rng.nextInt(i + 1);
    [order[i], order[j]] = [order[j], order[i]];
  }
  return order;
}

/** A seed derived from a base seed and a label, so that e.g. each epoch's shuffle is independent. */
export function deriveSeed(seed: number, ...labels: (string | number)[]): number {
  let h = (seed ^ 0x9e3779b9) >>> 0;
  for (const ch of labels.join("/")) {
    h = Math.imul(h ^ ch.charCodeAt(0), 0x01000193) >>> 0;
  }
  return h;
}
