#!/usr/bin/env node
// Does RL raise training reward on the built-in task? Runs recipes/nano-<preset>.yaml for each name (grpo, dapo-clipo, ...; default:
// grpo dapo gspo gmpo) as they are: they name the demo's supervised warm-up model (builtin:demo-warmup, trained once,
// ~2-4 minutes on 2 cores, then cached like `clipo demo` caches it) and the built-in task data, and prints the training accuracy and reward of steps 1-5 against the last 5 steps.
//
//   npm run build && node scripts/nano-rl-check.mjs [names...] [--cache DIR] [--set block.key=value ...]
//
// Exit status 1 when a preset's last-5 accuracy is not above its first-5 accuracy. CLIPO_DIST_DIR picks another
// compiled tree (as for bin/clipo). Each run's metrics.jsonl stays in a temporary folder, printed at the end.
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dist = path.resolve(root, process.env.CLIPO_DIST_DIR ?? 'dist');
const load = (p) => import(pathToFileURL(path.join(dist, 'src', p)).href);
const { resolveCacheDir } = await load('demo/builtin.js');
const { loadTrainConfig } = await load('config/load.js');
const { runTraining } = await load('rl/run.js');

const args = process.argv.slice(2);
const presets = [];
const sets = [];
let cache = resolveCacheDir();
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--cache') cache = path.resolve(args[++i]);
  else if (args[i] === '--set') sets.push(args[++i]);
  else presets.push(args[i]);
}
if (!presets.length) presets.push('grpo', 'dapo', 'gspo', 'gmpo');

// the recipes' builtin: names resolve in the same cache as `clipo demo` uses, so a demo's cache is reused and vice versa
const builtin = {
  log: (line) => process.stderr.write(line + '\n'),
  warmup: {
    start: (total) => process.stderr.write(`training the warm-up model (cache ${cache}): up to ${total} steps ...\n`),
    update: (step, f) => { if (f.accuracy !== null) process.stderr.write(`warm-up step ${step}: loss ${f.loss.toFixed(3)} accuracy ${f.accuracy}\n`); },
    stop: () => {},
  },
};

const out = mkdtempSync(path.join(os.tmpdir(), 'clipo-nano-check-'));
const mean = (a) => a.reduce((x, y) => x + y, 0) / a.length;
const rows = [];
let failed = false;
for (const preset of presets) {
  const config = loadTrainConfig(path.join(root, 'recipes', `nano-${preset}.yaml`), [
    `output.dir=${path.join(out, preset)}`,
    'output.save_every=0',
    ...sets,
  ]);
  const steps = [];
  const t0 = performance.now();
  await runTraining(config, {
    cacheDir: cache,
    builtin,
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
