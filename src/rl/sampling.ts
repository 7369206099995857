// Rollouts of one RL step: n responses per prompt from the policy, each scored by the verifier. With DAPO's dynamic
// sampling (docs/algorithm.md §3), groups whose verifier rewards are all equal carry no advantage
// and are dropped, and more prompts are sampled until the batch is full or max_sampling_tries rounds have run.
import type { TrainConfig } from '../config/load.js';
import { counterSeed, SeedStream } from '../util/seeds.js';
import { groupHasSpread } from './advantages.js';
import type { PromptStream } from './schedule.js';
import type { PolicyEngine, TrainIO, TrainPrompt } from './types.js';

export interface Rollout {
  prompt: Int32Array;
  response: Int32Array;
  /** verifier reward r_v */
  rv: number;
  /** index of the response's group in the batch */
  group: number;
}

export interface SampledGroups {
  /** the kept groups, prompts_per_step of them unless dynamic sampling ran out of rounds */
  groups: Rollout[][];
  /** responses sampled over every round (kept or not), and how many of them were correct */
  sampled: number;
  sampledCorrect: number;
  generatedTokens: number;
  rounds: number;
  /** the epoch of the step's first prompt (0-based) */
  epoch: number;
  /** answers the verifier pool gave up on (deadline), scored 0 */
  verifyTimeouts: number;
}

export function sampleGroups(o: { cfg: TrainConfig; policy: PolicyEngine; prompts: TrainPrompt[]; stream: PromptStream; io: TrainIO; stepNo: number }): SampledGroups {
  const { cfg: c, policy, prompts, stream, io, stepNo } = o;
  const n = c.rollout.n;
  const P = c.optim.prompts_per_step;
  const dynamic = c.algorithm.dynamic_sampling;
  const maxRounds = dynamic ? c.algorithm.max_sampling_tries : 1;
  const groups: Rollout[][] = [];
  let sampled = 0, sampledCorrect = 0, generatedTokens = 0, rounds = 0, epoch = -1, verifyTimeouts = 0;
  while (rounds < maxRounds && groups.length < P) {
    const idx = stream.next(P);
    if (epoch < 0) epoch = stream.pos.epoch;
    const gen = policy.generate({
      prompts: idx.map((i) => prompts[i]!.tokens),
      n,
      maxNewTokens: c.data.max_response_tokens,
      temperature: c.rollout.temperature,
      topP: c.rollout.top_p,
      seed: counterSeed(c.optim.seed, SeedStream.rollout, stepNo, rounds),
    });
    rounds++;
    if (gen.sequences.length !== idx.length * n) throw new Error(`engine returned ${gen.sequences.length} sequences for ${idx.length} prompts × ${n}`);
    const rv = new Float32Array(gen.sequences.length);
    const items = gen.sequences.map((s) => ({ text: io.decode(s.tokens), groundTruth: prompts[idx[s.promptIndex]!]!.groundTruth }));
    for (const s of gen.sequences) generatedTokens += s.tokens.length;
    if (io.rewardBatch) {
      const r = io.rewardBatch(items);
      if (r.rewards.length !== items.length) throw new Error(`rewardBatch returned ${r.rewards.length} rewards for ${items.length} responses`);
      rv.set(Array.from(r.rewards));
      verifyTimeouts += r.timeouts;
    } else items.forEach((it, k) => (rv[k] = io.reward(it.text, it.groundTruth)));
    for (let g = 0; g < idx.length; g++) {
      for (let j = 0; j < n; j++) sampledCorrect += rv[g * n + j]! > 0 ? 1 : 0;
      sampled += n;
      if (groups.length >= P) continue;
      if (dynamic && !groupHasSpread(rv, g * n, n)) continue;
      const prompt = prompts[idx[g]!]!.tokens;
      groups.push(gen.sequences.slice(g * n, (g + 1) * n).map((s, j) => ({ prompt, response: s.tokens, rv: rv[g * n + j]!, group: groups.length })));
    }
  }
  return { groups, sampled, sampledCorrect, generatedTokens, rounds, epoch, verifyTimeouts };
}
