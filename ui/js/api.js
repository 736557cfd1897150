// @ts-check
/** Reading the server's JSON. */

/**
 * The JSON answer of `path`; an error answer becomes an Error with the server's message.
 * The caller names what it expects (a typedef of types.js).
 * @template T
 * @param {string} path
 * @param {RequestInit} [init]
 * @returns {Promise<T>}
 */
export async function api(path, init) {
  const response = await fetch(path, init);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new Error(body.error ?? `${response.status} ${response.statusText}`);
  }
  return body;
}

// The endpoints' addresses (server/ui_api.ts lists them all).

/** @param {number} offset @param {number} limit */
export const runsPath = (offset, limit) => `/api/ui/runs?offset=${offset}&limit=${limit}`;

/** @param {string} id */
export const runPath = (id) => `/api/ui/runs/${encodeURIComponent(id)}`;

/** @param {number} offset @param {number} limit */
export const artifactsPath = (offset, limit) => `/api/ui/artifacts?offset=${offset}&limit=${limit}`;

/** @param {string} ref */
export const artifactPath = (ref) => `/api/ui/artifact?ref=${encodeURIComponent(ref)}`;

/** The loss histories of `refs`, downsampled to `points` evaluations each. */
/** @param {string[]} refs @param {number} points */
export const historyPath = (refs, points) =>
  `/api/ui/history?${refs.map((r) => `ref=${encodeURIComponent(r)}`).join("&")}&points=${points}`;

/** @param {"mmlu" | "judge" | "pairwise"} kind @param {string} ref */
export const evaluationPath = (kind, ref) => `/api/ui/${kind}?ref=${encodeURIComponent(ref)}`;

/** A file of an artifact, as it is. */
/** @param {string} ref @param {string} name */
export const fileHref = (ref, name) =>
  `/api/ui/file?ref=${encodeURIComponent(ref)}&path=${encodeURIComponent(name)}`;

/** The report stage's page of a whole run. */
/** @param {string} ref */
export const reportHref = (ref) => `/api/ui/file?ref=${encodeURIComponent(ref)}&path=report.html`;

/** Responses per page. */
export const RESPONSES_PAGE = 20;

/**
 * Which responses to show: a page from `offset`, those whose score in `field` lies in
 * [min, max] ("" leaves a bound open, and no field means the first).
 * @typedef {{offset: number, min: string, max: string, field: string}} ResponsesFilter
 */

/** @param {string} ref @param {ResponsesFilter} filter */
export function responsesPath(ref, filter) {
  const qs = new URLSearchParams({
    ref,
    offset: String(filter.offset),
    limit: String(RESPONSES_PAGE),
  });
  if (filter.field) qs.set("field", filter.field);
  if (filter.min !== "") qs.set("min", filter.min);
  if (filter.max !== "") qs.set("max", filter.max);
  return `/api/ui/responses?${qs}`;
}
