// The demo's sizes. The default is sized to finish in about ten minutes on a 2-core CPU with a cold warm-up cache;
// `quick` is a smoke run for tests (well under a minute). Every number here is part of what the report states.
export interface DemoSettings {
  /** task data (ensureTaskData options) */
  task: { seed: number; train: number; test: number; maxOps: number; maxValue: number };
  /** the tiny Qwen2 policy (vocabulary: the task tokenizer's) */
  model: { layers: number; hidden: number; heads: number; kvHeads: number; intermediate: number };
  /** supervised warm-up: AdamW on worked solutions, greedy accuracy checked every `checkEvery` steps on
   *  `valProblems` fresh train-distribution problems, stopping at `targetAccuracy` or `maxSteps` */
  warmup: { seed: number; maxSteps: number; batch: number; lr: number; checkEvery: number; valProblems: number; targetAccuracy: number };
  /** RL: the same budget for every arm. `prompts`: train on the first N train prompts only (0: all of them) */
  rl: { steps: number; promptsPerStep: number; miniBatch: number; n: number; lr: number; temperature: number; ppoEpochs: number; prompts: number };
  /** CLIPO arm: the head and reward settings (everything else as the paper's defaults) */
  clipo: { outSize: number; lambda: number; temperature: number; headLr: number; warmupSteps: number };
  /** longest response (warm-up checks, rollouts, evaluation) */
  maxNewTokens: number;
  /** problems evaluated per split (at most task.test) */
  evalProblems: number;
  /** engine threads (0: picked by the model's size, which is one thread for the demo's models) */
  threads: number;
}

export const DEFAULT_SETTINGS: DemoSettings = {
  task: { seed: 0, train: 2000, test: 200, maxOps: 2, maxValue: 20 },
  model: { layers: 2, hidden: 128, heads: 4, kvHeads: 2, intermediate: 384 },
  warmup: { seed: 0, maxSteps: 1000, batch: 32, lr: 3e-3, checkEvery: 50, valProblems: 100, targetAccuracy: 0.5 },
  rl: { steps: 50, promptsPerStep: 32, miniBatch: 32, n: 8, lr: 3e-4, temperature: 1.0, ppoEpochs: 1, prompts: 0 },
  clipo: { outSize: 64, lambda: 0.2, temperature: 0.1, headLr: 1e-3, warmupSteps: 0 },
  maxNewTokens: 56,
  evalProblems: 200,
  threads: 0,
};

export const QUICK_SETTINGS: DemoSettings = {
  task: { seed: 0, train: 64, test: 16, maxOps: 2, maxValue: 30 },
  model: { layers: 1, hidden: 32, heads: 2, kvHeads: 1, intermediate: 64 },
  warmup: { seed: 0, maxSteps: 20, batch: 8, lr: 3e-3, checkEvery: 10, valProblems: 8, targetAccuracy: 0.35 },
  rl: { steps: 3, promptsPerStep: 4, miniBatch: 2, n: 4, lr: 1e-4, temperature: 1.0, ppoEpochs: 1, prompts: 0 },
  clipo: { outSize: 16, lambda: 0.2, temperature: 0.1, headLr: 1e-3, warmupSteps: 0 },
  maxNewTokens: 40,
  evalProblems: 16,
  // one thread: a model this small gains nothing from a second, and a busy machine makes thread barriers slow
  threads: 1,
};
