// The policy's learning rate per step: optional linear warm-up, then constant or cosine decay. Steps count the
// policy-training steps only (the CLIPO head warm-up leaves the policy frozen, so it is not part of the schedule).
//   warm-up (s < W):  lr · (s + 1) / W
//   constant:         lr
//   cosine:           lr · (m + (1 − m) · ½ (1 + cos(π · p))),  p = (s − W) / max(1, S − W − 1) ∈ [0, 1]
// with s the 0-based policy step, S the policy steps of the run and m = min_lr_ratio (verl's cosine schedule).
export interface LrScheduleSettings {
  lr: number;
  lr_schedule: 'constant' | 'cosine';
  lr_warmup_steps: number;
  min_lr_ratio: number;
}

export function learningRate(o: LrScheduleSettings, policyStep: number, policySteps: number): number {
  const W = o.lr_warmup_steps;
  if (policyStep < W) return (o.lr * (policyStep + 1)) / W;
  if (o.lr_schedule === 'constant') return o.lr;
  const p = Math.min(1, Math.max(0, (policyStep - W) / Math.max(1, policySteps - W - 1)));
  return o.lr * (o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + Math.cos(Math.PI * p)));
}
