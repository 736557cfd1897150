/**
 * Exporting a model folder for the tools people run instead of ours: one GGUF file (llama.cpp,
 * Ollama) with an Ollama `Modelfile` beside it, or a Hugging Face folder (transformers, vLLM,
 * LitGPT, torchtune). Reads either kind of model folder: ours (model.safetensors + our config)
 * or a Hugging Face one.
 */
import { existsSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { isHfModelFolder, loadHfModel } from "../families/load.ts";
import { readModelTokenizer } from "../infer/model_folder.ts";
import type { GPTModel } from "../model/gpt.ts";
import { loadModel } from "../model/weights_io.ts";
import { hasHfTokenizer, loadHfTokenizer } from "../tokenizer/hf.ts";
import type { Tokenizer } from "../tokenizer/mod.ts";
import { exportGguf, type GgufDtype, type GgufExportSummary } from "./gguf.ts";
import { type GgufVocabulary, ggufVocabularyOf } from "./vocab.ts";

export {
  exportGguf,
  GGUF_ARCHITECTURES,
  GGUF_DTYPES,
  ggufArchitecture,
  ggufContent,
  GgufExportError,
  permuteRotaryRows,
} from "./gguf.ts";
export type { ExportGgufOptions, GgufArchitecture, GgufDtype, GgufExportSummary } from "./gguf.ts";
export { checkExportTarget, exportHf, hfConfigOf } from "./hf.ts";
export type { ExportHfOptions } from "./hf.ts";
export { ggufVocabularyOf, gpt2Vocabulary, hfVocabulary, TOKEN_TYPE } from "./vocab.ts";
export type { GgufVocabulary, HfVocabularyIds } from "./vocab.ts";

/** The export formats. */
export const EXPORT_FORMATS = ["gguf", "hf"] as const;
/** "gguf" (one llama.cpp file + Modelfile) or "hf" (a Hugging Face folder). */
export type ExportFormat = typeof EXPORT_FORMATS[number];

/** The Ollama file written beside a GGUF. */
export const MODELFILE = "Modelfile";

/** A model folder opened for export: the model and its tokenizer. */
export interface ExportSource {
  /** The model (float32). */
  model: GPTModel;
  /** Its tokenizer (GPT-2's, or a Hugging Face one). */
  tokenizer: Tokenizer;
}

/** Opens a model folder of ours or a Hugging Face folder, with its tokenizer. */
export async function openExportSource(dir: string): Promise<ExportSource> {
  if (isHfModelFolder(dir)) {
    const { model } = await loadHfModel(dir);
    if (!(await hasHfTokenizer(dir))) {
      model.dispose();
      throw new Error(
        `${join(dir, "tokenizer.json")}: an HF model folder needs its tokenizer to export`,
      );
    }
    return { model, tokenizer: await loadHfTokenizer(dir) };
  }
  const model = await loadModel(dir);
  return { model, tokenizer: await readModelTokenizer(dir) };
}

/**
 * Ollama's prompt template (Go template syntax) and stop words for the chat formats we can
 * recognise from the vocabulary; undefined for a base model such as GPT-2 (raw prompts).
 */
export function ollamaTemplate(
  v: GgufVocabulary,
): { template: string; stops: string[] } | undefined {
  const has = (t: string) => v.tokens.includes(t);
  if (has("<|start_header_id|>") && has("<|eot_id|>")) {
    return {
      template: "{{ if .System }}<|start_header_id|>system<|end_header_id|>\n\n{{ .System }}" +
        "<|eot_id|>{{ end }}{{ if .Prompt }}<|start_header_id|>user<|end_header_id|>\n\n" +
        "{{ .Prompt }}<|eot_id|>{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n" +
        "{{ .Response }}<|eot_id|>",
      stops: ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
    };
  }
  if (has("<|im_start|>") && has("<|im_end|>")) {
    return {
      template: "{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}" +
        "{{ if .Prompt }}<|im_start|>user\n{{ .Prompt }}<|im_end|>\n{{ end }}" +
        "<|im_start|>assistant\n{{ .Response }}<|im_end|>\n",
      stops: ["<|im_start|>", "<|im_end|>"],
    };
  }
  if (has("<start_of_turn>") && has("<end_of_turn>")) {
    return {
      template: "<start_of_turn>user\n{{ if .System }}{{ .System }}\n\n{{ end }}{{ .Prompt }}" +
        "<end_of_turn>\n<start_of_turn>model\n{{ .Response }}<end_of_turn>\n",
      stops: ["<end_of_turn>"],
    };
  }
  if (has("<|user|>") && has("<|end|>") && has("<|assistant|>")) {
    return {
      template: "{{ if .System }}<|system|>\n{{ .System }}<|end|>\n{{ end }}" +
        "{{ if .Prompt }}<|user|>\n{{ .Prompt }}<|end|>\n{{ end }}<|assistant|>\n" +
        "{{ .Response }}<|end|>\n",
      stops: ["<|end|>", "<|user|>", "<|assistant|>"],
    };
  }
  return undefined;
}

/** The Modelfile for `ollama create NAME -f Modelfile` beside `ggufFile`. */
export function modelfileText(ggufFile: string, vocabulary: GgufVocabulary): string {
  const lines = [`FROM ./${basename(ggufFile)}`];
  const chat = ollamaTemplate(vocabulary);
  if (chat) {
    lines.push(`TEMPLATE """${chat.template}"""`);
    for (const stop of chat.stops) lines.push(`PARAMETER stop "${stop}"`);
  } else if (vocabulary.eosId !== undefined) {
    lines.push(`PARAMETER stop "${vocabulary.tokens[vocabulary.eosId]}"`);
  }
  return lines.join("\n") + "\n";
}

/**
 * Writes a GGUF file at `path` and a Modelfile beside it. Refuses an existing file at either
 * place; the GGUF appears only when complete, the Modelfile after it.
 */
export async function exportGgufWithModelfile(
  source: ExportSource,
  path: string,
  options: { dtype?: GgufDtype; onTensor?: (index: number, name: string, count: number) => void } =
    {},
): Promise<GgufExportSummary & { modelfile: string }> {
  const modelfile = join(dirname(path), MODELFILE);
  for (const target of [path, modelfile]) {
    if (existsSync(target)) {
      throw new Error(`GGUF export: ${target} already exists; choose another --out or remove it`);
    }
  }
  const vocabulary = await ggufVocabularyOf(source.tokenizer, source.model.config.vocab_size);
  await Deno.mkdir(dirname(path), { recursive: true });
  const summary = await exportGguf(source.model, vocabulary, path, options);
  await Deno.writeTextFile(modelfile, modelfileText(path, vocabulary), { createNew: true });
  return { ...summary, modelfile };
}
