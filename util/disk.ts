/**
 * Disk (and memory) facts and errors in words: free space before a large write, available
 * memory before a large model, and one line naming the path and the problem when the file
 * system refuses (read-only, not a folder, full).
 */
import { statfs } from "node:fs/promises";
import { dirname } from "node:path";

export function formatBytes(bytes: number): string {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = 0;
  while (Math.abs(value) >= 1000 && unit < units.length - 1) value /= 1000, unit++;
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

/** Bytes available to this user on the file system holding `path` (or its nearest parent). */
export async function freeBytes(path: string): Promise<number | undefined> {
  let current = path;
  while (true) {
    try {
      const stats = await statfs(current);
      return Number(stats.bavail) * Number(stats.bsize);
    } catch {
      const parent = dirname(current);
      if (parent === current) return undefined;
      current = parent;
    }
  }
}

export class DiskError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "DiskError";
  }
}

/**
 * Fail early, with both numbers, when less memory is available than `needed` bytes.
 * `available` defaults to what the system reports now (tests pass their own number).
 */
export function ensureMemory(
  needed: number,
  what: string,
  available: number = Deno.systemMemoryInfo().available,
): void {
  if (needed > available) {
    throw new DiskError(
      `not enough memory for ${what}: needs about ${formatBytes(needed)}, ${
        formatBytes(available)
      } available`,
    );
  }
}

/** Fail early, with both numbers, when `path`'s file system has less than `needed` bytes free. */
export async function ensureFreeSpace(path: string, needed: number, what: string): Promise<void> {
  const free = await freeBytes(path);
  if (free !== undefined && free < needed) {
    throw new DiskError(
      `not enough free space in ${path} for ${what}: needs about ${formatBytes(needed)}, ${
        formatBytes(free)
      } free`,
    );
  }
}

/** The OS error code of a Deno file-system error ("os error 28" → 28), if any. */
function osErrorCode(error: unknown): number | undefined {
  const match = /os error (\d+)/.exec(String((error as Error)?.message ?? error));
  return match ? Number(match[1]) : undefined;
}

export function isDiskFull(error: unknown): boolean {
  return osErrorCode(error) === 28 || String(error).includes("ENOSPC");
}

/**
 * A file-system failure at `path` as one line: what is wrong with it in words, or the
 * system's message when it is something else. Returns undefined for errors that are not
 * about the file system.
 */
export function describeFsError(error: unknown, path: string): string | undefined {
  const code = osErrorCode(error);
  if (error instanceof Deno.errors.PermissionDenied || code === 13 || code === 1) {
    return `${path}: permission denied (cannot write there; choose another --cache-dir)`;
  }
  if (code === 30) return `${path}: the file system is read-only (choose another --cache-dir)`;
  if (code === 28) return `${path}: no space left on the device`;
  if (error instanceof Deno.errors.NotADirectory || code === 20) {
    return `${path}: a part of this path is a file, not a folder`;
  }
  if (error instanceof Deno.errors.AlreadyExists || code === 17) {
    return `${path}: exists and is not a folder`;
  }
  return undefined;
}
