/**
 * Vocabulary-sized matrices split into row shards, for GPUs that cannot bind them whole.
 *
 * WebGPU binds each tensor of a kernel as one storage buffer, and a buffer larger than the
 * device's `maxStorageBufferBindingSize` is refused. tfjs-backend-webgpu does not notice: the
 * kernel silently produces zeros (measured on lavapipe with GPT-2's table: every logit 0).
 * Mesa's software driver (lavapipe) allows 128 MiB, while GPT-2's 50,257 × 768 token embedding
 * takes 147 MiB (gpt2-xl's 50,257 × 1,600 takes 321 MB). So the token embedding and the output head are kept as a few
 * row blocks of the vocabulary, each below the limit:
 *
 * - lookup: each shard gathers the ids that fall in its rows (others read row 0 and are masked
 *   to zero), and the shards' results are summed: every id is in exactly one shard, so the sum
 *   is exact;
 * - output head: x·Wᵀ = concat over shards of x·W_sᵀ along the vocabulary axis.
 *
 * The shards are ordinary trainable variables (the optimizer updates each), listed under names
 * such as `tok_emb.weight[0:25129]` (rows 0..25128). State dicts and safetensors files still hold
 * one `tok_emb.weight`: `StateTensor` records which variables make up each state_dict tensor, and
 * saving concatenates them.
 */
import * as tf from "@tensorflow/tfjs";
import {
  Embedding,
  Linear,
  type LinearLayer,
  type Module,
  type NamedParameter,
  newVariable,
  prefixed,
} from "./layers.ts";
import type { SeededRandom } from "../random.ts";
import { linearInitBound, type ParameterInit, standardNormal, uniform } from "./init.ts";

const BYTES_PER_FLOAT32 = 4;

/** One state_dict tensor and the variables holding it: itself, or its row shards in order. */
export interface StateTensor {
  /** The state_dict name. */
  name: string;
  /** The whole tensor's shape (rows summed over the parts). */
  shape: number[];
  /** Consecutive row blocks (one element when not sharded); they concatenate along axis 0. */
  // deno-doc-ignore private-type-ref -- a tfjs type (deno doc counts node_modules as local)
  parts: tf.Variable[];
}

/**
 * Row counts of the fewest equal-as-possible blocks of a float32 [rows, cols] matrix that each
 * fit in `maxBytes`: `[rows]` when the whole matrix fits.
 */
export function planRowShards(rows: number, cols: number, maxBytes: number): number[] {
  const rowBytes = cols * BYTES_PER_FLOAT32;
  if (rows * rowBytes <= maxBytes) return [rows];
  const maxRows = Math.floor(maxBytes / rowBytes);
  if (maxRows < 1) {
    throw new Error(
      `planRowShards: one row of ${cols} float32 values (${rowBytes} bytes) exceeds the ` +
        `binding limit of ${maxBytes} bytes`,
    );
  }
  const count = Math.ceil(rows / maxRows);
  const base = Math.floor(rows / count);
  const extra = rows % count; // the first `extra` shards take one row more
  return Array.from({ length: count }, (_, i) => base + (i < extra ? 1 : 0));
}

/** `name[start:end]`, Python slice notation for the rows a shard holds. */
function shardName(name: string, start: number, count: number): string {
  return `${name}[${start}:${start + count}]`;
}

function rowStarts(rowCounts: readonly number[]): number[] {
  const starts: number[] = [];
  let next = 0;
  for (const count of rowCounts) {
    starts.push(next);
    next += count;
  }
  return starts;
}

/** A zero-initialised `ParameterInit` (the shards' values are assigned right after). */
function zerosInit(rng: SeededRandom) {
  return { mode: "zeros" as const, rng };
}

/** What a `ShardedEmbedding` is built from. */
export interface ShardedEmbeddingOptions {
  /** Rows of the whole table (the vocabulary size). */
  numEmbeddings: number;
  /** Width of each row. */
  dim: number;
  /** Rows of each shard, in order; they sum to `numEmbeddings`. */
  rowCounts: readonly number[];
  /**
   * The whole table, row-major (e.g. the N(0, 1) draw an unsharded Embedding would make), or
   * "zeros".
   */
  values: Float32Array | "zeros";
  /** Handed to the shards' zero init, which draws nothing from it: the values come from `values`. */
  rng: SeededRandom;
}

/** nn.Embedding whose [numEmbeddings, dim] table is stored as row shards. */
export class ShardedEmbedding implements Module {
  /** The row blocks, in order; each an Embedding of its own rows. */
  readonly shards: Embedding[];
  /** The global row id where each shard starts (ascending, first 0). */
  readonly rowStarts: number[];

  /** Rows of the whole table. */
  readonly numEmbeddings: number;
  /** Width of each row. */
  readonly dim: number;

  /** The shards, filled from `options.values` (built by `vocabEmbedding`). */
  constructor(options: ShardedEmbeddingOptions) {
    const { numEmbeddings, dim, rowCounts, values, rng } = options;
    this.numEmbeddings = numEmbeddings;
    this.dim = dim;
    const total = rowCounts.reduce((a, b) => a + b, 0);
    if (total !== numEmbeddings) {
      throw new Error(`ShardedEmbedding: shards hold ${total} rows, expected ${numEmbeddings}`);
    }
    this.rowStarts = rowStarts(rowCounts);
    this.shards = rowCounts.map((count) => new Embedding(count, dim, zerosInit(rng)));
    if (values !== "zeros") {
      const parts = this.shards.map((shard) => shard.weight);
      assignStateTensor({ name: "ShardedEmbedding", shape: [numEmbeddings, dim], parts }, values);
    }
  }

  /** ids: int32 [...] → [..., dim], the rows of the whole table. */
  // deno-doc-ignore private-type-ref -- a tfjs type (deno doc counts node_modules as local)
  apply(ids: tf.Tensor): tf.Tensor {
    if (ids.dtype !== "int32") {
      throw new Error(`ShardedEmbedding: token ids must be int32, got ${ids.dtype}`);
    }
    let sum: tf.Tensor | undefined;
    this.shards.forEach((shard, i) => {
      const local = tf.sub(ids, tf.scalar(this.rowStarts[i], "int32"));
      const inShard = tf.logicalAnd(
        tf.greaterEqual(local, tf.scalar(0, "int32")),
        tf.less(local, tf.scalar(shard.numEmbeddings, "int32")),
      );
      // Ids of other shards read row 0 and are then zeroed; so is their gradient (0 · dy).
      const rows = shard.apply(tf.where(inShard, local, tf.zerosLike(local)));
      const part = tf.mul(rows, tf.expandDims(tf.cast(inShard, "float32"), -1));
      sum = sum ? tf.add(sum, part) : part;
    });
    return sum!;
  }

  /** The shards, named `prefix.weight[start:end]`. */
  namedParameters(prefix: string): NamedParameter[] {
    const name = prefixed(prefix, "weight");
    return this.shards.map((shard, i) => [
      shardName(name, this.rowStarts[i], shard.numEmbeddings),
      shard.weight,
    ]);
  }
}

/**
 * An nn.Linear(inFeatures, outFeatures) whose [outFeatures, inFeatures] weight is stored as row
 * shards (blocks of output features): the GPT output head over the vocabulary. Bias-free unless
 * given one (Phi-2's head); the bias [outFeatures] is small and stays whole.
 */
export class ShardedLinear implements LinearLayer {
  readonly shards: Linear[];
  readonly rowStarts: number[];
  /** The bias [outFeatures], or null. */
  // deno-doc-ignore private-type-ref -- a tfjs type (deno doc counts node_modules as local)
  readonly bias: tf.Variable | null;

  /**
   * `weights`: the whole weight, row-major ([out, in], e.g. the U(-1/√in, 1/√in) draw an unsharded
   * Linear would make), "zeros", or the shards of an embedding to share (a tied head).
   */
  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    rowCounts: readonly number[],
    weights: Float32Array | "zeros" | { shared: readonly tf.Variable[] },
    rng: SeededRandom,
    bias?: Float32Array | "zeros",
  ) {
    const total = rowCounts.reduce((a, b) => a + b, 0);
    if (total !== outFeatures) {
      throw new Error(`ShardedLinear: shards hold ${total} rows, expected ${outFeatures}`);
    }
    this.rowStarts = rowStarts(rowCounts);
    const shared = typeof weights === "object" && "shared" in weights ? weights.shared : undefined;
    if (shared && shared.length !== rowCounts.length) {
      throw new Error(
        `ShardedLinear: ${shared.length} shared shards for ${rowCounts.length} row blocks`,
      );
    }
    this.shards = rowCounts.map((count, i) =>
      new Linear(inFeatures, count, {
        bias: false,
        init: zerosInit(rng),
        sharedWeight: shared?.[i],
      })
    );
    if (weights instanceof Float32Array) {
      const parts = this.shards.map((shard) => shard.weight);
      assignStateTensor(
        { name: "ShardedLinear", shape: [outFeatures, inFeatures], parts },
        weights,
      );
    }
    this.bias = bias ? newVariable([outFeatures], bias) : null;
  }

  /** x: [..., inFeatures] → [..., outFeatures], the shards' outputs side by side. */
  apply(x: tf.Tensor): tf.Tensor {
    const outputs = this.shards.map((shard) => shard.apply(x));
    const y = outputs.length === 1 ? outputs[0] : tf.concat(outputs, -1);
    return this.bias ? tf.add(y, this.bias) : y;
  }

  /** The shards, named `prefix.weight[start:end]`, then `prefix.bias` when there is one. */
  namedParameters(prefix: string): NamedParameter[] {
    const name = prefixed(prefix, "weight");
    const params: NamedParameter[] = this.shards.map((shard, i) => [
      shardName(name, this.rowStarts[i], shard.outFeatures),
      shard.weight,
    ]);
    if (this.bias) params.push([prefixed(prefix, "bias"), this.bias]);
    return params;
  }
}

const SHARD_NAME = /^(.*)\[(\d+):(\d+)\]$/;

/**
 * Where a parameter lives in the state_dict: `tok_emb.weight[25129:50257]` → tok_emb.weight from
 * row 25129; a parameter that is not a shard → itself from row 0.
 */
export function stateNameOf(parameterName: string): { stateName: string; startRow: number } {
  const match = SHARD_NAME.exec(parameterName);
  return match
    ? { stateName: match[1], startRow: Number(match[2]) }
    : { stateName: parameterName, startRow: 0 };
}

/**
 * Groups (name, variable) pairs into state_dict tensors: consecutive row shards
 * `X[0:a]`, `X[a:b]`, ... become one tensor `X`; any other parameter is a tensor of its own.
 * Working from names means a wrapper around a sharded layer (e.g. LoRA around the output head)
 * keeps its shards grouped without knowing about them.
 */
export function groupShards(params: readonly NamedParameter[]): StateTensor[] {
  const tensors: StateTensor[] = [];
  let open: { tensor: StateTensor; nextRow: number } | undefined;
  for (const [name, variable] of params) {
    const match = SHARD_NAME.exec(name);
    if (!match) {
      open = undefined;
      tensors.push({ name, shape: [...variable.shape], parts: [variable] });
      continue;
    }
    const [, base, start, end] = match;
    const [rows, cols] = variable.shape;
    if (Number(end) - Number(start) !== rows || variable.rank !== 2) {
      throw new Error(
        `parameter "${name}" has shape [${variable.shape}], not ${end}-${start} rows`,
      );
    }
    if (open && open.tensor.name === base && Number(start) === open.nextRow) {
      if (open.tensor.shape[1] !== cols) {
        throw new Error(
          `parameter "${name}" has ${cols} columns, its other shards ${open.tensor.shape[1]}`,
        );
      }
      open.tensor.parts.push(variable);
      open.tensor.shape[0] += rows;
      open.nextRow += rows;
    } else {
      if (Number(start) !== 0) {
        throw new Error(
          `parameter "${name}": the shards of "${base}" must start at row 0 and be consecutive`,
        );
      }
      open = { tensor: { name: base, shape: [rows, cols], parts: [variable] }, nextRow: rows };
      tensors.push(open.tensor);
    }
  }
  return tensors;
}

/** Reads a state_dict tensor: its parts' values concatenated (a copy when there are several). */
export async function readStateTensor(tensor: StateTensor): Promise<Float32Array> {
  if (tensor.parts.length === 1) return (await tensor.parts[0].data()) as Float32Array;
  const out = new Float32Array(tensor.shape.reduce((a, b) => a * b, 1));
  let offset = 0;
  for (const part of tensor.parts) {
    const values = (await part.data()) as Float32Array;
    out.set(values, offset);
    offset += values.length;
  }
  return out;
}

/** Assigns a state_dict tensor's values, split into its parts' row blocks (no copy). */
export function assignStateTensor(tensor: StateTensor, values: Float32Array): void {
  const size = tensor.shape.reduce((a, b) => a * b, 1);
  if (values.length !== size) {
    throw new Error(
      `assignStateTensor: "${tensor.name}" [${tensor.shape}] needs ${size} values, got ${values.length}`,
    );
  }
  let offset = 0;
  for (const part of tensor.parts) {
    const block = tf.tensor(values.subarray(offset, offset + part.size), part.shape, "float32");
    part.assign(block);
    block.dispose();
    offset += part.size;
  }
}

/**
 * The token embedding: one [vocab, dim] matrix when `shards` is one block, else row shards
 * (initialised from one stream of draws, so the numbers are the same either way).
 */
export function vocabEmbedding(
  vocab: number,
  dim: number,
  shards: readonly number[],
  init: ParameterInit,
): Embedding | ShardedEmbedding {
  if (shards.length === 1) return new Embedding(vocab, dim, init);
  const weights = init.mode === "random" ? standardNormal(vocab * dim, init.rng) : "zeros";
  return new ShardedEmbedding({
    numEmbeddings: vocab,
    dim,
    rowCounts: shards,
    values: weights,
    rng: init.rng,
  });
}

/**
 * The output head matching `tokEmb`'s layout: one Linear(dim, vocab) or the same row shards;
 * with `tied`, it shares the embedding's weights instead of owning its own. `bias` adds a bias
 * of vocab entries (Phi-2), drawn after the weight as nn.Linear does.
 */
export function vocabHead(
  tokEmb: Embedding | ShardedEmbedding,
  shards: readonly number[],
  init: ParameterInit,
  tied: boolean,
  bias = false,
): LinearLayer {
  const [vocab, dim] = [tokEmb.numEmbeddings, tokEmb.dim];
  if (tokEmb instanceof ShardedEmbedding) {
    const draw = (size: number) =>
      init.mode === "random" ? uniform(size, linearInitBound(dim), init.rng) : "zeros" as const;
    const weights = tied
      ? { shared: tokEmb.shards.map((shard) => shard.weight) }
      : draw(vocab * dim);
    return new ShardedLinear(dim, vocab, shards, weights, init.rng, bias ? draw(vocab) : undefined);
  }
  return new Linear(dim, vocab, {
    bias,
    init,
    // An "empty" (to be packed) embedding has no variable: the loader gives both the same matrix.
    sharedWeight: tied && init.mode !== "empty" ? tokEmb.weight : undefined,
  });
}
