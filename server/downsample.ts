/**
 * Downsampling long series for drawing: Largest-Triangle-Three-Buckets (Steinarsson 2013)
 * keeps the visual shape (peaks, dips, the ends) of a curve with far fewer points, so a
 * 100k-step history reaches the browser as ~1,000 points.
 */

/**
 * Indices of at most `threshold` points of (xs, ys) chosen by LTTB, in increasing order; the
 * first and last points are always kept. Non-finite ys are skipped when choosing.
 */
export function lttbIndices(xs: ArrayLike<number>, ys: ArrayLike<number>, threshold: number) {
  const n = xs.length;
  if (threshold >= n || n <= 2) return Array.from({ length: n }, (_, i) => i);
  if (threshold < 3) threshold = 3;
  const picked = [0];
  const every = (n - 2) / (threshold - 2);
  let a = 0;
  for (let bucket = 0; bucket < threshold - 2; bucket++) {
    // The average of the next bucket is the third corner of the triangle.
    const nextStart = Math.floor((bucket + 1) * every) + 1;
    const nextEnd = Math.min(Math.floor((bucket + 2) * every) + 1, n);
    let avgX = 0, avgY = 0, count = 0;
    for (let j = nextStart; j < nextEnd; j++) {
      if (!Number.isFinite(ys[j])) continue;
      avgX += xs[j], avgY += ys[j], count++;
    }
    if (count === 0) avgX = xs[n - 1], avgY = Number.isFinite(ys[n - 1]) ? ys[n - 1] : 0;
    else avgX /= count, avgY /= count;

    const start = Math.floor(bucket * every) + 1;
    const end = Math.floor((bucket + 1) * every) + 1;
    let best = start, bestArea = -1;
    const ax = xs[a], ay = Number.isFinite(ys[a]) ? ys[a] : avgY;
    for (let j = start; j < end; j++) {
      const y = Number.isFinite(ys[j]) ? ys[j] : ay;
      const area = Math.abs((ax - avgX) * (y - ay) - (ax - xs[j]) * (avgY - ay));
      if (area > bestArea) bestArea = area, best = j;
    }
    picked.push(best);
    a = best;
  }
  picked.push(n - 1);
  return picked;
}

/** Keeps the rows `indices` of every column. */
export function pickRows<T extends Record<string, ArrayLike<unknown>>>(
  columns: T,
  indices: number[],
): { [K in keyof T]: unknown[] } {
  const out = {} as { [K in keyof T]: unknown[] };
  for (const key of Object.keys(columns) as (keyof T)[]) {
    out[key] = indices.map((i) => columns[key][i]);
  }
  return out;
}
