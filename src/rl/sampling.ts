// Rollouts of one RL step: n responses per prompt from the policy, each given its task reward by the reward stage
// (verifier, custom module, overlong shaping: rewards.ts). With DAPO's dynamic sampling (docs/algorithm.md §3),
// groups whose verifier outcomes are all equal carry no advantage and are dropped, and more prompts are sampled until
// the batch is full or max_sampling_tries rounds have run.
import type { TrainConfig } from '../config/load.js';
import { counterSeed, SeedStream } from '../util/seeds.js';
import { groupHasSpread } from './advantages.js';
import type { RewardStage, ScoredResponse } from './rewards.js';
import type { PromptStream } from './schedule.js';
import type { PolicyEngine, TrainIO, TrainPrompt } from './types.js';

export interface Rollout {
  prompt: Int32Array;
  response: Int32Array;
  /** task reward r_task (verifier, custom module, overlong shaping) */
  rv: number;
  /** index of the response's group in the batch */
  group: number;
  scored: ScoredResponse;
  source: TrainPrompt;
}

export interface SampledGroups {
  /** the kept groups, prompts_per_step of them unless dynamic sampling ran out of rounds */
  groups: Rollout[][];
  /** responses sampled over every round (kept or not), and how many of them the verifier found correct */
  sampled: number;
  sampledCorrect: number;
  generatedTokens: number;
  rounds: number;
  /** the epoch of the step's first prompt (0-based) */
  epoch: number;
  /** answers the verifier pool gave up on (deadline), scored 0 */
  verifyTimeouts: number;
  /** the process check (built-in task only): correct responses checked, and those whose steps are the true ones */
  processChecked: number;
  processOk: number;
  /** over every sampled response / group (kept or not) */
  truncated: number;
  groupsSampled: number;
  noSpread: number;
  verifierErrors: number;
  moduleErrors: number;
  moduleTimeouts: number;
  moduleSum: number;
  /** custom reward parts: sum and count per name */
  partSum: Map<string, { sum: number; count: number }>;
}

export function sampleGroups(o: { cfg: TrainConfig; policy: PolicyEngine; prompts: TrainPrompt[]; stream: PromptStream; io: TrainIO; rewards: RewardStage; stepNo: number }): SampledGroups {
  const { cfg: c, policy, prompts, stream, io, stepNo } = o;
  const n = c.rollout.n;
  const P = c.optim.prompts_per_step;
  const dynamic = c.algorithm.dynamic_sampling;
  const maxRounds = dynamic ? c.algorithm.max_sampling_tries : 1;
  const s: SampledGroups = {
    groups: [], sampled: 0, sampledCorrect: 0, generatedTokens: 0, rounds: 0, epoch: -1, verifyTimeouts: 0,
    processChecked: 0, processOk: 0, truncated: 0, groupsSampled: 0, noSpread: 0, verifierErrors: 0, moduleErrors: 0,
    moduleTimeouts: 0, moduleSum: 0, partSum: new Map(),
  };
  const groups = s.groups;
  while (s.rounds < maxRounds && groups.length < P) {
    const idx = stream.next(P);
    if (s.epoch < 0) s.epoch = stream.pos.epoch;
    const gen = policy.generate({
      prompts: idx.map((i) => prompts[i]!.tokens),
      n,
      maxNewTokens: c.data.max_response_tokens,
      temperature: c.rollout.temperature,
      topP: c.rollout.top_p,
      seed: counterSeed(c.optim.seed, SeedStream.rollout, stepNo, s.rounds),
    });
    s.rounds++;
    if (gen.sequences.length !== idx.length * n) throw new Error(`engine returned ${gen.sequences.length} sequences for ${idx.length} prompts × ${n}`);
    const batch = o.rewards.scoreAll(gen.sequences.map((q) => ({ prompt: prompts[idx[q.promptIndex]!]!, tokens: q.tokens, finishReason: q.finishReason })));
    const scored = batch.scored;
    s.verifyTimeouts += batch.timeouts;
    const rv = Float32Array.from(scored, (x) => x.verifier);
    const rTask = Float32Array.from(scored, (x) => x.reward);
    for (const [k, x] of scored.entries()) {
      s.generatedTokens += gen.sequences[k]!.tokens.length;
      if (x.truncated) s.truncated++;
      if (x.verifierError) s.verifierErrors++;
      if (x.moduleError?.startsWith('timeout')) s.moduleTimeouts++;
      else if (x.moduleError) s.moduleErrors++;
      s.moduleSum += x.module ?? 0;
      for (const [name, v] of Object.entries(x.parts)) {
        const e = s.partSum.get(name) ?? { sum: 0, count: 0 };
        e.sum += v;
        e.count++;
        s.partSum.set(name, e);
      }
      // the process check of correct responses (built-in task only: its prompts carry their true steps)
      const p = prompts[idx[gen.sequences[k]!.promptIndex]!]!;
      if (x.verifier > 0 && p.steps && io.stepsCorrect) {
        s.processChecked++;
        if (io.stepsCorrect(x.text, p.steps)) s.processOk++;
      }
    }
    for (let g = 0; g < idx.length; g++) {
      for (let j = 0; j < n; j++) s.sampledCorrect += rv[g * n + j]! > 0 ? 1 : 0;
      s.sampled += n;
      s.groupsSampled++;
      if (!groupHasSpread(rTask, g * n, n)) s.noSpread++;
      if (groups.length >= P) continue;
      // DAPO's filter: groups whose verifier outcomes are all equal (accuracy 0 or 1) are dropped
      if (dynamic && !groupHasSpread(rv, g * n, n)) continue;
      const src = prompts[idx[g]!]!;
      groups.push(gen.sequences.slice(g * n, (g + 1) * n).map((q, j) => ({ prompt: src.tokens, response: q.tokens, rv: rTask[g * n + j]!, group: groups.length, scored: scored[g * n + j]!, source: src })));
    }
  }
  return s;
}
