// @ts-check
/**
 * The page's one view and its refresh timer. Each route gets a token; work that finishes after
 * the user moved on (a slow fetch, a poll) sees a stale token and leaves the view alone.
 */

/** Where every route draws. */
export const view = /** @type {HTMLElement} */ (document.getElementById("view"));

let pollTimer = 0;
let routeToken = 0;

/** A new route begins: earlier work goes stale and the refresh stops. */
export function newRoute() {
  clearTimeout(pollTimer);
  setLive(false);
  return ++routeToken;
}

/** Whether `token`'s route is still the one shown. */
/** @param {number} token */
export function isCurrent(token) {
  return token === routeToken;
}

/** The header's "● live" mark, while the view refreshes itself. */
/** @param {boolean} on */
export function setLive(on) {
  /** @type {HTMLElement} */ (document.getElementById("live")).textContent = on ? "● live" : "";
}

/** Runs `next` after `ms`, replacing any refresh scheduled before. */
/** @param {() => void} next @param {number} ms */
export function schedule(next, ms) {
  clearTimeout(pollTimer);
  pollTimer = setTimeout(next, ms);
}

/**
 * Re-runs `load` every `ms` while it returns true and the route has not changed.
 * @param {number} token
 * @param {number} ms
 * @param {() => Promise<boolean>} load
 */
export function poll(token, ms, load) {
  schedule(async () => {
    if (!isCurrent(token)) return;
    let again = false;
    try {
      again = await load();
    } catch { /* keep the last good view */ }
    setLive(again);
    if (again && isCurrent(token)) poll(token, ms, load);
  }, ms);
}
