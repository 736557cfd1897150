/**
 * Paths from the browser, made safe: the web UI reads files only inside the cache folder.
 * Every name is checked on its own (no "..", ".", separators, NUL or absolute paths), the
 * joined path is resolved through symlinks, and the result must still lie under the cache's
 * own resolved path, so neither `../`, an absolute path, an encoded variant nor a symlink that
 * points outside can reach another file.
 */
import { isAbsolute, join, sep } from "node:path";

/** A path the browser asked for that is not allowed (answered with 400) or absent (404). */
export class UiPathError extends Error {
  constructor(message: string, readonly status: 400 | 404) {
    super(message);
  }
}

const STAGE_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$/;
const KEY = /^[0-9a-f]{16,64}$/;

/** One path component from the browser: a plain file or folder name. */
export function checkName(name: string, what = "name"): string {
  if (
    name === "" || name === "." || name === ".." || name.includes("/") || name.includes("\\") ||
    name.includes("\0") || isAbsolute(name) || /^[A-Za-z]:/.test(name)
  ) {
    throw new UiPathError(`bad ${what} ${JSON.stringify(name)}: expected a plain name`, 400);
  }
  return name;
}

/** "stage/key" (a key of 16 to 64 hex digits) → the parts, checked. */
export function parseArtifactRef(ref: string | null): { stage: string; key: string } {
  if (!ref) throw new UiPathError("missing artifact reference (expected ref=<stage>/<key>)", 400);
  const parts = ref.split("/");
  if (parts.length !== 2 || !STAGE_NAME.test(parts[0]) || !KEY.test(parts[1])) {
    throw new UiPathError(
      `bad artifact reference ${JSON.stringify(ref)}: expected <stage>/<hex key>`,
      400,
    );
  }
  return { stage: parts[0], key: parts[1].slice(0, 16) };
}

/**
 * The real path of `parts` under `root`, or an error: 400 for a name that is not allowed or a
 * path that leaves the cache (through a symlink), 404 for one that does not exist.
 */
export async function resolveInside(root: string, parts: string[]): Promise<string> {
  for (const part of parts) checkName(part, "path component");
  let realRoot: string;
  try {
    realRoot = await Deno.realPath(root);
  } catch {
    throw new UiPathError(`the cache folder ${root} does not exist`, 404);
  }
  let real: string;
  try {
    real = await Deno.realPath(join(realRoot, ...parts));
  } catch {
    throw new UiPathError(`not found: ${parts.join("/")}`, 404);
  }
  if (real !== realRoot && !real.startsWith(realRoot.endsWith(sep) ? realRoot : realRoot + sep)) {
    throw new UiPathError(`${parts.join("/")} leads outside the cache`, 400);
  }
  return real;
}

/** A relative file path inside an artifact ("a/b.json"), split and checked. */
export function splitRelativePath(path: string | null): string[] {
  if (!path) throw new UiPathError("missing path", 400);
  if (path.startsWith("/") || path.startsWith("\\") || isAbsolute(path)) {
    throw new UiPathError(`bad path ${JSON.stringify(path)}: absolute paths are not allowed`, 400);
  }
  return path.split("/").map((p) => checkName(p, "path component"));
}
