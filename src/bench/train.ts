// `clipo bench train`: the median RL step time of each preset with and without CLIPO, side by side in one run on
// a small model, and the overhead CLIPO adds. CLIPO adds no forward pass (the pooled states come out of the
// scoring pass that runs anyway), only the head projection, the B×B loss and a head step; the target is ≤ 3%.
//
// Fair comparison: responses always run to the maximum length (no stop token), dynamic sampling is off (so every
// step trains on the same number of groups), and base and CLIPO steps alternate so that machine drift hits both.
import { parseTrainConfig } from '../config/load.js';
import { Engine, TRAIN_BACKEND } from '../engine/engine.js';
import { initModel } from '../model/init.js';
import { Trainer } from '../rl/trainer.js';
import type { PolicyEngine, TrainPrompt } from '../rl/types.js';
import { Rng } from '../util/rng.js';
import { maxOf, median } from '../util/stats.js';
import { round } from './bandwidth.js';
import { allThreads, loadBefore, loadRecord, standardNotes, threadCounts } from './harness.js';
import type { BenchContext, BenchReport, BenchRow, BenchSuite } from './types.js';

const presetList = ['grpo', 'dapo', 'gspo', 'gmpo'] as const;

function makeTrainer(preset: string, clipo: boolean, sizes: { hidden: number; layers: number; vocab: number; prompt: number; response: number; n: number; prompts: number }, threads: number) {
  const { config, weights } = initModel({ architecture: 'qwen2', numLayers: sizes.layers, hiddenSize: sizes.hidden, numHeads: 4, numKvHeads: 2, intermediateSize: 2 * sizes.hidden, vocabSize: sizes.vocab, tieWordEmbeddings: true, eosTokenIds: [] }, 1);
  const policy = Engine.create({ ...config, eosTokenIds: [] }, weights, { threads, backend: TRAIN_BACKEND }) as unknown as PolicyEngine & { cloneFrozen(): PolicyEngine };
  const cfg = parseTrainConfig({
    model: { path: '(in memory)' },
    data: { train_files: ['(synthetic)'], max_response_tokens: sizes.response },
    rollout: { n: sizes.n, temperature: 1 },
    algorithm: { preset, dynamic_sampling: false },
    clipo: { enabled: clipo, out_size: 64, warmup_steps: 0 },
    optim: { lr: 1e-5, prompts_per_step: sizes.prompts, ppo_mini_batch: sizes.prompts, micro_batch: sizes.n * sizes.prompts, epochs: 1000, seed: 1 },
  }, 'bench config');
  const rng = new Rng(7);
  const prompts: TrainPrompt[] = Array.from({ length: 64 }, (_, i) => ({ id: String(i), tokens: Int32Array.from({ length: sizes.prompt }, () => rng.int(sizes.vocab)), groundTruth: '' }));
  // a synthetic verifier: the parity of the response's token sum, so groups mix correct and incorrect responses
  const io = { decode: (t: Int32Array) => String(t.reduce((a, b) => a + b, 0) % 2), reward: (text: string) => (text === '0' ? 1 : 0) };
  const reference = cfg.algorithm.kl_coef > 0 ? policy.cloneFrozen() : null;
  return { trainer: new Trainer({ config: cfg, policy, reference, prompts, io }), policy, prompts, dispose: () => { reference?.dispose(); policy.dispose(); } };
}

export const trainSuite: BenchSuite = {
  name: 'train',
  groups: ['train'],
  description: 'CPU (default): median RL step time per preset, with and without CLIPO (target: CLIPO adds ≤ 3%); --backend cuda: a 1.5B-shaped training step (MFU, beside transformers + fused AdamW with --compare torch) and one RL step by phase (CLIPO ≤ 2%)',
  async run(ctx: BenchContext): Promise<BenchReport> {
    // --backend cuda: training on the CUDA engine beside PyTorch on the GPU (train-cuda.ts); 'auto' and 'cpu' run
    // the CPU rows below
    if (ctx.backend === 'cuda') return (await import('./train-cuda.js')).runTrainCuda(ctx);
    const before = loadBefore();
    const sizes = ctx.quick
      ? { hidden: 32, layers: 2, vocab: 128, prompt: 8, response: 8, n: 4, prompts: 2 }
      : { hidden: 128, layers: 2, vocab: 512, prompt: 32, response: 48, n: 8, prompts: 8 };
    const repeats = Math.max(3, ctx.repeats);
    const rows: BenchRow[] = [];
    const notes: string[] = [];

    // The scoring pass with and without pooled states: the only engine work CLIPO adds (alternating, median).
    const probe = makeTrainer('grpo', false, sizes, allThreads(ctx.threads));
    let poolCost = 0;
    try {
      const rng = new Rng(11);
      const batch = { sequences: Array.from({ length: sizes.n * sizes.prompts }, (_, i) => ({ prompt: probe.prompts[i % probe.prompts.length]!.tokens, response: Int32Array.from({ length: sizes.response }, () => rng.int(sizes.vocab)) })) };
      const time = (pooled: boolean) => {
        const t0 = performance.now();
        probe.policy.score(batch, { pooled });
        return (performance.now() - t0) / 1000;
      };
      time(false);
      time(true);
      const plain: number[] = [], pooled: number[] = [];
      for (let r = 0; r < 2 * repeats; r++) {
        plain.push(time(false));
        pooled.push(time(true));
      }
      // the median of paired differences (each pooled run next to a plain one) resists machine drift
      poolCost = Math.max(0, median(pooled.map((x, i) => x - plain[i]!)));
      ctx.log(`scoring pass: ${median(plain).toFixed(4)} s, with pooled states ${median(pooled).toFixed(4)} s`);
    } finally {
      probe.dispose();
    }

    // one thread and all threads; within each, base and CLIPO steps alternate
    for (const threads of threadCounts(ctx.threads))
    for (const preset of presetList) {
      const base = makeTrainer(preset, false, sizes, threads);
      const clipo = makeTrainer(preset, true, sizes, threads);
      try {
        base.trainer.runStep(); // warm-up (allocations, page faults)
        clipo.trainer.runStep();
        const tb: number[] = [], tc: number[] = [], phase: number[] = [];
        for (let r = 0; r < repeats; r++) {
          tb.push(base.trainer.runStep().metrics.time_step_s);
          const m = clipo.trainer.runStep().metrics;
          tc.push(m.time_step_s);
          phase.push(m.time_clipo_s);
        }
        const b = median(tb), c = median(tc), ph = median(phase);
        const overhead = (100 * (c - b)) / b;
        const attributable = (100 * (ph + poolCost)) / b;
        rows.push({
          preset, threads, sequences: sizes.n * sizes.prompts, response_tokens: sizes.response, base_step_s: round(b), clipo_step_s: round(c),
          step_overhead_pct: round(overhead), clipo_phase_s: round(ph), pooling_s: round(poolCost), clipo_added_pct: round(attributable),
        });
        ctx.log(`train ${preset}, ${threads} thread(s): base ${b.toFixed(3)} s, +CLIPO ${c.toFixed(3)} s (${overhead.toFixed(1)}%), CLIPO phase + pooling ${attributable.toFixed(2)}% of a base step`);
      } finally {
        base.dispose();
        clipo.dispose();
      }
    }
    const worst = maxOf(rows.map((r) => r.clipo_added_pct as number));
    notes.push(`CLIPO adds (its phase: head projection, contrastive loss and reward, head step; plus pooling in the scoring pass) at most ${worst.toFixed(2)}% of a base step; target ≤ 3%: ${worst <= 3 ? 'met' : 'missed'}.`);
    notes.push('Steps are timed on the wall clock (a step mixes engine threads, the verifier and JavaScript); the pooling cost is measured once, on all threads.');
    notes.push(`step_overhead_pct compares whole steps (median of alternating runs; median over presets ${median(rows.map((r) => r.step_overhead_pct as number)).toFixed(2)}%); it carries the noise of the step time itself, which on a busy machine exceeds the effect.`);
    const load = loadRecord(before);
    return { suite: 'train', rows, notes: [...standardNotes(load, []), ...notes], load };
  },
};
