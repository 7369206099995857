// Each preset's policy loss on a hand-checked case, through the preset -> surrogate-kernel mapping the trainer uses.
// Two sequences of two tokens, old log-probs 0, so the ratios are exp(logp):
//   seq 0: A = +1, ratios [1.5, 0.5];  seq 1: A = −1, ratios [1.5, 5]
import { presets } from '../src/config/presets.js';
import { surrogateLoss } from '../src/kernels/surrogate.js';
import { microBatchWeight, surrogateSettings } from '../src/rl/policy-loss.js';

const logp = Float32Array.from([1.5, 0.5, 1.5, 5].map(Math.log));
const oldLogp = new Float32Array(4);
const advantages = Float32Array.of(1, -1);
const mask = Uint8Array.of(1, 1, 1, 1);

function presetLoss(name: keyof typeof presets): number {
  const s = surrogateSettings(presets[name], true);
  // reference = current policy: the low_var_kl term is exactly 0 whatever its coefficient
  return surrogateLoss({ logp, oldLogp, refLogp: logp, advantages, mask, batch: 2, length: 2, ...s }).loss;
}

describe('preset losses by hand (docs/algorithm.md §3)', () => {
  test('GRPO: clip 0.2, dual clip 3, token-mean', () => {
    // seq 0: −min(1.5, 1.2) = −1.2; −min(0.5, 0.8·1) = −0.5
    // seq 1: −min(−1.5, −1.2) = 1.5; −min(−5, −1.2) = 5, capped by the dual clip −c·A = 3
    expect(presetLoss('grpo')).toBeCloseTo((-1.2 - 0.5 + 1.5 + 3) / 4, 5); // 0.7
  });

  test('DAPO: clip-higher 0.28', () => {
    expect(presetLoss('dapo')).toBeCloseTo((-1.28 - 0.5 + 1.5 + 3) / 4, 5); // 0.68
  });

  test('GSPO: sequence ratio exp(mean δ), clip (1 − 3e-4, 1 + 4e-4), seq-mean-token-mean', () => {
    // s0 = exp((ln 1.5 + ln 0.5)/2) = √0.75 = 0.8660254: −min(0.866, 0.9997) = −0.8660254
    // s1 = exp((ln 1.5 + ln 5)/2) = √7.5 = 2.7386128, A = −1: −min(−2.7386, −1.0004) = 2.7386128
    expect(presetLoss('gspo')).toBeCloseTo((-Math.sqrt(0.75) + Math.sqrt(7.5)) / 2, 5); // 0.9362937
  });

  test('GMPO: log-space clip 0.4, R = exp(mask-mean δ̃), −mean_i(A_i R_i)', () => {
    // seq 0 (A > 0): δ̃ = [min(0.4055, 0.4), min(−0.6931, −0.4)] = [0.4, −0.6931] -> R0 = exp(−0.1465736) = 0.8636622
    // seq 1 (A < 0): δ̃ = [max(0.4055, 0.4), max(1.6094, 0.4)] = [0.4055, 1.6094] -> R1 = √7.5 = 2.7386128
    const r0 = Math.exp((0.4 + Math.log(0.5)) / 2);
    expect(presetLoss('gmpo')).toBeCloseTo((-r0 + Math.sqrt(7.5)) / 2, 5); // 0.9374753
  });

  test('KL enters only with reference log-probs; micro-batch weights', () => {
    expect(surrogateSettings(presets.grpo, true).klCoef).toBe(0.001);
    expect(surrogateSettings(presets.grpo, false).klCoef).toBe(0);
    expect(surrogateSettings(presets.gspo, true).dualClip).toBeUndefined();
    expect(microBatchWeight(surrogateSettings(presets.grpo, false), 30, 120, 2, 8)).toBe(0.25);
    expect(microBatchWeight(surrogateSettings(presets.gspo, false), 30, 120, 2, 8)).toBe(0.25);
    expect(microBatchWeight(surrogateSettings(presets.gmpo, false), 60, 120, 2, 8)).toBe(0.25);
  });
});
