// @ts-check
/**
 * The page's hash routes, and the links to them. No DOM here.
 *   #/  #/run/<id>  #/artifact/<stage>/<key>  #/compare?ref=..&ref=..  #/artifacts  #/chat?model=..
 */

/**
 * A route: which page, its argument (the run id as it stands in the hash, still encoded, or
 * the artifact ref), the query, and which header link to mark.
 * @typedef {object} Route
 * @property {"runs" | "run" | "artifact" | "compare" | "artifacts" | "chat"} page
 * @property {string} arg
 * @property {URLSearchParams} params
 * @property {string} nav
 */

/** @param {string} hash location.hash */
export function parseRoute(hash) {
  const [path, query = ""] = (hash.replace(/^#/, "") || "/").split("?");
  const params = new URLSearchParams(query);
  const section = path.split("/")[1] || "runs";
  const nav = section === "run" ? "runs" : section === "artifact" ? "artifacts" : section;
  /** @type {Route["page"]} */
  let page = "runs";
  let arg = "";
  if (path.startsWith("/run/")) [page, arg] = ["run", path.slice(5)];
  else if (path.startsWith("/artifact/")) {
    [page, arg] = ["artifact", path.slice(10)];
  } else if (path === "/compare") page = "compare";
  else if (path === "/artifacts") page = "artifacts";
  else if (path === "/chat") page = "chat";
  return /** @type {Route} */ ({ page, arg, params, nav });
}

/** @param {string} id */
export const runHref = (id) => `#/run/${encodeURIComponent(id)}`;

/** @param {string} ref "<stage>/<key>" */
export const artifactHref = (ref) => `#/artifact/${ref}`;

/** @param {number} offset */
export const runsPageHref = (offset) => `#/?offset=${offset}`;

/** @param {number} offset */
export const artifactsPageHref = (offset) => `#/artifacts?offset=${offset}`;

/** The loss curves of `refs`, overlaid. */
/** @param {Iterable<string>} refs */
export const compareHref = (refs) =>
  `#/compare?${[...refs].map((r) => `ref=${encodeURIComponent(r)}`).join("&")}`;

/** @param {string} ref */
export const chatHref = (ref) => `#/chat?model=${encodeURIComponent(ref)}`;

/**
 * The page links of a paged list: where "newer" and "older" lead (undefined: no such page) and
 * the numbers shown ("1–50" of the total).
 * @param {number} offset
 * @param {number} limit
 * @param {number} shown items on this page
 * @param {number} total
 */
export function pageLinks(offset, limit, shown, total) {
  return {
    newer: offset > 0 ? Math.max(0, offset - limit) : undefined,
    older: offset + limit < total ? offset + limit : undefined,
    first: offset + 1,
    last: offset + shown,
  };
}
