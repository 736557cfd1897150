/**
 * References from one artifact to a file of another by stage and cache key, never by absolute
 * path: resolved against the cache folder when read, so a cache that was moved or copied
 * elsewhere still finds what its artifacts name.
 */
import { join } from "node:path";
import { object, string } from "./check.ts";

/** A file of a finished artifact: the stage instance that made it, its cache key, the file. */
export interface ArtifactFileRef {
  /** The stage instance name (the artifact's folder under the cache). */
  stage: string;
  /** The artifact's cache key (sha256 hex; its first 16 digits name the folder). */
  key: string;
  /** The file's path inside the artifact folder. */
  file: string;
}

/**
 * The folder of the artifact `stage`/`key` in `cacheDir`: `<cache>/<stage>/<first 16 hex
 * digits of the key>` (the runner's layout, runner/cache.ts).
 */
export function artifactFolder(cacheDir: string, stage: string, key: string): string {
  return join(cacheDir, stage, key.slice(0, 16));
}

/** Where `ref` lies in `cacheDir`. */
export function resolveFileRef(ref: ArtifactFileRef, cacheDir: string): string {
  return join(artifactFolder(cacheDir, ref.stage, ref.key), ref.file);
}

/** `value` as an `ArtifactFileRef`, else an error naming `where`. */
export function parseFileRef(value: unknown, where: string): ArtifactFileRef {
  const ref = object(value, where);
  const parsed = {
    stage: string(ref.stage, `${where}.stage`),
    key: string(ref.key, `${where}.key`),
    file: string(ref.file, `${where}.file`),
  };
  if (!/^[0-9a-f]{16,64}$/.test(parsed.key)) {
    throw new Error(`${where}.key: expected a cache key (hex), got ${JSON.stringify(parsed.key)}`);
  }
  // A reference names a file inside an artifact folder, never one outside it.
  if (
    parsed.file.split(/[\\/]/).some((part) => part === ".." || part === "") ||
    /[\\/]/.test(parsed.stage) || parsed.stage.startsWith(".")
  ) {
    throw new Error(
      `${where}: expected a file inside an artifact folder, got ${JSON.stringify(ref)}`,
    );
  }
  return parsed;
}
