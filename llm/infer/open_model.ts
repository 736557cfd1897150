/**
 * One way to open any model folder, whatever made it: our own (model.safetensors with the book's
 * names + our config, written by pretrain, fine-tuning and the GPT-2 import) or a Hugging Face
 * folder (config.json with `model_type`, safetensors with HF names, tokenizer.json), as the
 * `load-hf-model` stage leaves it. Every inference path (generate, chat, serve, responses,
 * evaluate, the page) opens models here, so a new family needs no change in any of them.
 */
import { chatFormatFor } from "../chat/mod.ts";
import type { ChatFormat } from "../chat/format.ts";
import { isHfModelFolder, loadHfModel } from "../families/load.ts";
import type { GPTModel } from "../model/gpt.ts";
import { type Quantization } from "../model/precision.ts";
import { loadModel } from "../model/weights_io.ts";
import type { Tokenizer } from "../tokenizer/mod.ts";
import { readModelTokenizer } from "./model_folder.ts";

/** A model with everything needed to talk to it. */
export interface OpenedModelFolder {
  /** The folder it was read from. */
  dir: string;
  /** The weights, ready to run. */
  model: GPTModel;
  /** Its tokenizer (GPT-2's BPE for our own folders without one). */
  tokenizer: Tokenizer;
  /** How messages become a prompt, and which tokens end a reply. */
  chat: ChatFormat;
  /** `gpt2` for our own folders, else the Hugging Face family (llama, qwen3, ...). */
  family: string;
  /** Who wrote the folder: groundup's own layout or Hugging Face's. */
  layout: "groundup" | "hf";
  /**
   * Ids the model may emit: the tokenizer's vocabulary when the model's embedding has padding
   * rows beyond it (Qwen3), so generation never picks an id that cannot be decoded.
   */
  vocabLimit: number;
}

/** What `openModelFolder` may be told. */
export interface OpenModelOptions {
  /** Cap the context of a RoPE model (its tables grow as positions are used; this bounds them). */
  maxContext?: number;
  /**
   * Hold the weights as int8 (Q8_0) or bf16 for inference (see llm/model/precision.ts): packed
   * as they are read, never as a float32 model; such a model cannot be trained.
   */
  quantize?: Quantization;
}

/** Opens the model in `dir`, its tokenizer and its chat format. */
export async function openModelFolder(
  dir: string,
  options: OpenModelOptions = {},
): Promise<OpenedModelFolder> {
  const layout = isHfModelFolder(dir) ? "hf" : "groundup";
  const tokenizer = await readModelTokenizer(dir);
  let model: GPTModel;
  let family = "gpt2";
  if (layout === "hf") {
    const loaded = await loadHfModel(dir, {
      maxContext: options.maxContext,
      quantize: options.quantize,
    });
    model = loaded.model;
    family = String(loaded.family.name);
  } else {
    model = await loadModel(dir, { quantize: options.quantize });
    family = model.config.family ?? "gpt2";
  }
  try {
    const chat = await chatFormatFor(dir, tokenizer);
    const vocabLimit = Math.min(model.config.vocab_size, tokenizer.vocabSize);
    return { dir, model, tokenizer, chat, family, layout, vocabLimit };
  } catch (error) {
    model.dispose();
    throw error;
  }
}
