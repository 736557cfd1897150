/**
 * Checks shared by the artifact readers: every value read from a file is checked for the shape
 * its writer gives it, and a mismatch is an error naming the file and the place in it
 * (`<path>: fields[0].histogram: expected a list of counts`).
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { readJsonFile, writeFileAtomic } from "../../util/files.ts";

/** A JSON object as read from a file, before its fields are checked. */
export type Json = Record<string, unknown>;

/** `value` as an object, else an error naming `where`. */
export function object(value: unknown, where: string): Json {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new Error(`${where}: expected an object`);
  }
  return value as Json;
}

/** `value` as a list, else an error naming `where`. */
export function list(value: unknown, where: string): unknown[] {
  if (!Array.isArray(value)) throw new Error(`${where}: expected a list`);
  return value;
}

export function number(value: unknown, where: string): number {
  if (typeof value !== "number") throw new Error(`${where}: expected a number`);
  return value;
}

/** A number its writer leaves null (JSON has no NaN) or out when it has none. */
export function numberOrNull(value: unknown, where: string): number | null {
  return value === null || value === undefined ? null : number(value, where);
}

export function string(value: unknown, where: string): string {
  if (typeof value !== "string") throw new Error(`${where}: expected a string`);
  return value;
}

/**
 * The parsed JSON of `dir/file`; a missing or unreadable file, or text that is not JSON, is an
 * error naming the file.
 */
export async function readJsonIn(dir: string, file: string): Promise<unknown> {
  const path = join(dir, file);
  try {
    return await readJsonFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) throw new Error(`${path}: no such file`);
    const message = (error as Error).message;
    throw new Error(message.startsWith(path) ? message : `${path}: ${message}`);
  }
}

/** Whether `dir` holds `file`. */
export function hasFile(dir: string, file: string): boolean {
  return existsSync(join(dir, file));
}

/**
 * Writes `value` as JSON into `dir/file` under a temporary name, renamed when complete.
 * `indent` keeps each writer's layout (the book's responses files use 4).
 */
export async function writeJsonIn(
  dir: string,
  file: string,
  value: unknown,
  indent = 2,
): Promise<void> {
  await writeFileAtomic(join(dir, file), JSON.stringify(value, null, indent) + "\n");
}
