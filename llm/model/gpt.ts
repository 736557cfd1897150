/**
 * The book's GPTModel (rasbt/LLMs-from-scratch ch04): token + positional embeddings, a stack of
 * pre-LayerNorm transformer blocks, a final LayerNorm and a bias-free output head.
 *
 * Parameter names are those of the PyTorch state_dict (`tok_emb.weight`,
 * `trf_blocks.0.att.W_query.weight`, ..., `final_norm.scale`, `out_head.weight`).
 */
import * as tf from "@tensorflow/tfjs";
import { deriveSeed, SeededRandom } from "../random.ts";
import { KVCache, MultiHeadAttention, paddingMask } from "./attention.ts";
import type { GPTConfig } from "./config.ts";
import { countParameters } from "./config.ts";
import type { InitMode, ParameterInit } from "./init.ts";
import {
  dropout,
  Embedding,
  FeedForward,
  type ForwardContext,
  LayerNorm,
  type LinearLayer,
  type Module,
  type NamedParameter,
  prefixed,
} from "./layers.ts";
import { backendBindingLimit } from "../engine/backend.ts";
import {
  groupShards,
  planRowShards,
  type ShardedEmbedding,
  type StateTensor,
  vocabEmbedding,
  vocabHead,
} from "./sharded.ts";

/** Generation's extras for one block call (training passes none). */
export interface BlockCall {
  /** The model's key/value cache; x's tokens follow the `cache.length` cached ones. */
  cache?: KVCache;
  /** This block's index: its entry in `cache.layers`. Default 0. */
  layerIndex?: number;
  /** Added to the attention scores: -∞ hides left padding (see `ForwardOptions.padding`). */
  // deno-doc-ignore private-type-ref -- a tfjs type (deno doc counts node_modules as local)
  keyMask?: tf.Tensor;
}

/**
 * The book's TransformerBlock (ch04): pre-LayerNorm attention and feed-forward sub-blocks, each
 * with dropout and a residual connection.
 */
export class TransformerBlock implements Module {
  /** Causal multi-head self-attention. */
  readonly att: MultiHeadAttention;
  /** The position-wise feed-forward network. */
  readonly ff: FeedForward;
  /** LayerNorm before attention. */
  readonly norm1: LayerNorm;
  /** LayerNorm before the feed-forward network. */
  readonly norm2: LayerNorm;

  /** Builds its parameters from `config` (emb_dim, n_heads, drop_rate, qkv_bias) as `init` says. */
  constructor(readonly config: GPTConfig, init: ParameterInit) {
    this.att = new MultiHeadAttention({
      dim: config.emb_dim,
      numHeads: config.n_heads,
      dropRate: config.drop_rate,
      qkvBias: config.qkv_bias,
      init,
    });
    this.ff = new FeedForward(config.emb_dim, init);
    this.norm1 = new LayerNorm(config.emb_dim);
    this.norm2 = new LayerNorm(config.emb_dim);
  }

  /**
   * x: [batch, tokens, emb_dim] → same shape. With `cache`, x holds the tokens after the cached
   * ones and this block's keys/values (entry `layerIndex`) grow by them; `keyMask` hides left
   * padding (see `ForwardOptions.padding`).
   */
  // deno-doc-ignore private-type-ref -- a tfjs type (deno doc counts node_modules as local)
  apply(x: tf.Tensor, context: ForwardContext, call: BlockCall = {}): tf.Tensor {
    const { cache, layerIndex = 0, keyMask } = call;
    const rate = this.config.drop_rate;
    // Attention sub-block with a residual connection (pre-LN, drop_shortcut before the add).
    const attended = this.att.apply(this.norm1.apply(x), context, {
      cache: cache?.layers[layerIndex],
      cachedLength: cache?.length ?? 0,
      keyMask,
    });
    x = tf.add(dropout(attended, rate, context), x);
    // Feed-forward sub-block with a residual connection.
    const fed = this.ff.apply(this.norm2.apply(x));
    return tf.add(dropout(fed, rate, context), x);
  }

  /**
   * Parameters under the book's state_dict names (`att.*`, `ff.*`, `norm1.*`, `norm2.*`), in its
   * registration order.
   */
  namedParameters(prefix: string): NamedParameter[] {
    // The book's registration order: att, ff, norm1, norm2.
    return [
      ...this.att.namedParameters(prefixed(prefix, "att")),
      ...this.ff.namedParameters(prefixed(prefix, "ff")),
      ...this.norm1.namedParameters(prefixed(prefix, "norm1")),
      ...this.norm2.namedParameters(prefixed(prefix, "norm2")),
    ];
  }
}

/** Position ids [batch, tokens] of left-padded rows: slot s of row b is at s - padding[b] (pads: 0). */
function paddedPositions(padding: readonly number[], start: number, tokens: number): tf.Tensor2D {
  const ids = new Int32Array(padding.length * tokens);
  padding.forEach((pads, b) => {
    for (let i = 0; i < tokens; i++) ids[b * tokens + i] = Math.max(0, start + i - pads);
  });
  return tf.tensor2d(ids, [padding.length, tokens], "int32");
}

function checkPadding(padding: readonly number[], batch: number, slots: number): void {
  if (padding.length !== batch) {
    throw new Error(`GPTModel.forward: padding has ${padding.length} entries for ${batch} rows`);
  }
  padding.forEach((pads, b) => {
    if (!Number.isInteger(pads) || pads < 0 || pads >= slots) {
      throw new Error(
        `GPTModel.forward: padding[${b}] = ${pads}, expected an integer in 0..${slots - 1} ` +
          `(each row needs at least its last slot to be a real token)`,
      );
    }
  });
}

export interface GPTModelOptions {
  /** Seed for the initial weights; the dropout RNG is derived from it. Default 123 (the book's). */
  seed?: number;
  /** "zeros" skips the random init, for a model whose weights are about to be loaded. */
  init?: InitMode;
  /** Share the token embedding with the output head, as OpenAI's GPT-2 does. Default false. */
  tiedHead?: boolean;
  /**
   * Largest tensor, in bytes, one kernel can bind. A token embedding / output head above it is
   * stored as row shards of the vocabulary (see sharded.ts). Default: the WebGPU device's
   * `maxStorageBufferBindingSize` on the webgpu backend, no limit on the others.
   */
  maxTensorBytes?: number;
}

/** Options of one `GPTModel.forward` call. */
export interface ForwardOptions {
  /** Dropout on (PyTorch's `model.train()`). Default false. */
  training?: boolean;
  /**
   * Generation's key/value cache: `ids` are the tokens following the cached ones; their positions
   * start at `cache.length`, and the cache grows by `ids.shape[1]`.
   */
  cache?: KVCache;
  /** Compute logits only for the last position ([batch, 1, vocab]): all generation needs. */
  lastTokenOnly?: boolean;
  /**
   * Compute logits only at these flat positions (`row * tokens + position`), as [1, n, vocab]:
   * scoring (MMLU) reads a few positions of each row, and the output head is the largest product.
   */
  gather?: readonly number[];
  /**
   * Left padding of each row (batched generation, llm/infer/batch_generate.ts): the first
   * `padding[b]` slots of row b (counted from the cache's start) are pad tokens. No real token
   * attends to them, and row b's positions start at 0 at its first real token, so a padded row
   * computes what it would alone (GPT-2's learned positions make the shift necessary).
   */
  padding?: readonly number[];
}

/**
 * The book's GPTModel (ch04): token and position embeddings, `n_layers` transformer blocks, a final
 * LayerNorm and the output head over the vocabulary. Parameters carry the book's state_dict names,
 * so its weights load unchanged.
 */
export class GPTModel implements Module {
  /** The configuration it was built with. */
  readonly config: GPTConfig;
  /**
   * True when the output head shares the token embedding's table, as OpenAI's GPT-2 does: one
   * variable, listed under both `tok_emb.weight` and `out_head.weight`.
   */
  readonly tiedHead: boolean;
  /** Token embedding [vocab_size, emb_dim]; row shards when it exceeds `maxTensorBytes`. */
  readonly tok_emb: Embedding | ShardedEmbedding;
  /** Learned position embedding [context_length, emb_dim]. */
  readonly pos_emb: Embedding;
  /** The transformer blocks, in order. */
  readonly trf_blocks: TransformerBlock[];
  /** LayerNorm applied before the output head. */
  readonly final_norm: LayerNorm;
  /**
   * Output head emb_dim → vocab_size, no bias; replaceable (LoRA wraps it) through
   * `replaceLinears`.
   */
  out_head: LinearLayer;
  /** Draws the dropout masks; its state belongs in a training checkpoint. */
  readonly dropoutRng: SeededRandom;
  /** The binding limit the model was built for (Infinity: none); logits must fit in it too. */
  readonly maxTensorBytes: number;
  /** Rows of each vocabulary shard of tok_emb and out_head (one entry: not sharded). */
  readonly vocabShards: readonly number[];

  /** Builds the model with fresh weights (seeded, PyTorch's default initialisation) or zeros to be loaded over. */
  constructor(config: GPTConfig, options: GPTModelOptions = {}) {
    const seed = options.seed ?? 123;
    this.config = { ...config };
    this.tiedHead = options.tiedHead ?? false;
    const init: ParameterInit = { mode: options.init ?? "random", rng: new SeededRandom(seed) };
    this.dropoutRng = new SeededRandom(deriveSeed(seed, "dropout"));

    this.maxTensorBytes = options.maxTensorBytes ?? backendBindingLimit();
    const { vocab_size: vocab, emb_dim: dim } = config;
    this.vocabShards = planRowShards(vocab, dim, this.maxTensorBytes);

    // Parameters are created in the book's order, so the seeded init draws the same numbers
    // whether or not the vocabulary matrices are sharded (see vocabEmbedding).
    this.tok_emb = vocabEmbedding(vocab, dim, this.vocabShards, init);
    this.pos_emb = new Embedding(config.context_length, config.emb_dim, init);
    this.trf_blocks = Array.from(
      { length: config.n_layers },
      () => new TransformerBlock(this.config, init),
    );
    this.final_norm = new LayerNorm(config.emb_dim);
    this.out_head = vocabHead(this.tok_emb, this.vocabShards, init, this.tiedHead);
  }

  /**
   * ids: int32 [batch, tokens] → logits [batch, tokens, vocab] (or [batch, 1, vocab] with
   * `lastTokenOnly`). Intermediate tensors are freed; only the logits (and cache entries) stay.
   */
  // deno-doc-ignore private-type-ref -- a tfjs type (deno doc counts node_modules as local)
  forward(ids: tf.Tensor2D, options: ForwardOptions = {}): tf.Tensor3D {
    const { training = false, cache, lastTokenOnly = false } = options;
    const [batch, tokens] = ids.shape;
    const start = cache?.length ?? 0;
    if (options.padding) checkPadding(options.padding, batch, start + tokens);
    // No row padded: the plain path (no mask tensor, shared positions).
    const padding = options.padding?.some((pads) => pads > 0) ? options.padding : undefined;
    // Without padding every row's positions are start..start+tokens-1; with it, a row's shift
    // down by its pad count, so the least padded row reaches the highest position.
    const first = start - (padding ? Math.min(...padding) : 0);
    if (first + tokens > this.config.context_length) {
      throw new Error(
        `GPTModel.forward: positions ${first}..${first + tokens - 1} exceed context_length ` +
          `${this.config.context_length}; crop the input to the last ${this.config.context_length} tokens`,
      );
    }
    if (ids.dtype !== "int32") {
      throw new Error(`GPTModel.forward: ids must be int32, got ${ids.dtype}`);
    }
    const { gather } = options;
    this.checkLogitsFit(gather ? gather.length : lastTokenOnly ? batch : batch * tokens);
    const context: ForwardContext = { training, rng: this.dropoutRng };

    const logits = tf.tidy(() => {
      const positions = padding
        ? paddedPositions(padding, start, tokens)
        : tf.range(start, start + tokens, 1, "int32");
      const keyMask = padding ? paddingMask(padding, tokens, start + tokens, start) : undefined;
      const embedded = tf.add(this.tok_emb.apply(ids), this.pos_emb.apply(positions));
      let x = dropout(embedded, this.config.drop_rate, context);
      this.trf_blocks.forEach((block, i) => {
        x = block.apply(x, context, { cache, layerIndex: i, keyMask });
      });
      const width = this.config.emb_dim;
      if (lastTokenOnly) x = tf.slice(x, [0, tokens - 1, 0], [batch, 1, width]);
      else if (gather) {
        const flat = tf.reshape(x, [batch * tokens, width]);
        x = tf.reshape(tf.gather(flat, tf.tensor1d(Int32Array.from(gather), "int32")), [
          1,
          gather.length,
          width,
        ]);
      }
      return this.out_head.apply(this.final_norm.apply(x)) as tf.Tensor3D;
    });
    if (cache) cache.length += tokens;
    return logits;
  }

  /**
   * The logits [rows, vocab] (and the loss's tensors of that size) cannot be sharded by the
   * vocabulary the way the weights are; past the binding limit WebGPU would silently compute
   * zeros, so say so instead.
   */
  private checkLogitsFit(rows: number): void {
    const bytes = rows * this.config.vocab_size * 4;
    if (bytes <= this.maxTensorBytes) return;
    const mib = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;
    throw new Error(
      `GPTModel.forward: the logits [${rows} positions, ${this.config.vocab_size}] take ` +
        `${mib(bytes)}, more than the ${mib(this.maxTensorBytes)} the ${tf.getBackend()} ` +
        `backend binds in one kernel (maxStorageBufferBindingSize); use at most ` +
        `${Math.floor(this.maxTensorBytes / (this.config.vocab_size * 4))} positions per batch ` +
        `(batch_size × max_length)`,
    );
  }

  /** A fresh, empty key/value cache for this model. */
  newCache(): KVCache {
    return new KVCache(this.config.n_layers);
  }

  /**
   * The state_dict tensors in the book's order, each with the variables that hold it: one
   * variable, or the row shards of a sharded `tok_emb.weight` / `out_head.weight`, which saving
   * concatenates and loading splits. Names are exactly PyTorch's state_dict keys.
   */
  stateTensors(): StateTensor[] {
    return groupShards(this.namedParameters());
  }

  /**
   * (name, variable) pairs in the book's state_dict order: the variables an optimizer updates.
   * A sharded vocabulary matrix appears as its shards, e.g. `tok_emb.weight[0:25129]` and
   * `tok_emb.weight[25129:50257]` (see `stateTensors` for the state_dict view). With a tied head both
   * `tok_emb.weight` and `out_head.weight` are listed (as PyTorch's state_dict does), holding
   * the same variable.
   */
  namedParameters(prefix = ""): NamedParameter[] {
    return [
      ...this.tok_emb.namedParameters(prefixed(prefix, "tok_emb")),
      ...this.pos_emb.namedParameters(prefixed(prefix, "pos_emb")),
      ...this.trf_blocks.flatMap((block, i) =>
        block.namedParameters(prefixed(prefix, `trf_blocks.${i}`))
      ),
      ...this.final_norm.namedParameters(prefixed(prefix, "final_norm")),
      ...this.out_head.namedParameters(prefixed(prefix, "out_head")),
    ];
  }

  /** Each distinct parameter once (a tied head is listed under its first name, `tok_emb.weight`). */
  uniqueParameters(): NamedParameter[] {
    const seen = new Set<tf.Variable>();
    return this.namedParameters().filter(([, variable]) => {
      if (seen.has(variable)) return false;
      seen.add(variable);
      return true;
    });
  }

  /** The distinct parameters an optimizer should update (those not frozen). */
  trainableParameters(): NamedParameter[] {
    return this.uniqueParameters().filter(([, variable]) => variable.trainable);
  }

  /** Number of distinct scalars, optionally only the trainable ones. */
  numParameters(options: { trainableOnly?: boolean } = {}): number {
    const params = options.trainableOnly ? this.trainableParameters() : this.uniqueParameters();
    return params.reduce((sum, [, v]) => sum + v.size, 0);
  }

  /** The count `countParameters` predicts for this model's config (a consistency check). */
  expectedNumParameters(): number {
    return countParameters(this.config, { tiedHead: this.tiedHead });
  }

  /** Freezes the parameters whose name matches (all when no filter is given). */
  freeze(filter: (name: string) => boolean = () => true): void {
    for (const [name, variable] of this.namedParameters()) {
      if (filter(name)) variable.trainable = false;
    }
  }

  /** Unfreezes the parameters whose name matches (all when no filter is given). */
  unfreeze(filter: (name: string) => boolean = () => true): void {
    for (const [name, variable] of this.namedParameters()) {
      if (filter(name)) variable.trainable = true;
    }
  }

  /**
   * Calls `replace` for every linear layer (q/k/v, out_proj, both feed-forward layers, the output
   * head) with its state_dict prefix, and puts whatever it returns in the layer's place: the hook
   * LoRA uses to wrap layers.
   */
  replaceLinears(replace: (name: string, layer: LinearLayer) => LinearLayer): void {
    this.trf_blocks.forEach((block, i) => {
      const att = block.att;
      const at = `trf_blocks.${i}.att`;
      att.W_query = replace(`${at}.W_query`, att.W_query);
      att.W_key = replace(`${at}.W_key`, att.W_key);
      att.W_value = replace(`${at}.W_value`, att.W_value);
      att.out_proj = replace(`${at}.out_proj`, att.out_proj);
      const layers = block.ff.layers;
      layers[0] = replace(`trf_blocks.${i}.ff.layers.0`, layers[0]);
      layers[2] = replace(`trf_blocks.${i}.ff.layers.2`, layers[2]);
    });
    this.out_head = replace("out_head", this.out_head);
  }

  /** Frees every parameter. */
  dispose(): void {
    for (const [, variable] of this.uniqueParameters()) variable.dispose();
  }
}
