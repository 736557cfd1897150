/**
 * What a model family is: which `model_type`s it reads, how its config.json becomes our
 * GPTConfig, and how its tensor names become ours. One file per family (gpt2.ts, llama.ts, ...)
 * fills this in; mod.ts lists them.
 */
import type { GPTConfig } from "../model/config.ts";
import type { NamedTensor } from "../weights/safetensors.ts";
import type { HfConfig, SpecialTokenIds } from "./hf_config.ts";

/** Our config and head tying for an HF config. */
export interface FamilyConfig {
  /** The model configuration (contract keys; `family` set). */
  config: GPTConfig;
  /** Whether the output head shares the token embedding (`tie_word_embeddings`, default true). */
  tiedHead: boolean;
}

/**
 * The tensors of an HF checkpoint, as the loader sees them: every name and shape up front,
 * values one tensor at a time, and the file each tensor lives in (for error messages).
 */
export interface HfCheckpoint {
  /** name → shape of every tensor in the checkpoint (all shards). */
  shapes: ReadonlyMap<string, readonly number[]>;
  /** The file holding a tensor (or, for a tensor no file has, the file that should). */
  fileOf(name: string): string;
  /** The float32 values of one tensor, row-major (converted from BF16/F16 when stored so). */
  read(name: string): Promise<Float32Array>;
  /** The checkpoint as a whole in messages: the weights file or the shard index. */
  description: string;
}

/** What a converter will produce, known from names and shapes before any value is read. */
export interface WeightPlan {
  /** Our state_dict name → shape, for every tensor `convert` yields. */
  outputs: Map<string, number[]>;
}

/** Turns one checkpoint into our tensors. */
export interface WeightConverter {
  /**
   * Checks every checkpoint name and shape (no values read). Throws naming the tensor, its file
   * and both shapes for a missing, unknown or misshapen tensor.
   */
  plan(checkpoint: HfCheckpoint): WeightPlan;
  /** Yields our tensors, reading one checkpoint tensor at a time. */
  convert(checkpoint: HfCheckpoint): AsyncIterable<[string, NamedTensor]>;
}

/** What the loader knows when it asks a family for its converter. */
export interface ConverterContext {
  /** Our config, as the family's `toConfig` made it. */
  config: GPTConfig;
  /** Whether the head shares the token embedding (no `lm_head.weight` needed). */
  tiedHead: boolean;
  /** config.json as parsed. */
  hfConfig: HfConfig;
  /** Our state_dict name → shape, as the model built from `config` holds them. */
  expected: ReadonlyMap<string, readonly number[]>;
}

/**
 * One row of a family's weight table: an HF tensor name and the name(s) of ours it fills, with
 * `{i}` standing for the block index. Several names mean a fused tensor whose rows are ours
 * stacked in that order (Phi-3's `qkv_proj`: rows Q; K; V).
 */
export interface WeightRule {
  /** The checkpoint's name, e.g. `model.layers.{i}.self_attn.q_proj.weight`. */
  hf: string;
  /** Our name(s), e.g. `trf_blocks.{i}.att.W_query.weight`; several for a fused tensor. */
  ours: string | readonly string[];
}

/** One model family (GPT-2, Llama, Qwen3, Gemma 3, Phi-3, Phi-2). */
export interface ModelFamily {
  /** Our name of the family (GPTConfig.family). */
  name: NonNullable<GPTConfig["family"]>;
  /** config.json `model_type` values this family reads. */
  modelTypes: readonly string[];
  /** HF config → ours; `source` (the file) is named in errors. */
  toConfig(hf: HfConfig, source: string): FamilyConfig;
  /**
   * HF tensor name → ours, one row per tensor kind (for the rule-table families; empty for
   * GPT-2, whose mapping lives in llm/model/gpt2_mapping.ts).
   */
  weightRules: readonly WeightRule[];
  /** Checkpoint tensors that carry no weights (buffers some exports include). */
  ignoredTensors: readonly RegExp[];
  /** The converter for one checkpoint. */
  converter(context: ConverterContext): WeightConverter;
  /** BOS / EOS / PAD ids as config.json states them. */
  specialTokens(hf: HfConfig, source: string): SpecialTokenIds;
  /**
   * The prompt style when the tokenizer has no `chat_template` (LitGPT's names): "phi-2"
   * (`Instruct: {prompt}\nOutput:`), "alpaca"; absent when the family's checkpoints ship one.
   */
  promptStyle?: string;
}
