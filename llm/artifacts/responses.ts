/**
 * Artifact kind `responses`: responses.json, the book's responses file (a list of
 * {instruction, input, output, <one field per model>…}), as the `responses` stage writes it
 * and the judge reads it; stats.json beside it says how each field was generated.
 */
import { join } from "node:path";
import { parseResponses, type ResponseEntry } from "../eval/judge.ts";
import { hasFile, readJsonIn, writeJsonIn } from "./check.ts";

export const RESPONSES_FILE = "responses.json";
export const RESPONSES_STATS_FILE = "stats.json";

/** Whether `dir` holds a responses file. */
export function hasResponses(dir: string): boolean {
  return hasFile(dir, RESPONSES_FILE);
}

/** The path of the responses file in an artifact folder. */
export function responsesPath(dir: string): string {
  return join(dir, RESPONSES_FILE);
}

/**
 * Writes responses.json (indented by 4, as the book's `instruction-data-with-response.json`)
 * and, when given, stats.json.
 */
export async function writeResponses(
  dir: string,
  entries: readonly ResponseEntry[],
  stats?: unknown,
): Promise<void> {
  await writeJsonIn(dir, RESPONSES_FILE, entries, 4);
  if (stats !== undefined) await writeJsonIn(dir, RESPONSES_STATS_FILE, stats);
}

/**
 * The entries of `dir`'s responses.json; `fields` (default: every text field) must be strings
 * in every entry. Errors name the file, the entry and the field.
 */
export async function readResponseEntries(
  dir: string,
  fields?: string[],
): Promise<ResponseEntry[]> {
  return parseResponses(await readJsonIn(dir, RESPONSES_FILE), join(dir, RESPONSES_FILE), fields);
}
