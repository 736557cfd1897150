/**
 * The book's GPTModel (rasbt/LLMs-from-scratch ch04): token + positional embeddings, a stack of
 * pre-LayerNorm transformer blocks, a final LayerNorm and a bias-free output head. The same class,
 * driven by the config's optional keys, is the book's Llama 3 / Qwen3 / Gemma 3 model and covers
 * Phi-3, Phi-2 and SmolLM2: RoPE instead of a position table, RMSNorm, grouped-query attention,
 * gated MLPs, sliding-window layers, parallel and sandwich blocks. GPT-2 (no optional keys)
 * computes exactly what it always did.
 *
 * Parameter names are those of the PyTorch state_dict (`tok_emb.weight`,
 * `trf_blocks.0.att.W_query.weight`, ..., `final_norm.scale`, `out_head.weight`), after the book's
 * Llama 3 / Qwen3 / Gemma 3 code for the new pieces (`ff.fc1`, `att.q_norm`, ...).
 */
import * as tf from "@tensorflow/tfjs";
import { deriveSeed, SeededRandom } from "../random.ts";
import { MultiHeadAttention, paddingMask, slidingWindowMask } from "./attention.ts";
import { KVCache, type KVCacheOptions } from "./kv_cache.ts";
import type { GPTConfig, LayerType, ResolvedConfig } from "./config.ts";
import { countParameters, resolveConfig } from "./config.ts";
import type { InitMode, ParameterInit } from "./init.ts";
import {
  dropout,
  Embedding,
  FeedForward,
  type ForwardContext,
  GatedFeedForward,
  LayerNorm,
  type LinearLayer,
  type Module,
  type NamedParameter,
  type Norm,
  prefixed,
  RMSNorm,
} from "./layers.ts";
import { type RopeAngles, RotaryEmbedding } from "./rope.ts";
import { backendBindingLimit } from "../engine/backend.ts";
import type { PackedMatrix } from "../engine/packed_matrix.ts";
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
  /** The model's key/value cache; x's tokens follow each row's cached ones. */
  cache?: KVCache;
  /** This block's index: its entry in the cache. Default 0. */
  layerIndex?: number;
  /**
   * Added to the attention scores: -∞ hides left padding (see `ForwardOptions.padding`) and, on
   * a sliding layer, the keys outside its window.
   */
  // deno-doc-ignore private-type-ref -- a tfjs type (deno doc counts node_modules as local)
  keyMask?: tf.Tensor;
  /** RoPE angles of x's tokens (pos_emb "rope"), for this layer's θ. */
  rope?: RopeAngles;
  /** A sliding layer's window (what the in-place cache applies instead of the key mask). */
  window?: number;
}

/** What every linear layer of the model does; LoRA targets, counts and serve read it. */
export type LinearRole =
  | "q"
  | "k"
  | "v"
  | "o"
  | "gate"
  | "up"
  | "down"
  | "fc"
  | "proj"
  | "head";

/** One linear layer of the model, with its state_dict prefix and role. */
export interface NamedLinear {
  /** The state_dict prefix, e.g. `trf_blocks.0.att.W_query` (its weight is `<name>.weight`). */
  name: string;
  /** What it does in the block. */
  role: LinearRole;
  /** The layer itself (a Linear, or whatever `replaceLinears` put there). */
  layer: LinearLayer;
}

/** The norm the config asks for (LayerNorm with shift, or RMSNorm) over `dim`. */
function makeNorm(config: ResolvedConfig, dim: number): Norm {
  return config.norm === "rmsnorm"
    ? new RMSNorm(dim, config.norm_eps, config.norm_unit_offset)
    : new LayerNorm(dim, config.norm_eps);
}

/**
 * The book's TransformerBlock (ch04): pre-norm attention and feed-forward sub-blocks, each with
 * dropout and a residual connection. The config picks the variants of the open families: RMSNorm,
 * a gated MLP, Phi-2's parallel block (one norm, x + att(h) + ff(h)) and Gemma 3's sandwich (a
 * second norm after each sub-block).
 */
export class TransformerBlock implements Module {
  /** Causal multi-head (or grouped-query) self-attention. */
  readonly att: MultiHeadAttention;
  /** The position-wise feed-forward network: GELU MLP or gated (SwiGLU/GeGLU). */
  readonly ff: FeedForward | GatedFeedForward;
  /** Norm before attention (and, in a parallel block, before the feed-forward too). */
  readonly norm1: Norm;
  /** Norm before the feed-forward network; null in a parallel block. */
  readonly norm2: Norm | null;
  /** Sandwich blocks: norm of the attention's output before the residual add; else null. */
  readonly post_att_norm: Norm | null;
  /** Sandwich blocks: norm of the feed-forward's output before the residual add; else null. */
  readonly post_ff_norm: Norm | null;
  private readonly resolved: ResolvedConfig;

  /** Builds its parameters from `config` as `init` says. */
  constructor(readonly config: GPTConfig, init: ParameterInit) {
    const c = resolveConfig(config);
    this.resolved = c;
    this.att = new MultiHeadAttention({
      dim: c.emb_dim,
      numHeads: c.n_heads,
      dropRate: c.drop_rate,
      qkvBias: c.qkv_bias,
      init,
      headDim: c.head_dim,
      numKvGroups: c.n_kv_groups,
      outBias: c.attn_out_bias,
      qkNorm: c.qk_norm ? { eps: c.norm_eps, unitOffset: c.norm_unit_offset } : undefined,
      scoreDivisor: c.attention_divisor,
    });
    this.ff = c.mlp === "gelu"
      ? new FeedForward(c.emb_dim, init, { hidden: c.hidden_dim, bias: c.mlp_bias })
      : new GatedFeedForward(
        c.emb_dim,
        c.hidden_dim,
        c.mlp === "swiglu" ? "silu" : "gelu",
        init,
        c.mlp_bias,
      );
    this.norm1 = makeNorm(c, c.emb_dim);
    this.norm2 = c.block === "parallel" ? null : makeNorm(c, c.emb_dim);
    const sandwich = c.block === "sandwich";
    this.post_att_norm = sandwich ? makeNorm(c, c.emb_dim) : null;
    this.post_ff_norm = sandwich ? makeNorm(c, c.emb_dim) : null;
  }

  /**
   * x: [batch, tokens, emb_dim] → same shape. With `cache`, x holds the tokens after the cached
   * ones and this block's keys/values (entry `layerIndex`) grow by them; `keyMask` hides left
   * padding (see `ForwardOptions.padding`) and keys outside a sliding window.
   */
  // deno-doc-ignore private-type-ref -- a tfjs type (deno doc counts node_modules as local)
  apply(x: tf.Tensor, context: ForwardContext, call: BlockCall = {}): tf.Tensor {
    const { cache, layerIndex = 0, keyMask, rope, window } = call;
    const rate = this.config.drop_rate;
    const attend = (h: tf.Tensor) =>
      this.att.apply(h, context, { cache, layerIndex, keyMask, rope, window });
    if (this.resolved.block === "parallel") {
      // Phi-2: attention and MLP read the same normed input; both outputs join the residual
      // (in HF's order of additions: (att + ff) + x).
      const h = this.norm1.apply(x);
      const attended = dropout(attend(h), rate, context);
      return tf.add(tf.add(attended, dropout(this.ff.apply(h), rate, context)), x);
    }
    // Attention sub-block with a residual connection (pre-norm, drop_shortcut before the add).
    let attended = attend(this.norm1.apply(x));
    if (this.post_att_norm) attended = this.post_att_norm.apply(attended);
    x = tf.add(dropout(attended, rate, context), x);
    // Feed-forward sub-block with a residual connection.
    let fed = this.ff.apply(this.norm2!.apply(x));
    if (this.post_ff_norm) fed = this.post_ff_norm.apply(fed);
    return tf.add(dropout(fed, rate, context), x);
  }

  /**
   * Parameters under the book's state_dict names (`att.*`, `ff.*`, `norm1.*`, `norm2.*`, then
   * `post_att_norm.*`, `post_ff_norm.*` for sandwich blocks), in its registration order.
   */
  namedParameters(prefix: string): NamedParameter[] {
    // The book's registration order: att, ff, norm1, norm2.
    return [
      ...this.att.namedParameters(prefixed(prefix, "att")),
      ...this.ff.namedParameters(prefixed(prefix, "ff")),
      ...this.norm1.namedParameters(prefixed(prefix, "norm1")),
      ...(this.norm2?.namedParameters(prefixed(prefix, "norm2")) ?? []),
      ...(this.post_att_norm?.namedParameters(prefixed(prefix, "post_att_norm")) ?? []),
      ...(this.post_ff_norm?.namedParameters(prefixed(prefix, "post_ff_norm")) ?? []),
    ];
  }

  /**
   * Calls `replace` for each linear layer of the block (prefix `at`) and puts what it returns in
   * its place.
   */
  replaceLinears(
    at: string,
    replace: (name: string, layer: LinearLayer, role: LinearRole) => LinearLayer,
  ): void {
    const att = this.att;
    att.W_query = replace(`${at}.att.W_query`, att.W_query, "q");
    att.W_key = replace(`${at}.att.W_key`, att.W_key, "k");
    att.W_value = replace(`${at}.att.W_value`, att.W_value, "v");
    att.out_proj = replace(`${at}.att.out_proj`, att.out_proj, "o");
    const ff = this.ff;
    if (ff instanceof FeedForward) {
      ff.layers[0] = replace(`${at}.ff.layers.0`, ff.layers[0], "fc");
      ff.layers[2] = replace(`${at}.ff.layers.2`, ff.layers[2], "proj");
    } else {
      ff.fc1 = replace(`${at}.ff.fc1`, ff.fc1, "gate");
      ff.fc2 = replace(`${at}.ff.fc2`, ff.fc2, "up");
      ff.fc3 = replace(`${at}.ff.fc3`, ff.fc3, "down");
    }
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

/** The same positions as plain numbers, one list per row (what the RoPE tables are read with). */
function rowPositions(padding: readonly number[], start: number, tokens: number): number[][] {
  return padding.map((pads) =>
    Array.from({ length: tokens }, (_, i) => Math.max(0, start + i - pads))
  );
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
   * computes what it would alone (GPT-2's learned positions make the shift necessary; RoPE
   * positions follow the same per-row shift).
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
  /** Learned position embedding [context_length, emb_dim]; null with RoPE. */
  readonly pos_emb: Embedding | null;
  /** The transformer blocks, in order. */
  readonly trf_blocks: TransformerBlock[];
  /** Norm applied before the output head (LayerNorm, or RMSNorm as the config says). */
  readonly final_norm: Norm;
  /**
   * Output head emb_dim → vocab_size (bias only with head_bias); replaceable (LoRA wraps it)
   * through `replaceLinears`.
   */
  out_head: LinearLayer;
  /**
   * RoPE tables by layer type (pos_emb "rope"): "sliding" layers use rope_local_theta (Gemma 3),
   * "full" ones rope_theta; null with learned positions.
   */
  readonly rope: Readonly<Record<LayerType, RotaryEmbedding>> | null;
  /** The config with its defaults filled in. */
  readonly resolved: ResolvedConfig;
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
    const c = resolveConfig(this.config);
    this.resolved = c;
    this.tok_emb = vocabEmbedding(vocab, dim, this.vocabShards, init);
    this.pos_emb = c.pos_emb === "learned"
      ? new Embedding(config.context_length, config.emb_dim, init)
      : null;
    this.trf_blocks = Array.from(
      { length: config.n_layers },
      () => new TransformerBlock(this.config, init),
    );
    this.final_norm = makeNorm(c, config.emb_dim);
    this.out_head = vocabHead(this.tok_emb, this.vocabShards, init, this.tiedHead, c.head_bias);
    if (c.pos_emb === "rope") {
      const full = new RotaryEmbedding(
        c.rotary_dim,
        c.rope_theta,
        c.context_length,
        c.rope_scaling,
      );
      const sliding = c.rope_local_theta === c.rope_theta ? full : new RotaryEmbedding(
        c.rotary_dim,
        c.rope_local_theta,
        c.context_length,
        c.rope_scaling,
      );
      this.rope = { full, sliding };
    } else {
      this.rope = null;
    }
  }

  /**
   * ids: int32 [batch, tokens] → logits [batch, tokens, vocab] (or [batch, 1, vocab] with
   * `lastTokenOnly`). Intermediate tensors are freed; only the logits (and cache entries) stay.
   */
  // deno-doc-ignore private-type-ref -- a tfjs type (deno doc counts node_modules as local)
  forward(ids: tf.Tensor2D, options: ForwardOptions = {}): tf.Tensor3D {
    const { training = false, cache, lastTokenOnly = false } = options;
    const [batch, tokens] = ids.shape;
    if (cache && options.padding) {
      throw new Error(
        "GPTModel.forward: padding is for passes without a cache (a cache keeps each row's own length)",
      );
    }
    cache?.begin(batch, 0);
    const start = cache?.length ?? 0;
    // A cache's rows of different lengths are, to the positions (and the tensor store's masks),
    // rows left-padded to the longest.
    const rowPads = cache ? cache.leftPads() : options.padding;
    if (rowPads) checkPadding(rowPads, batch, start + tokens);
    // No row padded: the plain path (no mask tensor, shared positions).
    const padding = rowPads?.some((pads) => pads > 0) ? rowPads : undefined;
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
    cache?.begin(batch, tokens);
    // The in-place cache attends each row over its own length: it needs no masks.
    const masked = !cache?.inPlace;

    const logits = tf.tidy(() => {
      const keyMask = padding && masked
        ? paddingMask(padding, tokens, start + tokens, start)
        : undefined;
      let embedded = this.tok_emb.apply(ids);
      if (this.resolved.emb_scale !== 1) embedded = tf.mul(embedded, this.resolved.emb_scale);
      if (this.pos_emb) {
        const positions = padding
          ? paddedPositions(padding, start, tokens)
          : tf.range(start, start + tokens, 1, "int32");
        embedded = tf.add(embedded, this.pos_emb.apply(positions));
      }
      const { masks, angles } = this.layerInputs(padding, start, tokens, keyMask, masked);
      let x = dropout(embedded, this.config.drop_rate, context);
      const types = this.resolved.layer_types;
      this.trf_blocks.forEach((block, i) => {
        const type = types[i];
        x = block.apply(x, context, {
          cache,
          layerIndex: i,
          keyMask: masks[type],
          rope: angles?.[type],
          window: type === "sliding" ? this.resolved.sliding_window : undefined,
        });
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
    cache?.advance(tokens);
    return logits;
  }

  /**
   * What each layer type's blocks read besides x: its key mask (padding, plus the window on
   * sliding layers) and its RoPE angles (per-row positions when padded).
   */
  private layerInputs(
    padding: readonly number[] | undefined,
    start: number,
    tokens: number,
    keyMask: tf.Tensor | undefined,
    masked: boolean,
  ): {
    masks: Record<LayerType, tf.Tensor | undefined>;
    angles: Record<LayerType, RopeAngles> | null;
  } {
    const c = this.resolved;
    let slidingMask = keyMask;
    if (masked && c.layer_types.includes("sliding")) {
      const window = slidingWindowMask(c.sliding_window, tokens, start + tokens, start);
      if (window) slidingMask = keyMask ? tf.add(keyMask, window) : window;
    }
    const masks = { full: keyMask, sliding: slidingMask };
    if (!this.rope) return { masks, angles: null };
    const positions = padding
      ? rowPositions(padding, start, tokens)
      : [Array.from({ length: tokens }, (_, i) => start + i)];
    const full = this.rope.full.angles(positions);
    const sliding = this.rope.sliding === this.rope.full
      ? full
      : this.rope.sliding.angles(positions);
    return { masks, angles: { full, sliding } };
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

  /**
   * A fresh, empty key/value cache for this model (it holds the n_kv_groups heads, at most
   * context_length positions per row); `options` reserve room ahead (see `KVCacheOptions`).
   */
  newCache(options: Omit<KVCacheOptions, "maxLength"> = {}): KVCache {
    return new KVCache(this.config.n_layers, {
      ...options,
      maxLength: this.config.context_length,
    });
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
      ...(this.pos_emb?.namedParameters(prefixed(prefix, "pos_emb")) ?? []),
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

  /**
   * Number of distinct scalars, optionally only the trainable ones. Matrices held packed
   * (quantized inference, no float32 variable) count too, each once (a tied head shares the
   * embedding's); they are never trainable.
   */
  numParameters(options: { trainableOnly?: boolean } = {}): number {
    const params = options.trainableOnly ? this.trainableParameters() : this.uniqueParameters();
    const variables = params.reduce((sum, [, v]) => sum + v.size, 0);
    if (options.trainableOnly) return variables;
    const packed = new Set<{ rows: number; cols: number }>();
    for (const layer of [this.tok_emb, this.pos_emb, ...this.linearLayers().map((l) => l.layer)]) {
      const matrix = layer && "packed" in layer ? layer.packed : null;
      if (matrix) packed.add(matrix);
    }
    return [...packed].reduce((sum, m) => sum + m.rows * m.cols, variables);
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
   * Calls `replace` for every linear layer (q/k/v, out_proj, the feed-forward's layers, the output
   * head) with its state_dict prefix and role, and puts whatever it returns in the layer's place:
   * the hook LoRA uses to wrap layers.
   */
  replaceLinears(
    replace: (name: string, layer: LinearLayer, role: LinearRole) => LinearLayer,
  ): void {
    this.trf_blocks.forEach((block, i) => block.replaceLinears(`trf_blocks.${i}`, replace));
    this.out_head = replace("out_head", this.out_head, "head");
  }

  /** Every linear layer with its state_dict prefix and role, in the model's order. */
  linearLayers(): NamedLinear[] {
    const layers: NamedLinear[] = [];
    this.replaceLinears((name, layer, role) => {
      layers.push({ name, role, layer });
      return layer;
    });
    return layers;
  }

  /** Frees every parameter. */
  dispose(): void {
    for (const [, variable] of this.uniqueParameters()) variable.dispose();
    // Quantized weights (not variables) give back their share of the packed-weight memory.
    for (const { layer } of this.linearLayers()) {
      (layer as { packed?: PackedMatrix }).packed?.dispose();
    }
    for (const table of [this.tok_emb, this.pos_emb]) {
      (table as { packed?: PackedMatrix } | null)?.packed?.dispose();
    }
  }
}
