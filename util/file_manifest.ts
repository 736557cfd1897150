/**
 * Manifests of files: every file of a folder with its size and sha256, recorded when the folder
 * is complete and checked before anything reads it again. Cache artifacts (runner/cache.ts)
 * and training checkpoints (llm/train/checkpoint.ts) both record and check their files this way;
 * each words what it finds in its own terms.
 */
import { join, relative } from "node:path";
import { sha256File } from "./hash.ts";

/** One file as a manifest records it. */
export interface FileRecord {
  /** Bytes. */
  size: number;
  /** Lowercase hex sha256 of the file's content. */
  sha256: string;
}

/**
 * Every file under `dir` (sub-folders included) with its size and sha256, by relative path with
 * "/" separators, in name order; `except` names the manifest itself, which cannot list itself.
 */
export async function recordFiles(
  dir: string,
  except: string,
): Promise<Record<string, FileRecord>> {
  const out: Record<string, FileRecord> = {};
  const walk = async (current: string) => {
    const entries: Deno.DirEntry[] = [];
    for await (const entry of Deno.readDir(current)) entries.push(entry);
    entries.sort((a, b) => a.name.localeCompare(b.name));
    for (const entry of entries) {
      const path = join(current, entry.name);
      if (entry.isDirectory) await walk(path);
      else {
        const rel = relative(dir, path).split("\\").join("/");
        if (rel === except) continue;
        out[rel] = { size: (await Deno.stat(path)).size, sha256: await sha256File(path) };
      }
    }
  };
  await walk(dir);
  return out;
}

/**
 * How a damaged file is described, after its path: what its size was compared with, and what a
 * different sha256 means, in the words of the folder's kind (artifact, checkpoint).
 */
export interface DamageWords {
  /** After "has N bytes, ": e.g. (n) => `the manifest says ${n}`. */
  recordedSize(bytes: number): string;
  /** After the path, when the content differs: e.g. "is corrupt (its sha256 differs ...)". */
  changed: string;
}

/**
 * The first file of `dir` that differs from `files`, described (naming its path): missing or of
 * another size ("sizes", cheap), or with another sha256 too ("contents", which reads every
 * file). Sizes are checked for all files before any is hashed, so a truncated file is found
 * without hashing the others. Undefined when the folder matches.
 */
export async function findDamage(
  dir: string,
  files: Record<string, FileRecord>,
  depth: "sizes" | "contents",
  words: DamageWords,
): Promise<string | undefined> {
  for (const [name, record] of Object.entries(files)) {
    const path = join(dir, name);
    let size: number;
    try {
      size = (await Deno.stat(path)).size;
    } catch {
      return `${path} is missing`;
    }
    if (size !== record.size) {
      return `${path} has ${size} bytes, ${words.recordedSize(record.size)}`;
    }
  }
  if (depth === "contents") {
    for (const [name, record] of Object.entries(files)) {
      const path = join(dir, name);
      if ((await sha256File(path)) !== record.sha256) return `${path} ${words.changed}`;
    }
  }
  return undefined;
}
