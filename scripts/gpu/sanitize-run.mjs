// Small CUDA kernel runs for compute-sanitizer (scripts/gpu/run-all.sh): every surrogate variant on both load paths
// (T % 4 == 0: float4, else scalar), the device bandwidth probe, the contrastive kernel when it is built, one
// training step of the CUDA engine (forward, backward, the policy-loss micro-batch, AdamW) in fp32 and bf16, and its
// scoring and step-wise decoding (the device sampler) in both storages.
// Exits non-zero if a call throws; memory errors are compute-sanitizer's to report.
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..');
const dist = path.resolve(root, process.env.CLIPO_DIST_DIR ?? 'dist');
const lib = await import(pathToFileURL(path.join(dist, 'src', 'index.js')).href);
const native = lib.loadNative();

let x = 12345;
const rand = () => ((x = (x * 1103515245 + 12345) % 2147483648) / 2147483648);
let failures = 0;
function run(name, fn) {
  try {
    fn();
    console.log(`ok   ${name}`);
  } catch (e) {
    failures++;
    console.log(`FAIL ${name}: ${e.message}`);
  }
}

for (const T of [37, 64]) {
  const B = 5;
  const n = B * T;
  const logp = Float32Array.from({ length: n }, () => -3 * rand());
  const oldLogp = logp.map((v) => v + 0.6 * (rand() - 0.5));
  const refLogp = logp.map((v) => v + 0.4 * (rand() - 0.5));
  const mask = Uint8Array.from({ length: n }, (_, k) => (k % T < T - (k / T | 0) * 3 && k >= T) ? 1 : 0);
  const advantages = Float32Array.from({ length: B }, () => rand() - 0.5);
  for (const mode of ['token', 'sequence', 'geo_mean']) {
    for (const agg of ['token-mean', 'seq-mean-token-mean', 'seq-mean-token-sum']) {
      for (const ref of [false, true]) {
        run(`surrogate ${mode} ${agg} ref=${ref} T=${T}`, () => {
          const r = native.surrogateLossCuda({
            logp, oldLogp, refLogp: ref ? refLogp : undefined, advantages, mask, batch: B, length: T, mode, agg,
            clipLow: 0.2, clipHigh: 0.28, dualClip: mode === 'token' ? 3 : undefined, klCoef: ref ? 0.01 : 0, poisonOutput: true,
          });
          if (!r.gradLogp.every(Number.isFinite)) throw new Error('unwritten gradient elements');
        });
      }
    }
  }
}
run('measureDeviceBandwidth', () => native.measureDeviceBandwidth({ megabytes: 16, repeats: 2 }));

if (typeof lib.contrastiveLoss === 'function') {
  const B = 8, H = 16, D = 8, L = 12;
  const common = {
    batch: B, hiddenSize: H, outSize: D, weight: Float32Array.from({ length: D * H }, () => rand() - 0.5),
    correct: Uint8Array.from([1, 1, 0, 1, 0, 1, 1, 0]), group: Int32Array.from([0, 0, 0, 0, 1, 1, 1, 1]),
    lossType: 'infonce', level: 'group', distance: 'cosine', temperature: 0.05, maskedLabel: 0, skipTrivial: true, seed: 1,
    backend: 'cuda',
  };
  run('contrastive pooled', () => lib.contrastiveLoss({ ...common, pooled: Float32Array.from({ length: B * H }, () => rand() - 0.5) }));
  run('contrastive tokens', () => lib.contrastiveLoss({
    ...common, length: L, tokens: Float32Array.from({ length: B * L * H }, () => rand() - 0.5),
    mask: Uint8Array.from({ length: B * L }, (_, k) => (k % L < 9 ? 1 : 0)),
  }));
}
// the CUDA engine's training path: one tiny micro-batch forward + backward + AdamW step in both storages
if (lib.engineBackends().cuda) {
  const params = await import(pathToFileURL(path.join(dist, 'src', 'engine', 'params.js')).href);
  const config = params.smallConfig('qwen2', { vocab: 64, hidden: 32, layers: 2, heads: 2, kvHeads: 1, intermediate: 48 });
  const weights = params.randomWeights(config, { seed: 3, std: 0.15 });
  for (const precision of ['fp32', 'bf16']) {
    run(`engine training step ${precision}`, () => {
      const e = lib.Engine.create(config, weights, { backend: 'cuda', precision, training: true });
      const tok = (n) => Int32Array.from({ length: n }, () => Math.floor(rand() * 64));
      const batch = { sequences: [{ prompt: tok(5), response: tok(7) }, { prompt: tok(2), response: tok(3) }] };
      const r = e.forwardTrain(batch);
      e.backward(Float32Array.from(r.mask, (m) => (m ? rand() - 0.5 : 0)), Float32Array.from(r.mask, (m) => (m ? 0.1 : 0)));
      // the policy-loss micro-batch on the device (glue kernels, surrogate kernel, backward from device rows), with
      // KL, the entropy bonus and a response out of the loss
      e.policyLossBackward(batch, {
        mode: 'token', agg: 'token-mean', clipLow: 0.2, clipHigh: 0.28, dualClip: 3, klCoef: 0.05,
        oldLogp: Float32Array.from(r.logprobs, (x) => x + 0.2 * (rand() - 0.5)), refLogp: r.logprobs.slice(),
        advantages: Float32Array.of(1, -0.5), inLoss: Uint8Array.of(1, 0), weight: 0.5, entropyCoef: 0.01, entropyDenominator: 7,
      });
      e.adamwStep({ lr: 1e-3, weightDecay: 0.1, maxGradNorm: 1 });
      e.dispose();
    });
  }
  // inference: scoring (the LM head's gathered rows and chunk GEMMs) and step-wise decoding on the device sampler
  for (const precision of ['fp32', 'bf16']) {
    run(`engine scoring and decoding ${precision}`, () => {
      const e = lib.Engine.create(config, weights, { backend: 'cuda', precision });
      const tok = (n) => Int32Array.from({ length: n }, () => Math.floor(rand() * 64));
      e.score({ sequences: [{ prompt: tok(5), response: tok(7) }, { prompt: tok(2), response: tok(3) }] }, { entropy: true, pooled: true });
      e.decodeAdd({ prompt: tok(20), n: 3, maxNewTokens: 6, seed: 1, temperature: 0.9, topP: 0.9, topK: 10, minP: 0.01,
        repetitionPenalty: 1.2, logitBias: new Map([[5, 2], [7, -1]]), topLogprobs: 3, stopTokens: [] });
      e.decodeAdd({ prompt: tok(3), maxNewTokens: 4, seed: 2, temperature: 0, stopTokens: [] });
      for (let s = 0; s < 20 && e.decodeActive() > 0; s++) e.decodeStep();
      e.dispose();
    });
  }
}
process.exitCode = failures ? 1 : 0;
