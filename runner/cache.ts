/**
 * The artifact store. One folder per stage run, named by its cache key:
 *
 *   <cacheDir>/<stage>/<key16>/                  a finished artifact (manifest.json written last)
 *   <cacheDir>/<stage>/.lock-<key16>             held (pid, host, start) while the key is computed
 *   <cacheDir>/<stage>/.tmp-<key16>-<pid>-<id>/  work in progress, renamed into place when complete
 *   <cacheDir>/<stage>/.progress-<key16>/        checkpoints that survive a crash, removed on success
 *
 * Because the finished folder only ever appears by a rename, a crash or Ctrl-C can never
 * leave a half-written artifact that looks complete. The manifest lists every file of the
 * artifact with its size and sha256: a lookup checks presence and sizes (cheap), and
 * `verifyArtifact` the contents, before anything reads them.
 */
import { writeFileAtomic } from "../util/files.ts";
import { artifactFolder } from "../llm/artifacts/ref.ts";
import { join } from "node:path";
import { describeFsError, DiskError } from "../util/disk.ts";
import {
  type DamageWords,
  findDamage,
  recordFiles as recordFileManifest,
} from "../util/file_manifest.ts";
import { acquireLock, type HeldLock, type LockOwner, ownerDead } from "./lock.ts";
import type { Artifact, FileRecord, Manifest } from "./stage.ts";

export const MANIFEST_FILE = "manifest.json";

/** A cached artifact that exists but cannot be trusted: why, so the plan can say it. */
export interface DamagedArtifact {
  /** The artifact folder, left in place until the re-run replaces it. */
  dir: string;
  /** What is wrong with it (missing file, wrong size, unreadable manifest). */
  problem: string;
}

/**
 * The content-addressed artifact store under one cache folder (layout above); safe to share between
 * processes.
 */
export class ArtifactCache {
  /**
   * `root` is the cache folder (e.g. `.groundup`); nothing is created until something is written.
   */
  constructor(readonly root: string) {}

  /** The folder holding every artifact, lock and checkpoint of one stage instance. */
  stageDir(stage: string): string {
    return join(this.root, stage);
  }

  /**
   * Where the finished artifact for `key` lives (the key's first 16 hex digits name it; the
   * layout llm/artifacts/ref.ts resolves references between artifacts by).
   */
  artifactDir(stage: string, key: string): string {
    return artifactFolder(this.root, stage, key);
  }

  /**
   * Checkpoints of an unfinished run of `key`: kept after a crash so the next run resumes, removed
   * on success.
   */
  progressDir(stage: string, key: string): string {
    return join(this.stageDir(stage), `.progress-${key.slice(0, 16)}`);
  }

  /** The lock file that makes one process at a time compute `key`. */
  lockPath(stage: string, key: string): string {
    return join(this.stageDir(stage), `.lock-${key.slice(0, 16)}`);
  }

  /**
   * Make sure the cache folder can be written: one line naming the path and the problem
   * (read-only, not a folder, no permission, full) instead of a stack trace later.
   */
  async ensureWritable(): Promise<void> {
    const probe = join(this.root, `.probe-${Deno.pid}-${crypto.randomUUID().slice(0, 8)}`);
    try {
      await Deno.mkdir(this.root, { recursive: true });
      await Deno.writeTextFile(probe, "ok");
      await Deno.remove(probe);
    } catch (error) {
      await Deno.remove(probe).catch(() => {});
      throw new DiskError(
        `cache folder ${describeFsError(error, this.root) ?? `${this.root}: ${error}`}`,
      );
    }
  }

  /** The finished artifact for this key, a damaged one (with the reason), or undefined. */
  async lookup(stage: string, key: string): Promise<Artifact | DamagedArtifact | undefined> {
    const dir = this.artifactDir(stage, key);
    let manifest: Manifest;
    try {
      manifest = JSON.parse(await Deno.readTextFile(join(dir, MANIFEST_FILE)));
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return undefined;
      return { dir, problem: `${join(dir, MANIFEST_FILE)} is unreadable` };
    }
    if (manifest.key !== key) return undefined;
    const problem = await checkFiles(dir, manifest, "sizes");
    if (problem) return { dir, problem };
    return { stage, type: manifest.type, key, dir, manifest };
  }

  /**
   * Take the key's lock (waiting while another live process computes it). While it is held,
   * this process owns the key's temporary and progress folders.
   */
  async lock(
    stage: string,
    key: string,
    options: { noWait?: boolean; signal?: AbortSignal; onWait?: (owner: LockOwner) => void },
  ): Promise<HeldLock> {
    await Deno.mkdir(this.stageDir(stage), { recursive: true });
    return await acquireLock(this.lockPath(stage, key), {
      what: `${stage}/${key.slice(0, 16)}`,
      ...options,
    });
  }

  /** A fresh, empty temporary folder for a stage run (call with the key's lock held). */
  async createTemp(stage: string, key: string): Promise<string> {
    const parent = this.stageDir(stage);
    await Deno.mkdir(parent, { recursive: true });
    return await Deno.makeTempDir({
      dir: parent,
      prefix: `.tmp-${key.slice(0, 16)}-${Deno.pid}-`,
    });
  }

  /** Create (if needed) and return the key's progress folder; call with the key's lock held. */
  async ensureProgressDir(stage: string, key: string): Promise<string> {
    const dir = this.progressDir(stage, key);
    await Deno.mkdir(dir, { recursive: true });
    return dir;
  }

  /** Remove the progress folder if nothing was written into it (no empty leftovers). */
  async removeProgressIfEmpty(stage: string, key: string): Promise<void> {
    const dir = this.progressDir(stage, key);
    try {
      for await (const _ of Deno.readDir(dir)) return;
      await Deno.remove(dir);
    } catch { /* gone already */ }
  }

  /** Write the manifest (with every file's size and sha256) and move the folder into place. */
  async commit(tempDir: string, manifest: Manifest): Promise<Artifact> {
    const finalDir = this.artifactDir(manifest.stage, manifest.key);
    manifest.outputs = await recordFiles(tempDir);
    await writeFileAtomic(join(tempDir, MANIFEST_FILE), JSON.stringify(manifest, null, 2) + "\n");
    // A forced re-run (or a damaged artifact) is replaced: move the old one aside first,
    // since a rename onto a non-empty folder fails.
    let displaced: string | undefined;
    try {
      await Deno.stat(finalDir);
      displaced = `${tempDir}.old`;
      await Deno.rename(finalDir, displaced);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
    await Deno.rename(tempDir, finalDir);
    if (displaced) await Deno.remove(displaced, { recursive: true });
    await Deno.remove(this.progressDir(manifest.stage, manifest.key), { recursive: true }).catch(
      () => {},
    );
    return {
      stage: manifest.stage,
      type: manifest.type,
      key: manifest.key,
      dir: finalDir,
      manifest,
    };
  }

  /**
   * Remove temporary folders left behind by runs that died. A folder belongs to the key in
   * its name; it is removed only when that key's lock is free or held by a dead process,
   * so a live run's work in progress is never touched. `heldKey` is a key this process holds.
   */
  async sweepTemp(stage: string, heldKey?: string): Promise<number> {
    let removed = 0;
    const dir = this.stageDir(stage);
    const entries: string[] = [];
    try {
      for await (const entry of Deno.readDir(dir)) {
        if (entry.isDirectory && entry.name.startsWith(".tmp-")) entries.push(entry.name);
      }
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
    for (const name of entries) {
      const key16 = name.slice(".tmp-".length, ".tmp-".length + 16);
      const mine = heldKey !== undefined && heldKey.slice(0, 16) === key16;
      if (!mine && !(await lockFreeOrDead(join(dir, `.lock-${key16}`)))) continue;
      await Deno.remove(join(dir, name), { recursive: true }).catch(() => {});
      removed++;
    }
    return removed;
  }

  /** Set a damaged artifact aside so it is neither used nor in the way of a new one. */
  async discard(dir: string): Promise<string> {
    const aside = `${dir}.corrupt-${new Date().toISOString().replace(/[:.]/g, "-")}`;
    await Deno.rename(dir, aside);
    return aside;
  }
}

async function lockFreeOrDead(lockPath: string): Promise<boolean> {
  try {
    const owner = JSON.parse(await Deno.readTextFile(lockPath)) as LockOwner;
    return ownerDead(owner);
  } catch (error) {
    return error instanceof Deno.errors.NotFound;
  }
}

/** Every file under `dir` (but the manifest) with its size and sha256, by relative path. */
export function recordFiles(dir: string): Promise<Record<string, FileRecord>> {
  return recordFileManifest(dir, MANIFEST_FILE);
}

/** Why an artifact of an older groundup (no file list in its manifest) is computed again. */
export const UNVERIFIABLE =
  "its manifest predates file hashes (groundup before artifacts were verified), so it cannot be checked";

/**
 * Check an artifact's files against its manifest: "sizes" checks that each file is there with
 * its size, "contents" also its sha256. Returns the first problem, naming the file, or
 * undefined when the artifact is intact.
 */
export async function checkFiles(
  dir: string,
  manifest: Manifest,
  depth: "sizes" | "contents",
): Promise<string | undefined> {
  if (!manifest.outputs) return UNVERIFIABLE;
  return await findDamage(dir, manifest.outputs, depth, ARTIFACT_DAMAGE);
}

/** An artifact's files are compared with its manifest. */
const ARTIFACT_DAMAGE: DamageWords = {
  recordedSize: (bytes) => `the manifest says ${bytes}`,
  changed: "is corrupt (its sha256 differs from the manifest's)",
};

/** Verify an artifact folder's contents; throws naming the damaged file. */
export async function verifyArtifact(dir: string): Promise<void> {
  let manifest: Manifest;
  try {
    manifest = JSON.parse(await Deno.readTextFile(join(dir, MANIFEST_FILE)));
  } catch (error) {
    throw new ArtifactDamagedError(dir, `${join(dir, MANIFEST_FILE)}: ${(error as Error).message}`);
  }
  const problem = await checkFiles(dir, manifest, "contents");
  if (problem) throw new ArtifactDamagedError(dir, problem);
}

export class ArtifactDamagedError extends Error {
  constructor(readonly dir: string, readonly problem: string) {
    super(`damaged artifact ${dir}: ${problem}`);
    this.name = "ArtifactDamagedError";
  }
}

export function isDamaged(found: Artifact | DamagedArtifact | undefined): found is DamagedArtifact {
  return found !== undefined && "problem" in found;
}

export { writeFileAtomic };
