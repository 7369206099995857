// Checkpoints of a training run, under <output.dir>/checkpoints/step-NNNNNNNN/:
//   policy/                 the policy as a Hugging Face directory (config.json, safetensors, tokenizer files)
//   policy-optim.safetensors  AdamW moments of the policy (m.<name>, v.<name>)
//   head.safetensors        the contrastive head's weights; head-optim.safetensors its AdamW moments
//   state.json              step, data position, seeds and counters (the RNG state: every draw is seeded by
//                           (seed, counter), see schedule.ts), optimizer step counts, metrics rows written
// A checkpoint is written into a hidden temporary directory and renamed into place, so a reader (or --resume)
// sees a complete checkpoint or none; older ones beyond keep_last are removed afterwards.
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import { readSafetensors, writeSafetensors } from '../model/safetensors.js';
import type { Tensor, TensorMap } from '../model/types.js';
import { ensureDir, writeJsonAtomic } from '../util/atomic.js';
import type { StreamPosition } from './schedule.js';

export const CHECKPOINT_FORMAT = 1;

export interface CheckpointState {
  format: number;
  /** steps completed */
  step: number;
  stream: StreamPosition;
  seed: number;
  policyOptimizerStep: number;
  head: { kind: 'linear' | 'mlp'; hiddenSize: number; outSize: number; step: number } | null;
  /** lines of metrics.jsonl that belong to steps ≤ step */
  metricsRows: number;
  /** the resolved config the run started with (for the resume check) */
  config: unknown;
  createdAt: string;
}

export interface CheckpointPayload {
  state: CheckpointState;
  /** writes the policy HF directory into the given (new, empty) folder */
  savePolicy: (dir: string) => void;
  policyOptimizer: { m: TensorMap; v: TensorMap };
  head: { weights: TensorMap; optimizer: TensorMap } | null;
}

const stepDirName = (step: number) => `step-${String(step).padStart(8, '0')}`;

export function checkpointsDir(outputDir: string): string {
  return path.join(outputDir, 'checkpoints');
}

const entries = (m: TensorMap, prefix = ''): Array<[string, Tensor]> => [...m].map(([k, t]) => [prefix + k, t]);

export function saveCheckpoint(outputDir: string, p: CheckpointPayload, keepLast: number): string {
  const root = checkpointsDir(outputDir);
  ensureDir(root, 'checkpoint folder');
  const final = path.join(root, stepDirName(p.state.step));
  const tmp = path.join(root, `.tmp-${stepDirName(p.state.step)}-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp);
  p.savePolicy(path.join(tmp, 'policy'));
  writeSafetensors(path.join(tmp, 'policy-optim.safetensors'), [...entries(p.policyOptimizer.m, 'm.'), ...entries(p.policyOptimizer.v, 'v.')]);
  if (p.head) {
    writeSafetensors(path.join(tmp, 'head.safetensors'), entries(p.head.weights));
    writeSafetensors(path.join(tmp, 'head-optim.safetensors'), entries(p.head.optimizer));
  }
  // state.json last: its presence marks a complete checkpoint even if the rename below were ever bypassed
  writeJsonAtomic(path.join(tmp, 'state.json'), p.state);
  if (existsSync(final)) rmSync(final, { recursive: true, force: true });
  renameSync(tmp, final);
  pruneCheckpoints(root, keepLast);
  return final;
}

export function listCheckpoints(outputDir: string): Array<{ step: number; dir: string }> {
  const root = checkpointsDir(outputDir);
  if (!existsSync(root)) return [];
  return readdirSync(root)
    .filter((n) => /^step-\d+$/.test(n) && existsSync(path.join(root, n, 'state.json')))
    .map((n) => ({ step: Number(n.slice(5)), dir: path.join(root, n) }))
    .sort((a, b) => a.step - b.step);
}

function pruneCheckpoints(root: string, keepLast: number): void {
  const all = listCheckpoints(path.dirname(root));
  for (const c of all.slice(0, Math.max(0, all.length - keepLast))) rmSync(c.dir, { recursive: true, force: true });
  for (const n of readdirSync(root)) if (n.startsWith('.tmp-') && !n.endsWith(`-${process.pid}`)) rmSync(path.join(root, n), { recursive: true, force: true });
}

export interface LoadedCheckpoint {
  dir: string;
  policyDir: string;
  state: CheckpointState;
  policyOptimizer: { step: number; m: TensorMap; v: TensorMap };
  head: { weights: TensorMap; optimizer: TensorMap } | null;
}

export function loadCheckpoint(dir: string): LoadedCheckpoint {
  const statePath = path.join(dir, 'state.json');
  let state: CheckpointState;
  try {
    state = JSON.parse(readFileSync(statePath, 'utf8')) as CheckpointState;
  } catch (e) {
    throw new Error(`checkpoint ${dir}: cannot read state.json (${(e as Error).message})`);
  }
  if (state.format !== CHECKPOINT_FORMAT) throw new Error(`checkpoint ${dir}: format ${state.format}, this clipo reads format ${CHECKPOINT_FORMAT}`);
  const opt = readSafetensors(path.join(dir, 'policy-optim.safetensors')).tensors;
  const m: TensorMap = new Map();
  const v: TensorMap = new Map();
  for (const [k, t] of opt) {
    if (k.startsWith('m.')) m.set(k.slice(2), t);
    else if (k.startsWith('v.')) v.set(k.slice(2), t);
  }
  const head = state.head
    ? { weights: readSafetensors(path.join(dir, 'head.safetensors')).tensors, optimizer: readSafetensors(path.join(dir, 'head-optim.safetensors')).tensors }
    : null;
  return { dir, policyDir: path.join(dir, 'policy'), state, policyOptimizer: { step: state.policyOptimizerStep, m, v }, head };
}
