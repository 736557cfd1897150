/**
 * Where tests find data. The real public files live in `../shared/fixtures/` beside the
 * repository (never copied in); `GROUNDUP_SHARED_FIXTURES` overrides that location.
 * Small data the project makes itself lives in `tests/fixtures/`.
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export const REPO_ROOT = fileURLToPath(new URL("../", import.meta.url));

export const SHARED_FIXTURES = Deno.env.get("GROUNDUP_SHARED_FIXTURES") ??
  join(REPO_ROOT, "..", "shared", "fixtures");

export const LOCAL_FIXTURES = join(REPO_ROOT, "tests", "fixtures");

/** Path to a file under ../shared/fixtures. */
export function sharedFixture(...parts: string[]): string {
  return join(SHARED_FIXTURES, ...parts);
}

/** Path to a file under tests/fixtures. */
export function localFixture(...parts: string[]): string {
  return join(LOCAL_FIXTURES, ...parts);
}

/** A fresh temporary folder removed when the test's callback ends. */
export async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "groundup-test-" });
  try {
    return await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}
