// The demo's starting policy: a tiny Qwen2-architecture model with the task tokenizer, randomly initialized, then
// fine-tuned on worked solutions (supervised, cross-entropy on the response tokens) until its greedy accuracy on
// held-out train-distribution problems leaves room for RL. The result is an HF model directory cached under
// <cache>/warmup-<hash>, where the hash covers everything that determines it (task, model shape, warm-up settings,
// code version), so a second demo with the same settings reuses it.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { Engine, TRAIN_BACKEND } from '../engine/engine.js';
import { loadModelDir, saveModelDir } from '../model/hfdir.js';
import { initModel } from '../model/init.js';
import { ModelTokenizer } from '../model/tokenizer.js';
import { generateTaskSplits } from '../task/generator.js';
import { taskTokenizerDir } from '../task/tokenizer.js';
import { writeJsonAtomic } from '../util/atomic.js';
import { Rng } from '../util/rng.js';
import { encodeProblem, type EncodedProblem } from './encode.js';
import { evaluateGreedy } from './evaluate.js';
import type { DemoSettings } from './settings.js';

/** Bump when the warm-up procedure changes, so older cache entries are not reused. */
export const WARMUP_VERSION = 1;


/** What determines the warm-up's result. */
export function warmupKey(s: DemoSettings): string {
  const key = { version: WARMUP_VERSION, task: s.task, model: s.model, warmup: s.warmup, evalMaxNewTokens: s.maxNewTokens };
  return createHash('sha256').update(JSON.stringify(key)).digest('hex').slice(0, 16);
}

export interface WarmupInfo {
  key: string;
  steps: number;
  /** greedy accuracy on the validation problems at each check */
  checks: Array<{ step: number; loss: number; accuracy: number }>;
  accuracy: number;
  parameters: number;
  seconds: number;
}

export interface WarmupResult {
  modelDir: string;
  info: WarmupInfo;
  reused: boolean;
}

export interface WarmupProgress {
  start(total: number): void;
  update(step: number, fields: { loss: number; accuracy: number | null }): void;
  stop(): void;
}

/** Learning rate at `step` (1-based): linear warm-up over the first 5% of steps, then cosine decay to 10%. */
export function warmupLr(step: number, total: number, peak: number): number {
  const warm = Math.max(1, Math.round(0.05 * total));
  if (step <= warm) return (peak * step) / warm;
  const t = (step - warm) / Math.max(1, total - warm);
  return peak * (0.1 + 0.45 * (1 + Math.cos(Math.PI * Math.min(1, t))));
}

/** The cached warm-up model of these settings, trained now if the cache does not hold it. */
export function ensureWarmup(s: DemoSettings, cacheDir: string, progress?: WarmupProgress): WarmupResult {
  const key = warmupKey(s);
  const dir = path.join(cacheDir, `warmup-${key}`);
  const infoFile = path.join(dir, 'warmup.json');
  if (existsSync(infoFile) && existsSync(path.join(dir, 'config.json'))) {
    try {
      const info = JSON.parse(readFileSync(infoFile, 'utf8')) as WarmupInfo;
      if (info.key === key) {
        loadModelDir(dir); // validates the directory; a damaged entry is rebuilt below
        return { modelDir: dir, info, reused: true };
      }
    } catch {
      // unreadable or damaged: train again
    }
  }
  mkdirSync(cacheDir, { recursive: true });
  const t0 = performance.now();
  const tokDir = taskTokenizerDir();
  const tok = ModelTokenizer.fromDir(tokDir);
  const m = s.model;
  const { config, weights } = initModel(
    {
      architecture: 'qwen2', numLayers: m.layers, hiddenSize: m.hidden, numHeads: m.heads, numKvHeads: m.kvHeads, intermediateSize: m.intermediate,
      vocabSize: tok.vocabSize, tieWordEmbeddings: true, bosTokenId: tok.bosTokenId, eosTokenIds: tok.eosTokenId === null ? [] : [tok.eosTokenId], padTokenId: tok.padTokenId,
    },
    s.warmup.seed,
  );
  const w = s.warmup;
  // train problems for the fine-tuning; validation problems drawn from the same distribution but a different seed
  const train = generateTaskSplits({ ...s.task, test: 0 }).train.map((p) => encodeProblem(tok, p));
  const val = generateTaskSplits({ ...s.task, seed: s.task.seed + 7919, train: w.valProblems, test: 0 }).train.map((p) => encodeProblem(tok, p));
  const engine = Engine.create(config, weights, { ...(s.threads ? { threads: s.threads } : {}), backend: TRAIN_BACKEND });
  const checks: WarmupInfo['checks'] = [];
  let steps = 0;
  try {
    const rng = new Rng(w.seed + 1);
    let order: number[] = [];
    const nextBatch = (): EncodedProblem[] => {
      const out: EncodedProblem[] = [];
      while (out.length < w.batch) {
        if (order.length === 0) order = rng.shuffle([...train.keys()]);
        out.push(train[order.pop()!]!);
      }
      return out;
    };
    progress?.start(w.maxSteps);
    let lossAvg = NaN;
    for (let step = 1; step <= w.maxSteps; step++) {
      engine.zeroGrad();
      const { loss } = engine.crossEntropyStep({ sequences: nextBatch().map((p) => ({ prompt: p.prompt, response: p.solution })) });
      if (!Number.isFinite(loss)) throw new Error(`warm-up step ${step}: the cross-entropy loss is non-finite (${loss})`);
      engine.adamwStep({ lr: warmupLr(step, w.maxSteps, w.lr), weightDecay: 0.01, maxGradNorm: 1 });
      lossAvg = Number.isNaN(lossAvg) ? loss : 0.9 * lossAvg + 0.1 * loss;
      steps = step;
      let acc: number | null = null;
      if (step % w.checkEvery === 0 || step === w.maxSteps) {
        const scores = evaluateGreedy(engine, tok, val, { maxNewTokens: s.maxNewTokens });
        acc = scores.reduce((a, b) => a + b, 0) / scores.length;
        checks.push({ step, loss: lossAvg, accuracy: acc });
      }
      progress?.update(step, { loss: lossAvg, accuracy: acc });
      // stop once the policy solves enough problems to give RL groups with mixed outcomes
      if (acc !== null && acc >= w.targetAccuracy) break;
    }
    progress?.stop();
    const info: WarmupInfo = { key, steps, checks, accuracy: checks.at(-1)?.accuracy ?? 0, parameters: engine.numParameters(), seconds: (performance.now() - t0) / 1000 };
    rmSync(dir, { recursive: true, force: true });
    saveModelDir(dir, config, engine.exportWeights(), { copyFrom: tokDir, copyGenerationConfig: false });
    writeJsonAtomic(infoFile, info);
    return { modelDir: dir, info, reused: false };
  } finally {
    engine.dispose();
  }
}
