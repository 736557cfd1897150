/**
 * Learning-rate schedule of the book's appendix D: a linear warmup from `initialLr` to `peakLr`,
 * then a cosine decay to `minLr` at the last step.
 */
export interface WarmupCosineOptions {
  peakLr: number;
  totalSteps: number;
  warmupSteps: number;
  /** Where the warmup starts. Default 0 (appendix D uses 3e-5). */
  initialLr?: number;
  /** Where the cosine ends. Default 0 (appendix D uses 0.1 × initialLr). */
  minLr?: number;
}

/** The learning rate for the 0-based `step` (the book's `global_step`). */
export function warmupCosineLr(step: number, options: WarmupCosineOptions): number {
  const { peakLr, totalSteps, warmupSteps, initialLr = 0, minLr = 0 } = options;
  if (!(totalSteps > 0) || warmupSteps < 0 || warmupSteps > totalSteps) {
    throw new Error(
      `warmupCosineLr: need 0 ≤ warmupSteps (${warmupSteps}) ≤ totalSteps (${totalSteps}) and totalSteps > 0`,
    );
  }
  if (step < warmupSteps) {
    return initialLr + step * (peakLr - initialLr) / warmupSteps;
  }
  const decaySteps = totalSteps - warmupSteps;
  const progress = decaySteps === 0 ? 1 : Math.min(1, (step - warmupSteps) / decaySteps);
  return minLr + (peakLr - minLr) * 0.5 * (1 + Math.cos(Math.PI * progress));
}
