/**
 * Small file helpers every layer uses: writing a file so that a crash never leaves half of it,
 * reading a JSON file with an error that names it, and resolving a path against a base folder.
 */
import { isAbsolute, join } from "node:path";

/** Write a file under a temporary name in the same folder, then rename it into place. */
export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  const temp = `${path}.${crypto.randomUUID().slice(0, 8)}.tmp`;
  try {
    if (typeof data === "string") await Deno.writeTextFile(temp, data);
    else await Deno.writeFile(temp, data);
    await Deno.rename(temp, path);
  } catch (error) {
    await Deno.remove(temp).catch(() => {});
    throw error;
  }
}

/** Parses JSON text read from `path`; a syntax error names the file. */
export function parseJson(text: string, path: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new Error(`${path}: not valid JSON: ${(error as Error).message}`);
  }
}

/** Reads and parses a JSON file; a syntax error names the file. */
export async function readJsonFile(path: string): Promise<unknown> {
  return parseJson(await Deno.readTextFile(path), path);
}

/** Reads a JSON file that must hold an object (not a list, string or null). */
export async function readJsonObject(path: string): Promise<Record<string, unknown>> {
  const value = await readJsonFile(path);
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new Error(`${path}: expected a JSON object`);
  }
  return value as Record<string, unknown>;
}

/** `path` as given when absolute, else relative to `baseDir` (e.g. the pipeline file's folder). */
export function resolvePath(path: string, baseDir: string): string {
  return isAbsolute(path) ? path : join(baseDir, path);
}
