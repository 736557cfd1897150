/**
 * Artifact kind `gguf`: what `export` with `format: gguf` writes: one llama.cpp file
 * (model.gguf) and an Ollama Modelfile beside it (llm/export/mod.ts writes both).
 */
import { hasFile } from "./check.ts";

export const GGUF_FILE = "model.gguf";

export function hasGguf(dir: string): boolean {
  return hasFile(dir, GGUF_FILE);
}
