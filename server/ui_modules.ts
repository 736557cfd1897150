/**
 * The page's ES modules (ui/js/*.js), served as JavaScript. Only a plain lowercase file name
 * ending in .js is answered, and only a plain file (not a symlink), so no request reaches a
 * file outside ui/js/: no "..", no separator, no percent-encoded variant gets past the pattern.
 */
import { join } from "node:path";
import { UiPathError } from "./ui_paths.ts";

/** The modules' URL path: /js/<name>.js, the name lowercase letters, digits and "_". */
const MODULE_PATH = /^\/js\/([a-z0-9_]+\.js)$/;

/**
 * The module `pathname` names in `uiDir`/js, or undefined when the path is not a module's
 * (the caller answers 404); a missing module is a UiPathError (404).
 */
export async function pageModule(
  uiDir: string,
  pathname: string,
): Promise<Response | undefined> {
  const name = MODULE_PATH.exec(pathname)?.[1];
  if (!name) return undefined;
  const path = join(uiDir, "js", name);
  let body: Uint8Array<ArrayBuffer>;
  try {
    // A plain file only: a symlink could lead anywhere.
    if (!(await Deno.lstat(path)).isFile) throw new Deno.errors.NotFound(path);
    body = await Deno.readFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new UiPathError(`no such module: ${pathname}`, 404);
    }
    throw error;
  }
  return new Response(body, {
    headers: {
      // Browsers run a module only with a JavaScript MIME type.
      "content-type": "text/javascript; charset=utf-8",
      "cache-control": "no-cache",
      "x-content-type-options": "nosniff",
    },
  });
}
