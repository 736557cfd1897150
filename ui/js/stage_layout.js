// @ts-check
/**
 * Where the boxes of a run's stage graph go: one column per depth (the longest chain of
 * needs before a stage), the stages of a column top to bottom in run order, and a curve from
 * each box's right edge to the next's left. No DOM here.
 */

/** A box's size and the gaps between columns (x) and rows (y), in pixels. */
export const BOX = { width: 170, height: 52, gapX: 60, gapY: 18 };
const MARGIN = 10;

/** @typedef {{stage: string, needs?: string[]}} GraphStep */
/** @typedef {{x: number, y: number}} Point */

/**
 * @typedef {object} StageLayout
 * @property {Map<string, Point>} position each stage's box, top left
 * @property {string[]} edgePaths an SVG path for each edge whose both ends are drawn
 * @property {number} width
 * @property {number} height
 */

/**
 * Each stage's depth: 0 without needs, else one more than its deepest need. Needs that are
 * not steps of the run are left out; a cycle (not a valid pipeline) counts as depth 0.
 * @param {GraphStep[]} steps
 * @returns {Map<string, number>}
 */
export function stageDepths(steps) {
  /** @type {Map<string, number>} */
  const depth = new Map();
  const byName = new Map(steps.map((s) => [s.stage, s]));
  /** @param {string} name @param {Set<string>} seen @returns {number} */
  const depthOf = (name, seen = new Set()) => {
    const known = depth.get(name);
    if (known !== undefined) return known;
    if (seen.has(name)) return 0;
    seen.add(name);
    const needs = (byName.get(name)?.needs ?? []).filter((n) => byName.has(n));
    const d = needs.length ? 1 + Math.max(...needs.map((n) => depthOf(n, seen))) : 0;
    depth.set(name, d);
    return d;
  };
  steps.forEach((s) => depthOf(s.stage));
  return depth;
}

/**
 * @param {GraphStep[]} steps
 * @param {[string, string][]} edges [from, to]
 * @returns {StageLayout}
 */
export function layoutStages(steps, edges) {
  const depth = stageDepths(steps);
  /** @type {GraphStep[][]} */
  const columns = [];
  for (const s of steps) (columns[depth.get(s.stage) ?? 0] ??= []).push(s);
  const { width: W, height: H, gapX: GX, gapY: GY } = BOX;
  /** @type {Map<string, Point>} */
  const position = new Map();
  columns.forEach((col, x) =>
    col.forEach((s, y) =>
      position.set(s.stage, {
        x: MARGIN + x * (W + GX),
        y: MARGIN + y * (H + GY),
      })
    )
  );
  const width = 2 * MARGIN + columns.length * (W + GX) - GX;
  const height = 2 * MARGIN +
    Math.max(...columns.map((c) => c.length)) * (H + GY) -
    GY;
  const edgePaths = [];
  for (const [from, to] of edges) {
    const a = position.get(from), b = position.get(to);
    if (!a || !b) continue;
    const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2;
    edgePaths.push(
      `M${x1},${y1} C${x1 + GX / 2},${y1} ${x2 - GX / 2},${y2} ${x2},${y2}`,
    );
  }
  return { position, edgePaths, width, height };
}
