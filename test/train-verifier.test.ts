// The training step scores rollouts through the verifier's worker pool (io.rewardBatch): the same rewards, and so
// the same trajectory, as the in-thread verifier, and timed-out answers are counted in metrics.jsonl's
// verify_timeouts.
import { parseTrainConfig, type TrainConfig } from '../src/config/load.js';
import { Trainer, type StepMetrics } from '../src/rl/trainer.js';
import type { TrainIO, TrainPrompt } from '../src/rl/types.js';
import { verify } from '../src/verify/index.js';
import { VerifierPool } from '../src/verify/pool.js';
import { BigramPolicy } from './helpers/bigram-policy.js';

const EOS = 10;
const prompts: TrainPrompt[] = Array.from({ length: 12 }, (_, i) => ({ id: String(i), tokens: Int32Array.of(11, i % 10), groundTruth: String(((i % 10) + 3) % 10) }));
const decode = (t: Int32Array) => `So the answer is \\boxed{${Array.from(t).filter((x) => x < 10).join('') || 'none'}}.`;

function config(): TrainConfig {
  return parseTrainConfig(
    {
      model: { path: 'toy' },
      data: { train_files: ['toy'], max_response_tokens: 2 },
      rollout: { n: 6, temperature: 1 },
      algorithm: { preset: 'grpo' },
      clipo: { enabled: false, out_size: 8, warmup_steps: 0 },
      optim: { lr: 0.05, prompts_per_step: 4, ppo_mini_batch: 2, micro_batch: 6, epochs: 100, max_steps: 4, seed: 5, grad_clip: 5 },
      output: { dir: 'unused', save_every: 0 },
    },
    'test config',
  );
}

function run(io: TrainIO): StepMetrics[] {
  const c = config();
  const policy = new BigramPolicy(12, 6, EOS, 11);
  const t = new Trainer({ config: c, policy, reference: c.algorithm.kl_coef > 0 ? policy.cloneFrozen() : null, prompts, io });
  const rows: StepMetrics[] = [];
  while (!t.done) rows.push(t.runStep().metrics);
  return rows;
}

const noTimes = (m: StepMetrics) => Object.fromEntries(Object.entries(m).filter(([k]) => !k.startsWith('time_') && k !== 'tokens_per_s'));

test('rewards through the pool equal the in-thread verifier; verify_timeouts counts timed-out answers', async () => {
  const pool = new VerifierPool({ threads: 2, timeoutMs: 10_000 });
  try {
    const inThread = run({ decode, reward: (text, gt) => (verify(text, gt).correct ? 1 : 0) });
    let batches = 0;
    const pooled = run({
      decode,
      reward: () => {
        throw new Error('rewardBatch must be used');
      },
      rewardBatch: (items) => {
        batches++;
        const r = pool.verifyBatchSync(items.map((it) => ({ completion: it.text, groundTruth: it.groundTruth })));
        return { rewards: r.results.map((x) => (x.correct ? 1 : 0)), timeouts: r.timeouts };
      },
    });
    expect(batches).toBe(4);
    expect(pooled.map(noTimes)).toEqual(inThread.map(noTimes));
    expect(pooled.every((m) => m.verify_timeouts === 0)).toBe(true);
    expect(inThread.some((m) => m.accuracy > 0 && m.accuracy < 1)).toBe(true);

    // two answers per batch time out: they score 0 and are counted
    const counted = run({
      decode,
      reward: () => 0,
      rewardBatch: (items) => ({ rewards: items.map((_, k) => (k < 2 ? 0 : verify(items[k]!.text, items[k]!.groundTruth).correct ? 1 : 0)), timeouts: 2 }),
    });
    expect(counted.map((m) => m.verify_timeouts)).toEqual([2, 2, 2, 2]);
  } finally {
    await pool.close();
  }
}, 120_000);
