/**
 * Batches of tokenized instruction examples exactly as the book's `custom_collate_fn` (ch07)
 * builds them, and a seeded loader over them (the book's DataLoader: batch 8, shuffled training
 * order, `drop_last` for training).
 */
import { deriveSeed, permutation, SeededRandom } from "../random.ts";
import type { Batch } from "./batch.ts";
import type { TokenizedExample } from "./instructions.ts";

export interface CollateOptions {
  /** Default 50256 (GPT-2's `<|endoftext|>`). */
  padTokenId?: number;
  /**
   * The id appended to every example, which the model learns to end its answer with. Default:
   * `padTokenId` (the book pads with the end-of-text it appends). A chat model's end of turn
   * (Qwen3's `<|im_end|>`, Llama 3's `<|eot_id|>`) or its eos when it pads with another id.
   */
  endTokenId?: number;
  /** Default -100 (PyTorch's cross-entropy `ignore_index`). */
  ignoreIndex?: number;
  /** Keep only the first this many positions (the book passes 1024). Default: no limit. */
  allowedMaxLength?: number;
  /** Exercise 7.2: the prompt's targets are ignored too, so only the response is learned. */
  maskInstructions?: boolean;
}

/**
 * The book's `custom_collate_fn`: every example gets one end-of-text appended and is padded
 * with `padTokenId` to the batch's longest example + 1; inputs are `padded[:-1]`, targets
 * `padded[1:]`; every target equal to `padTokenId` after the first becomes `ignoreIndex`; with
 * `maskInstructions`, `targets[:promptLength-1]` too; then both are cut to `allowedMaxLength`.
 *
 * With an `endTokenId` other than the pad id (open models), the appended token is the end id
 * and every target after it (the padding) is ignored: the same batches, where the two ids differ.
 */
export function collateInstructions(
  examples: readonly TokenizedExample[],
  options: CollateOptions = {},
): Batch {
  const pad = options.padTokenId ?? 50256;
  const end = options.endTokenId ?? pad;
  const ignore = options.ignoreIndex ?? -100;
  if (examples.length === 0) throw new Error("collateInstructions: empty batch");
  // batch_max_length = max(len(item) + 1); inputs and targets have one position less.
  const padded = Math.max(...examples.map((e) => e.ids.length + 1));
  const cols = Math.min(padded - 1, options.allowedMaxLength ?? Infinity);
  if (cols < 1) {
    throw new Error(`collateInstructions: allowedMaxLength ${options.allowedMaxLength} < 1`);
  }
  const rows = examples.length;
  const inputs = new Int32Array(rows * cols), targets = new Int32Array(rows * cols);
  const row = new Int32Array(padded);
  examples.forEach((example, r) => {
    row.fill(pad);
    row.set(example.ids);
    row[example.ids.length] = end;
    // `targets[indices[1:]] = ignore_index` over the positions where the target is the pad id
    // (the book, where the end is the pad id); else every target after the end id.
    let padsSeen = 0;
    for (let t = 0; t < cols; t++) {
      inputs[r * cols + t] = row[t];
      let target = row[t + 1];
      if (end === pad ? target === pad && padsSeen++ > 0 : t > example.ids.length - 1) {
        target = ignore;
      }
      if (options.maskInstructions && t < example.promptLength - 1) target = ignore;
      targets[r * cols + t] = target;
    }
  });
  return { inputs, targets, batchSize: rows, seqLen: cols };
}

export interface InstructionLoaderOptions extends CollateOptions {
  /** Default 8 (the book's). */
  batchSize?: number;
  /** Shuffle each epoch with its own seeded permutation (training). Default false. */
  shuffle?: boolean;
  /** Drop a last, smaller batch (training). Default false. */
  dropLast?: boolean;
  /** Default 123 (the book's `torch.manual_seed(123)`; the orders differ from torch's RNG). */
  seed?: number;
}

/**
 * The book's `DataLoader(dataset, batch_size, collate_fn, shuffle, drop_last)`. Each epoch's
 * order comes from the seed and the epoch number alone (as `WindowLoader`), so a resumed run sees
 * the same batches. It is an `EpochBatches` source for the training loop (llm/train/loop.ts).
 */
export class InstructionLoader {
  readonly batchSize: number;

  constructor(
    readonly examples: readonly TokenizedExample[],
    readonly options: InstructionLoaderOptions = {},
  ) {
    this.batchSize = options.batchSize ?? 8;
    if (!(Number.isInteger(this.batchSize) && this.batchSize >= 1)) {
      throw new Error(
        `InstructionLoader: batchSize must be an integer ≥ 1, got ${options.batchSize}`,
      );
    }
  }

  get numBatches(): number {
    const n = this.examples.length;
    return this.options.dropLast ? Math.floor(n / this.batchSize) : Math.ceil(n / this.batchSize);
  }

  /** Example indices in the order epoch `epoch` (0-based) visits them. */
  order(epoch: number): Uint32Array {
    const n = this.examples.length;
    if (!this.options.shuffle) return Uint32Array.from({ length: n }, (_, i) => i);
    return permutation(n, new SeededRandom(deriveSeed(this.options.seed ?? 123, "epoch", epoch)));
  }

  batch(epoch: number, index: number, order = this.order(epoch)): Batch {
    if (!(index >= 0 && index < this.numBatches)) {
      throw new Error(`InstructionLoader: batch ${index} out of range 0..${this.numBatches - 1}`);
    }
    const first = index * this.batchSize;
    const picked = Array.from(
      order.subarray(first, Math.min(first + this.batchSize, order.length)),
      (i) => this.examples[i],
    );
    return collateInstructions(picked, this.options);
  }

  /** The batches of `epoch` in order, from index `start` (a resumed run skips the ones done). */
  *batches(epoch = 0, start = 0): Generator<Batch> {
    const order = this.order(epoch);
    for (let i = start; i < this.numBatches; i++) yield this.batch(epoch, i, order);
  }
}
