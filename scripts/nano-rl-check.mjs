#!/usr/bin/env node
// Does RL raise training reward on the built-in task? Runs recipes/nano-<preset>.yaml for each name (grpo, dapo-clipo, ...; default:
// grpo dapo gspo gmpo) from the demo's supervised warm-up model (trained once, ~2-4 minutes on 2 cores, then cached
// like `clipo demo` caches it), and prints the training accuracy and reward of steps 1-5 against the last 5 steps.
//
//   npm run build && node scripts/nano-rl-check.mjs [names...] [--cache DIR] [--set block.key=value ...]
//
// Exit status 1 when a preset's last-5 accuracy is not above its first-5 accuracy. CLIPO_DIST_DIR picks another
// compiled tree (as for bin/clipo). Each run's metrics.jsonl stays in a temporary folder, printed at the end.
import { createHash } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dist = path.resolve(root, process.env.CLIPO_DIST_DIR ?? 'dist');
const load = (p) => import(pathToFileURL(path.join(dist, 'src', p)).href);
const { DEFAULT_SETTINGS } = await load('demo/settings.js');
const { ensureWarmup, defaultCacheDir } = await load('demo/warmup.js');
const { ensureTaskData } = await load('task/records.js');
const { loadTrainConfig } = await load('config/load.js');
const { runTraining } = await load('rl/run.js');

const args = process.argv.slice(2);
const presets = [];
const sets = [];
let cache = process.env.CLIPO_CACHE_DIR ? path.resolve(process.env.CLIPO_CACHE_DIR) : defaultCacheDir();
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--cache') cache = path.resolve(args[++i]);
  else if (args[i] === '--set') sets.push(args[++i]);
  else presets.push(args[i]);
}
if (!presets.length) presets.push('grpo', 'dapo', 'gspo', 'gmpo');

const s = DEFAULT_SETTINGS;
// the same folders as `clipo demo` (src/demo/run.ts), so a demo's cache is reused and vice versa
const taskDir = path.join(cache, `task-${createHash('sha256').update(JSON.stringify(s.task)).digest('hex').slice(0, 12)}`);
ensureTaskData(taskDir, { ...s.task, format: 'parquet' });
process.stderr.write(`warm-up model (cache ${cache}) ...\n`);
const warm = ensureWarmup(s, cache);
process.stderr.write(`warm-up: ${warm.modelDir} (${warm.info.steps} steps, greedy validation accuracy ${warm.info.accuracy})\n`);

const out = mkdtempSync(path.join(os.tmpdir(), 'clipo-nano-check-'));
const mean = (a) => a.reduce((x, y) => x + y, 0) / a.length;
const rows = [];
let failed = false;
for (const preset of presets) {
  const config = loadTrainConfig(path.join(root, 'recipes', `nano-${preset}.yaml`), [
    `model.path=${warm.modelDir}`,
    `data.train_files=${path.join(taskDir, 'train', 'task.parquet')}`,
    `validation.files=${path.join(taskDir, 'test', 'task.parquet')}`,
    `output.dir=${path.join(out, preset)}`,
    'output.save_every=0',
    ...sets,
  ]);
  const steps = [];
  const t0 = performance.now();
  await runTraining(config, {
    onStep: (m) => {
      steps.push(m);
      process.stderr.write(`${preset} step ${m.step}: accuracy ${m.accuracy.toFixed(3)} reward ${m.reward_mean.toFixed(3)}\n`);
    },
  });
  const k = Math.min(5, Math.floor(steps.length / 2));
  const first = steps.slice(0, k), last = steps.slice(-k);
  const r = {
    preset,
    steps: steps.length,
    accFirst: mean(first.map((m) => m.accuracy)),
    accLast: mean(last.map((m) => m.accuracy)),
    rewardFirst: mean(first.map((m) => m.reward_mean)),
    rewardLast: mean(last.map((m) => m.reward_mean)),
    seconds: (performance.now() - t0) / 1000,
  };
  if (!(r.accLast > r.accFirst)) failed = true;
  rows.push(r);
}
const f = (x) => x.toFixed(3);
console.log('| preset | steps | accuracy, steps 1-5 | accuracy, last 5 | reward, steps 1-5 | reward, last 5 | seconds |');
console.log('| --- | --- | --- | --- | --- | --- | --- |');
for (const r of rows) console.log(`| ${r.preset} | ${r.steps} | ${f(r.accFirst)} | ${f(r.accLast)} | ${f(r.rewardFirst)} | ${f(r.rewardLast)} | ${r.seconds.toFixed(0)} |`);
console.log(`metrics: ${out}/<preset>/metrics.jsonl`);
process.exitCode = failed ? 1 : 0;
