/**
 * The one downloader every stage uses for public data. In order it looks in:
 *   1. the mirror folder (GROUNDUP_MIRROR or the pipeline's `mirror:`), read in place;
 *   2. the download cache (GROUNDUP_DATA_DIR, else $XDG_CACHE_HOME/groundup, else ~/.cache/groundup);
 *   3. the network: streamed to `<name>.part` with a progress bar, resumed with an HTTP Range
 *      request when a partial file exists, retried a bounded number of times on network
 *      errors, timeouts and server errors, checked against its sha256 and size, and only then
 *      renamed to its final name.
 */
import { sleep } from "../util/timers.ts";
import { dirname, join } from "node:path";
import { sha256File } from "../util/hash.ts";
import type { Logger, ProgressReporter } from "../util/progress.ts";
import { mirrorHint } from "./mirror_layout.ts";
import type { RemoteFile } from "./remote_file.ts";
export type { RemoteFile } from "./remote_file.ts";

/** Where `fetchFile` looks before the network, and how it reports. */
export interface FetchOptions {
  /** A local folder searched first (see `RemoteFile.path`); files there are used in place. */
  mirror?: string;
  /**
   * The download cache (default GROUNDUP_DATA_DIR, else $XDG_CACHE_HOME/groundup, else
   * ~/.cache/groundup).
   */
  cacheDir?: string;
  /** Shows a download's bytes as they arrive. */
  progress?: ProgressReporter;
  /** Says where a file came from (mirror, cache, network) and about retries. */
  log?: Logger;
  /** Attempts in total for network errors, timeouts and 5xx answers. */
  attempts?: number;
  /** Abort a download when no byte arrives for this long. */
  idleTimeoutMs?: number;
  /** Milliseconds before the first retry; doubles each time. */
  retryDelayMs?: number;
  /** Aborts a download; the partial file stays for a later resume. */
  signal?: AbortSignal;
  /**
   * Extra request headers (e.g. `Authorization` for a gated repository). Sent with every
   * request and never written anywhere.
   */
  headers?: Record<string, string>;
}

/** A download that failed for good (after retries), or a file that does not match its checksum. */
export class DownloadError extends Error {
  /** The HTTP status that refused the download, when it was one (401, 403, 404...). */
  readonly status?: number;
  constructor(message: string, status?: number) {
    super(message);
    this.name = "DownloadError";
    this.status = status;
  }
}

/** The download cache folder: GROUNDUP_DATA_DIR, else $XDG_CACHE_HOME/groundup, else ~/.cache/groundup. */
export function defaultDataDir(): string {
  const explicit = Deno.env.get("GROUNDUP_DATA_DIR");
  if (explicit) return explicit;
  const xdg = Deno.env.get("XDG_CACHE_HOME");
  const home = Deno.env.get("HOME") ?? Deno.env.get("USERPROFILE") ?? ".";
  return join(xdg ?? join(home, ".cache"), "groundup");
}

async function exists(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch {
    return false;
  }
}

/** Check a local file against the expected size and sha256; throws naming what differs. */
async function verifyFile(path: string, file: RemoteFile): Promise<void> {
  if (file.size !== undefined) {
    const size = (await Deno.stat(path)).size;
    if (size !== file.size) {
      throw new DownloadError(`${path}: size mismatch: expected ${file.size} bytes, found ${size}`);
    }
  }
  if (file.sha256) {
    const actual = await sha256File(path);
    if (actual !== file.sha256.toLowerCase()) {
      throw new DownloadError(
        `${path}: sha256 mismatch: expected ${file.sha256}, got ${actual} (source ${file.url})`,
      );
    }
  }
}

/**
 * A sidecar that records a successful verification, so a multi-gigabyte file is not hashed
 * again on every run; it is trusted only while the file's size and mtime are unchanged.
 */
async function verifyCached(path: string, file: RemoteFile): Promise<void> {
  const stamp = `${path}.verified`;
  const stat = await Deno.stat(path);
  const expected = JSON.stringify({
    sha256: file.sha256 ?? null,
    size: stat.size,
    mtime: stat.mtime?.getTime(),
  });
  try {
    if ((await Deno.readTextFile(stamp)) === expected) return;
  } catch { /* not verified yet */ }
  await verifyFile(path, file);
  await Deno.writeTextFile(stamp, expected);
}

/** Candidate paths of a file inside a mirror folder: its full relative path, then its name. */
function mirrorCandidates(mirror: string, file: RemoteFile): string[] {
  const name = file.path.split("/").pop()!;
  return file.flatMirror === false
    ? [join(mirror, file.path)]
    : [join(mirror, file.path), join(mirror, name)];
}

/** Return a local path holding the file, downloading it if neither mirror nor cache has it. */
export async function fetchFile(file: RemoteFile, options: FetchOptions = {}): Promise<string> {
  if (options.mirror) {
    for (const candidate of mirrorCandidates(options.mirror, file)) {
      if (await exists(candidate)) {
        await verifyFile(candidate, file);
        options.log?.info(`using ${candidate} from the mirror folder`);
        return candidate;
      }
    }
  }
  const root = options.cacheDir ?? defaultDataDir();
  const target = join(root, file.cachePath ?? file.path);
  if (await exists(target)) {
    await verifyCached(target, file);
    return target;
  }
  const created = await mkdirTracked(dirname(target));
  try {
    await download(file, target, options);
  } catch (error) {
    // Leave no empty download folders behind (a partial `.part` file keeps its folder).
    for (const dir of created.reverse()) await Deno.remove(dir).catch(() => {});
    if (error instanceof DownloadError && error.message.startsWith("download of")) {
      throw new DownloadError(
        `${error.message}\n${mirrorHint(file, options.mirror)}`,
        error.status,
      );
    }
    throw error;
  }
  return target;
}

/** mkdir -p that returns the folders it created, outermost first. */
async function mkdirTracked(dir: string): Promise<string[]> {
  const missing: string[] = [];
  let current = dir;
  while (true) {
    try {
      await Deno.stat(current);
      break;
    } catch {
      missing.push(current);
      const parent = dirname(current);
      if (parent === current) break;
      current = parent;
    }
  }
  await Deno.mkdir(dir, { recursive: true });
  return missing.reverse();
}

function isRetryable(status: number): boolean {
  return status >= 500 || status === 408 || status === 429;
}

async function download(file: RemoteFile, target: string, options: FetchOptions): Promise<void> {
  const part = `${target}.part`;
  const attempts = options.attempts ?? 4;
  let delay = options.retryDelayMs ?? 1000;
  let lastError = "";
  for (let attempt = 1; attempt <= attempts; attempt++) {
    options.signal?.throwIfAborted();
    try {
      const outcome = await downloadOnce(file, part, options);
      if (outcome === "done") break;
      lastError = outcome;
    } catch (error) {
      if (error instanceof DownloadError) throw error;
      if (options.signal?.aborted) throw error;
      lastError = error instanceof Error ? error.message : String(error);
    }
    if (attempt === attempts) {
      throw new DownloadError(
        `download of ${file.url} failed after ${attempts} attempts: ${lastError}`,
      );
    }
    options.log?.warn(`download of ${file.url} failed (${lastError}); retrying in ${delay} ms`);
    await sleep(delay);
    delay *= 2;
  }
  try {
    await verifyFile(part, file);
  } catch (error) {
    // A complete file with the wrong content cannot be resumed: start over next time.
    await Deno.remove(part).catch(() => {});
    throw error;
  }
  await Deno.rename(part, target);
}

/** One HTTP attempt. Returns "done", or a reason to retry; throws DownloadError for final errors. */
async function downloadOnce(
  file: RemoteFile,
  part: string,
  options: FetchOptions,
): Promise<string> {
  let offset = 0;
  try {
    offset = (await Deno.stat(part)).size;
  } catch { /* no partial file */ }
  if (file.size !== undefined && offset === file.size) return "done";

  const controller = new AbortController();
  const onAbort = () => controller.abort(options.signal?.reason);
  options.signal?.addEventListener("abort", onAbort);
  const idleMs = options.idleTimeoutMs ?? 30_000;
  let idleTimer = setTimeout(() => controller.abort(new Error(`no data for ${idleMs} ms`)), idleMs);
  const resetIdle = () => {
    clearTimeout(idleTimer);
    idleTimer = setTimeout(() => controller.abort(new Error(`no data for ${idleMs} ms`)), idleMs);
  };
  try {
    const headers: Record<string, string> = {
      ...options.headers,
      ...(offset > 0 ? { Range: `bytes=${offset}-` } : {}),
    };
    const response = await fetch(file.url, { headers, signal: controller.signal });
    if (response.status === 416 && offset > 0) {
      // The partial file already holds every byte the server has.
      await response.body?.cancel();
      return "done";
    }
    if (!response.ok) {
      await response.body?.cancel();
      const reason = `HTTP ${response.status} ${response.statusText}`.trim();
      if (isRetryable(response.status)) return reason;
      throw new DownloadError(`download of ${file.url} failed: ${reason}`, response.status);
    }
    const resumed = response.status === 206 && offset > 0;
    if (!resumed) offset = 0;
    const length = Number(response.headers.get("content-length") ?? NaN);
    const total = file.size ?? (Number.isFinite(length) ? offset + length : 0);
    using handle = await Deno.open(part, {
      write: true,
      create: true,
      truncate: !resumed,
      append: resumed,
    });
    const name = file.path.split("/").pop()!;
    options.progress?.start(resumed ? `${name} (resumed)` : name, total, "B");
    let done = offset;
    for await (const chunk of response.body!) {
      resetIdle();
      let written = 0;
      while (written < chunk.length) written += await handle.write(chunk.subarray(written));
      done += chunk.length;
      options.progress?.update(done);
    }
    options.progress?.finish();
    if (file.size !== undefined && done < file.size) {
      return `connection closed at ${done} of ${file.size} bytes`;
    }
    if (Number.isFinite(length) && done < offset + length) {
      return `connection closed at ${done} bytes`;
    }
    return "done";
  } catch (error) {
    options.progress?.finish();
    if (error instanceof DownloadError) throw error;
    const reason = controller.signal.aborted && controller.signal.reason instanceof Error
      ? controller.signal.reason.message
      : error instanceof Error
      ? error.message
      : String(error);
    if (options.signal?.aborted) throw error;
    return reason;
  } finally {
    clearTimeout(idleTimer);
    options.signal?.removeEventListener("abort", onAbort);
  }
}
