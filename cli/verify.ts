/**
 * Check a whole artifact cache: every finished artifact's files against the sizes and sha256
 * its manifest recorded. Prints one line per damaged artifact (naming the file) and exits 1
 * if there is any; a damaged artifact is re-run by the next pipeline run that needs it.
 *
 *   deno task verify [--cache-dir DIR]     (default .groundup, or GROUNDUP_CACHE_DIR)
 */
import { join } from "node:path";
import { parseArgs } from "node:util";
import { checkFiles, MANIFEST_FILE } from "../runner/cache.ts";
import type { Manifest } from "../runner/stage.ts";

export interface VerifyResult {
  checked: number;
  bad: { dir: string; problem: string }[];
}

export async function verifyCache(
  cacheDir: string,
  onChecked: (dir: string, problem?: string) => void = () => {},
): Promise<VerifyResult> {
  const result: VerifyResult = { checked: 0, bad: [] };
  const stages: string[] = [];
  for await (const entry of Deno.readDir(cacheDir)) {
    if (entry.isDirectory && !entry.name.startsWith(".") && entry.name !== "runs") {
      stages.push(entry.name);
    }
  }
  for (const stage of stages.sort()) {
    const keys: string[] = [];
    for await (const entry of Deno.readDir(join(cacheDir, stage))) {
      if (entry.isDirectory && /^[0-9a-f]{16}$/.test(entry.name)) keys.push(entry.name);
    }
    for (const key of keys.sort()) {
      const dir = join(cacheDir, stage, key);
      let problem: string | undefined;
      try {
        const manifest = JSON.parse(await Deno.readTextFile(join(dir, MANIFEST_FILE))) as Manifest;
        problem = await checkFiles(dir, manifest, "contents");
      } catch (error) {
        problem = error instanceof Deno.errors.NotFound
          ? `${MANIFEST_FILE} is missing (an unfinished or damaged artifact)`
          : `${MANIFEST_FILE} is unreadable: ${(error as Error).message}`;
      }
      result.checked++;
      if (problem) result.bad.push({ dir, problem });
      onChecked(dir, problem);
    }
  }
  return result;
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: { "cache-dir": { type: "string" }, help: { type: "boolean", short: "h" } },
  });
  if (values.help) {
    console.log("usage: deno task verify [--cache-dir DIR]");
    Deno.exit(0);
  }
  const cacheDir = values["cache-dir"] ?? Deno.env.get("GROUNDUP_CACHE_DIR") ?? ".groundup";
  let result: VerifyResult;
  try {
    result = await verifyCache(cacheDir, (dir, problem) => {
      if (problem) console.log(`BAD  ${dir}: ${problem}`);
    });
  } catch (error) {
    console.error(`error: cannot read the cache folder ${cacheDir}: ${(error as Error).message}`);
    Deno.exit(2);
  }
  console.log(
    `${result.checked} artifact(s) checked in ${cacheDir}, ${result.bad.length} damaged${
      result.bad.length ? " (the next run that needs one re-runs its stage)" : ""
    }`,
  );
  Deno.exit(result.bad.length ? 1 : 0);
}
