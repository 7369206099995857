// Rollout logs: every `output.rollouts_every` steps, <output.dir>/rollouts/step-NNNNNNNN.jsonl holds one line per
// response of the trained batch: prompt, response, the verifier's result, the custom reward and its parts, the
// overlong penalty, CLIPO's contrastive loss and reward, the total reward, the advantage and the length. The first
// `output.rollouts_text` responses also go to TensorBoard as text. Files are written atomically.
import path from 'node:path';
import { writeFileAtomic } from '../util/atomic.js';
import type { EventWriter } from './tensorboard.js';
import type { StepDetail } from './trainer.js';

export interface RolloutRecord {
  step: number;
  index: number;
  group: number;
  prompt_id: string;
  prompt: string;
  response: string;
  ground_truth: string;
  extracted: string | null;
  verifier_reward: number;
  verifier_error: string | null;
  module_reward: number | null;
  reward_parts: Record<string, number>;
  reward_module_error: string | null;
  overlong_penalty: number;
  truncated: boolean;
  correct: boolean;
  contrastive_loss: number | null;
  contrastive_reward: number | null;
  reward: number;
  advantage: number;
  length: number;
}

export function rolloutRecords(d: StepDetail): RolloutRecord[] {
  return d.responses.map((r, i) => ({
    step: d.step,
    index: i,
    group: d.group[i]!,
    prompt_id: r.promptId,
    prompt: r.promptText,
    response: r.scored.text,
    ground_truth: r.groundTruth,
    extracted: r.scored.extracted,
    verifier_reward: r.scored.verifier,
    verifier_error: r.scored.verifierError,
    module_reward: r.scored.module,
    reward_parts: r.scored.parts,
    reward_module_error: r.scored.moduleError,
    overlong_penalty: r.scored.overlong,
    truncated: r.scored.truncated,
    correct: d.correct[i] === 1,
    contrastive_loss: d.contrastivePerSample ? d.contrastivePerSample[i]! : null,
    contrastive_reward: d.contrastiveReward ? d.contrastiveReward[i]! : null,
    reward: d.rewards[i]!,
    advantage: d.advantages[i]!,
    length: r.length,
  }));
}

export function rolloutLogPath(outputDir: string, step: number): string {
  return path.join(outputDir, 'rollouts', `step-${String(step).padStart(8, '0')}.jsonl`);
}

const json = (v: unknown) => JSON.stringify(v, (_k, x) => (typeof x === 'number' && !Number.isFinite(x) ? null : x));

/** Writes the step's rollouts when the step is due; returns the file (or null). */
export function writeRolloutLog(outputDir: string, d: StepDetail, every: number, textCount: number, tb: EventWriter | null): string | null {
  if (every <= 0 || d.step % every !== 0) return null;
  const recs = rolloutRecords(d);
  const file = rolloutLogPath(outputDir, d.step);
  writeFileAtomic(file, recs.map((r) => json(r) + '\n').join(''));
  if (tb) {
    for (const r of recs.slice(0, textCount)) {
      const fence = '```';
      const body = [
        `**prompt** (${r.prompt_id}, ground truth \`${r.ground_truth}\`)`, '', fence, r.prompt, fence, '',
        `**response** (${r.length} tokens${r.truncated ? ', truncated' : ''})`, '', fence, r.response, fence, '',
        `verifier ${r.verifier_reward}${r.verifier_error ? ` (error: ${r.verifier_error})` : ''}, extracted \`${r.extracted ?? '-'}\`` +
          `${r.module_reward !== null ? `, module ${r.module_reward}` : ''}${r.contrastive_reward !== null ? `, r_c ${r.contrastive_reward.toFixed(4)}` : ''}` +
          `, reward ${r.reward.toFixed(4)}, advantage ${r.advantage.toFixed(4)}`,
      ].join('\n');
      tb.text(d.step, `rollouts/${r.index}`, body);
    }
  }
  return file;
}
