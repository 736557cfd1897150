/**
 * Artifact kind `generations`: generations.json, what the `generate` stage wrote for each
 * prompt (the prompt, the reply, the settings, the tokens, why it stopped, and the dataset
 * entry's own fields when the prompts came from one).
 */
import { join } from "node:path";
import { hasFile, list, object, readJsonIn, string, writeJsonIn } from "./check.ts";

export const GENERATIONS_FILE = "generations.json";

/**
 * One generation as read back: `prompt` and `response` always; the rest as the stage recorded
 * it (stages/generate.ts's `Generation`: settings, tokens, stopped, the dataset entry).
 */
export interface GenerationRecord extends Record<string, unknown> {
  /** The text the model continued. */
  prompt: string;
  /** What it generated (for an instruction entry, the answer). */
  response: string;
}

export function hasGenerations(dir: string): boolean {
  return hasFile(dir, GENERATIONS_FILE);
}

export async function writeGenerations(
  dir: string,
  generations: readonly { prompt: string; response: string }[],
): Promise<void> {
  await writeJsonIn(dir, GENERATIONS_FILE, generations);
}

/** The generations of `dir`; errors name the file and the entry. */
export async function readGenerations(dir: string): Promise<GenerationRecord[]> {
  const path = join(dir, GENERATIONS_FILE);
  return list(await readJsonIn(dir, GENERATIONS_FILE), path).map((value, i) => {
    const where = `${path}: [${i}]`;
    const entry = object(value, where);
    string(entry.prompt, `${where}.prompt`);
    string(entry.response, `${where}.response`);
    return entry as GenerationRecord;
  });
}
