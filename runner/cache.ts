/**
 * The artifact store. One folder per stage run, named by its cache key:
 *
 *   <cacheDir>/<stage>/<key16>/            a finished artifact (manifest.json written last)
 *   <cacheDir>/<stage>/.tmp-<key16>-<id>/  work in progress, renamed into place when complete
 *   <cacheDir>/<stage>/.progress-<key16>/  checkpoints that survive a crash, removed on success
 *
 * Because the finished folder only ever appears by a rename, a crash or Ctrl-C can never
 * leave a half-written artifact that looks complete.
 */
import { writeFileAtomic } from "../llm/files.ts";
import { join } from "node:path";
import type { Artifact, Manifest } from "./stage.ts";

export const MANIFEST_FILE = "manifest.json";

export class ArtifactCache {
  constructor(readonly root: string) {}

  stageDir(stage: string): string {
    return join(this.root, stage);
  }

  artifactDir(stage: string, key: string): string {
    return join(this.stageDir(stage), key.slice(0, 16));
  }

  progressDir(stage: string, key: string): string {
    return join(this.stageDir(stage), `.progress-${key.slice(0, 16)}`);
  }

  /** The finished artifact for this key, or undefined. */
  async lookup(stage: string, key: string): Promise<Artifact | undefined> {
    const dir = this.artifactDir(stage, key);
    let manifest: Manifest;
    try {
      manifest = JSON.parse(await Deno.readTextFile(join(dir, MANIFEST_FILE)));
    } catch {
      return undefined;
    }
    if (manifest.key !== key) return undefined;
    return { stage, type: manifest.type, key, dir, manifest };
  }

  /** A fresh, empty temporary folder for a stage run. */
  async createTemp(stage: string, key: string): Promise<string> {
    const parent = this.stageDir(stage);
    await Deno.mkdir(parent, { recursive: true });
    return await Deno.makeTempDir({ dir: parent, prefix: `.tmp-${key.slice(0, 16)}-` });
  }

  async ensureProgressDir(stage: string, key: string): Promise<string> {
    const dir = this.progressDir(stage, key);
    await Deno.mkdir(dir, { recursive: true });
    return dir;
  }

  /** Write the manifest into the temporary folder and move it into place atomically. */
  async commit(tempDir: string, manifest: Manifest): Promise<Artifact> {
    const finalDir = this.artifactDir(manifest.stage, manifest.key);
    await writeFileAtomic(join(tempDir, MANIFEST_FILE), JSON.stringify(manifest, null, 2) + "\n");
    // A forced re-run replaces an existing artifact: move the old one aside first, since a
    // rename onto a non-empty folder fails.
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

  /** Remove temporary folders left behind by runs that crashed. */
  async sweepTemp(stage: string): Promise<number> {
    let removed = 0;
    try {
      for await (const entry of Deno.readDir(this.stageDir(stage))) {
        if (entry.isDirectory && entry.name.startsWith(".tmp-")) {
          await Deno.remove(join(this.stageDir(stage), entry.name), { recursive: true });
          removed++;
        }
      }
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
    return removed;
  }
}

export { writeFileAtomic };
