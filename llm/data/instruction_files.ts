/**
 * Tokenized instruction examples on disk: one split's ids back to back in a token file
 * (llm/data/token_file.ts: uint16 when the vocabulary fits) and, beside it, a JSON index with
 * each example's start offset and prompt length. Compact, and read back without tokenizing.
 */
import { join } from "node:path";
import { readJsonFile, readJsonObject, writeFileAtomic } from "../../util/files.ts";
import { type PromptTemplate, promptTemplate, type TokenizedExample } from "./instructions.ts";
import { readTokenFile, writeTokenFile } from "./token_file.ts";
import { chatPromptTemplate } from "../chat/instruction.ts";
import { jinjaChatFormat } from "../chat/jinja.ts";
import { HfTokenizer } from "../tokenizer/hf.ts";
import type { Tokenizer } from "../tokenizer/mod.ts";

/** `<path>.index.json`: where each example starts in the ids, and its prompt's length. */
interface ExampleIndex {
  /** Example i is ids[offsets[i] .. offsets[i + 1]); one more entry than examples. */
  offsets: number[];
  promptLengths: number[];
}

/** Writes `path` (+ `.json`) with every example's ids and `path.index.json`. */
export async function writeTokenizedExamples(
  path: string,
  examples: readonly TokenizedExample[],
  vocabSize: number,
): Promise<void> {
  const offsets = [0];
  for (const example of examples) offsets.push(offsets.at(-1)! + example.ids.length);
  const ids = new Uint32Array(offsets.at(-1)!);
  examples.forEach((example, i) => ids.set(example.ids, offsets[i]));
  await writeTokenFile(path, ids, vocabSize);
  const index: ExampleIndex = { offsets, promptLengths: examples.map((e) => e.promptLength) };
  await Deno.writeTextFile(`${path}.index.json`, JSON.stringify(index) + "\n");
}

/** Reads what {@link writeTokenizedExamples} wrote; an index that does not fit the ids is an error. */
export async function readTokenizedExamples(path: string): Promise<TokenizedExample[]> {
  const ids = await readTokenFile(path);
  const indexPath = `${path}.index.json`;
  const index = await readJsonObject(indexPath) as unknown as ExampleIndex;
  const { offsets, promptLengths } = index;
  if (
    !Array.isArray(offsets) || !Array.isArray(promptLengths) ||
    offsets.length !== promptLengths.length + 1 || offsets.at(-1) !== ids.length
  ) {
    throw new Error(
      `${indexPath}: expected offsets (one more than promptLengths) ending at the ${ids.length} ids of ${path}`,
    );
  }
  return promptLengths.map((promptLength, i) => ({
    ids: Array.from(ids.subarray(offsets[i], offsets[i + 1])),
    promptLength,
  }));
}

/** The file that names a folder's prompt template: `{name, source}`. */
export const TEMPLATE_FILE = "template.json";

/** Writes `dir/template.json`, so whatever reads the folder formats prompts the same way. */
export async function writeTemplateFile(dir: string, template: PromptTemplate): Promise<void> {
  await writeFileAtomic(
    join(dir, TEMPLATE_FILE),
    JSON.stringify({ name: template.name, source: template.source }, null, 2) + "\n",
  );
}

/**
 * The template a template.json (`{name, source}`) stores. A `chat` template (a chat model's own
 * Jinja template, `source`) needs the model's Hugging Face tokenizer, for its special tokens.
 */
export async function readTemplateFile(
  path: string,
  tokenizer?: Tokenizer,
): Promise<PromptTemplate> {
  const stored = await readJsonFile(path) as { name?: unknown; source?: unknown };
  if (typeof stored?.source !== "string") {
    throw new Error(`${path}: expected {"name", "source"} with the template string as "source"`);
  }
  if (stored.name === "chat") {
    if (!(tokenizer instanceof HfTokenizer)) {
      throw new Error(
        `${path}: a chat template needs the model's Hugging Face tokenizer (tokenizer.json ` +
          `beside it); got ${tokenizer ? `the ${tokenizer.name} tokenizer` : "none"}`,
      );
    }
    return chatPromptTemplate(jinjaChatFormat(stored.source, tokenizer));
  }
  return stored.name === "alpaca" || stored.name === "phi3"
    ? promptTemplate(stored.name)
    : promptTemplate(stored.source);
}
