/**
 * The book's GPTDatasetV1 and create_dataloader_v1: overlapping windows of `maxLength`
 * tokens every `stride` tokens, each paired with the same window shifted by one (the
 * next-token targets), then grouped into batches.
 */
import { deriveSeed, permutation, SeededRandom } from "../random.ts";
import type { Batch } from "./batch.ts";

export interface Windows {
  maxLength: number;
  count: number;
  /** Start offset of each window in the token stream. */
  starts: Uint32Array;
  tokens: ArrayLike<number>;
}

/** Windows start at 0, stride, 2·stride... while a full window plus its target fits. */
export function slidingWindows(
  tokens: ArrayLike<number>,
  maxLength: number,
  stride: number,
): Windows {
  if (maxLength < 1 || stride < 1) throw new Error("maxLength and stride must be at least 1");
  const starts: number[] = [];
  // range(0, len(token_ids) - max_length, stride) in the book.
  for (let i = 0; i < tokens.length - maxLength; i += stride) starts.push(i);
  return { maxLength, count: starts.length, starts: Uint32Array.from(starts), tokens };
}

export interface LoaderOptions {
  batchSize: number;
  shuffle: boolean;
  dropLast: boolean;
  seed: number;
}

/**
 * Batches over windows. With `shuffle`, each epoch draws its own seeded permutation, so
 * any epoch's order can be recomputed (and a resumed run sees exactly the same batches).
 */
export class WindowLoader {
  constructor(readonly windows: Windows, readonly options: LoaderOptions) {
    if (options.batchSize < 1) throw new Error("batchSize must be at least 1");
  }

  get numBatches(): number {
    const { count } = this.windows, { batchSize, dropLast } = this.options;
    return dropLast ? Math.floor(count / batchSize) : Math.ceil(count / batchSize);
  }

  /** Window indices in the order epoch `epoch` (0-based) visits them. */
  order(epoch: number): Uint32Array {
    const { count } = this.windows;
    if (!this.options.shuffle) return Uint32Array.from({ length: count }, (_, i) => i);
    return permutation(count, new SeededRandom(deriveSeed(this.options.seed, "epoch", epoch)));
  }

  batch(epoch: number, index: number, order = this.order(epoch)): Batch {
    const { batchSize } = this.options, { maxLength, starts, tokens } = this.windows;
    const first = index * batchSize;
    const size = Math.min(batchSize, order.length - first);
    const inputs = new Int32Array(size * maxLength), targets = new Int32Array(size * maxLength);
    for (let row = 0; row < size; row++) {
      const start = starts[order[first + row]];
      for (let t = 0; t < maxLength; t++) {
        inputs[row * maxLength + t] = tokens[start + t];
        targets[row * maxLength + t] = tokens[start + t + 1];
      }
    }
    return { inputs, targets, batchSize: size, seqLen: maxLength };
  }

  /** The batches of `epoch` in order, from index `start` (where a resumed run continues). */
  *batches(epoch = 0, start = 0): Generator<Batch> {
    const order = this.order(epoch);
    for (let i = start; i < this.numBatches; i++) yield this.batch(epoch, i, order);
  }

  /** Tokens the model sees in one epoch (inputs only, as the book counts "tokens seen"). */
  get tokensPerEpoch(): number {
    const full = this.numBatches * this.options.batchSize;
    return Math.min(full, this.windows.count) * this.windows.maxLength;
  }
}
