// The training config: YAML + --set overrides, validated with messages that name the key; presets; the recipes.
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { applySet, loadTrainConfig, parseTrainConfig } from '../src/config/load.js';
import { presets } from '../src/config/presets.js';
import { presetNames } from '../src/config/schema.js';
import { surrogateLoss } from '../src/kernels/surrogate.js';
import { surrogateModes } from '../src/kernels/variants.js';
import { surrogateSettings } from '../src/rl/policy-loss.js';
import { packageRoot } from '../src/native.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'clipo-config-'));
function yamlFile(text: string): string {
  const f = path.join(dir, `c${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(f, text);
  return f;
}
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const minimal = 'model: {path: m}\ndata: {train_files: a.parquet}\n';

describe('training config', () => {
  test('defaults are the paper\'s (docs/algorithm.md §1-4)', () => {
    const c = loadTrainConfig(yamlFile(minimal));
    expect(c.data.train_files).toEqual(['a.parquet']);
    expect(c.rollout.n).toBe(16);
    expect(c.clipo).toMatchObject({ enabled: false, head: 'linear', out_size: 512, loss_type: 'infonce', level: 'group', distance: 'cosine', temperature: 0.05, lambda: 0.2, constant: 0, clamp: -0.5, masked_label: 0, skip_trivial: true, lr: 1e-3, weight_decay: 0.01, warmup_steps: 'epoch', fixed_head: false });
    expect(c.optim).toMatchObject({ lr: 1e-6, prompts_per_step: 512, ppo_mini_batch: 256, micro_batch: 32, epochs: 6 });
    expect(c.algorithm).toEqual(presets.grpo);
  });

  test('presets carry the spec settings and every field is overridable', () => {
    expect(presets.grpo).toMatchObject({ mode: 'token', clip_low: 0.2, clip_high: 0.2, dual_clip: 3, agg: 'token-mean', kl_coef: 0.001 });
    expect(presets.dapo).toMatchObject({ mode: 'token', clip_low: 0.2, clip_high: 0.28, kl_coef: 0, dynamic_sampling: true });
    expect(presets.gspo).toMatchObject({ mode: 'sequence', clip_low: 3e-4, clip_high: 4e-4, agg: 'seq-mean-token-mean' });
    expect(presets.gmpo).toMatchObject({ mode: 'geo_mean', clip_low: 0.4, clip_high: 0.4 });
    const c = loadTrainConfig(yamlFile(minimal + 'algorithm: {preset: dapo, clip_high: 0.3}\n'), ['algorithm.dynamic_sampling=false', 'algorithm.dual_clip=null', 'algorithm.adv_estimator=drgrpo']);
    expect(c.algorithm).toEqual({ ...presets.dapo, clip_high: 0.3, dynamic_sampling: false, dual_clip: null, adv_estimator: 'drgrpo' });
  });

  test('--set values are typed by the schema', () => {
    const c = loadTrainConfig(yamlFile(minimal), ['algorithm.preset=gmpo', 'clipo.enabled=true', 'optim.max_steps=2', 'output.dir=123', 'clipo.warmup_steps=0', 'clipo.masked_label=-1', 'data.train_files=[x.jsonl, y.jsonl]', 'model.path=/a=b']);
    expect(c.algorithm.preset).toBe('gmpo');
    expect(c.clipo.enabled).toBe(true);
    expect(c.optim.max_steps).toBe(2);
    expect(c.output.dir).toBe('123');
    expect(c.clipo.warmup_steps).toBe(0);
    expect(c.clipo.masked_label).toBe(-1);
    expect(c.data.train_files).toEqual(['x.jsonl', 'y.jsonl']);
    expect(c.model.path).toBe('/a=b');
  });

  test('errors name the file and the dotted path of the bad key', () => {
    const f = yamlFile(minimal + 'clipo: {lamda: 3, temperature: -1}\n');
    expect(() => loadTrainConfig(f)).toThrow(new RegExp(`config ${f.replace(/[.]/g, '\\.')}: .*clipo\\.temperature: .*>=0\\.0001.*clipo\\.lamda: unknown key`));
    expect(() => loadTrainConfig(yamlFile('data: {train_files: a}\n'))).toThrow(/model: required/);
    expect(() => loadTrainConfig(yamlFile(minimal), ['algorithm.preset=ppo'])).toThrow(/algorithm\.preset: .*"grpo"\|"dapo"\|"gspo"\|"gmpo"/);
    expect(() => loadTrainConfig(yamlFile(minimal), ['optim.lr=fast'])).toThrow(/optim\.lr: .*expected number/);
    expect(() => loadTrainConfig(yamlFile(minimal), ['clipo.lamda=1'])).toThrow(/unknown key 'clipo\.lamda' \(keys of clipo: enabled, .*lambda/);
    expect(() => loadTrainConfig(yamlFile(minimal), ['optim'])).toThrow(/--set 'optim': expected block\.key=value/);
    expect(() => loadTrainConfig(yamlFile(minimal), ['optim.lr.x=1'])).toThrow(/'optim\.lr' is a value, not a block/);
    expect(() => loadTrainConfig(yamlFile(minimal), ['optim.ppo_mini_batch=3', 'optim.prompts_per_step=8'])).toThrow(/optim\.ppo_mini_batch: must divide optim\.prompts_per_step \(8\), got 3/);
    expect(() => loadTrainConfig(yamlFile('model: [1\n'))).toThrow(/YAML syntax error/);
    expect(() => loadTrainConfig(path.join(dir, 'absent.yaml'))).toThrow(/cannot read \(ENOENT\)/);
    expect(() => loadTrainConfig(yamlFile('- 1\n- 2\n'))).toThrow(/expected a mapping of blocks/);
    expect(() => parseTrainConfig({ model: { path: 'm' }, data: { train_files: [] } })).toThrow(/data\.train_files: /);
  });

  test('a combination the surrogate kernel would not honour is refused when the config is read', () => {
    // mode sequence keeps the grpo preset's dual clip: refused, not silently dropped
    expect(() => loadTrainConfig(yamlFile(minimal), ['algorithm.mode=sequence'])).toThrow(/algorithm\.dual_clip: mode 'sequence' has no dual clip, but dual_clip is 3 \(from preset grpo\); set algorithm\.dual_clip: null/);
    expect(() => loadTrainConfig(yamlFile(minimal), ['algorithm.preset=gmpo', 'algorithm.dual_clip=2'])).toThrow(/algorithm\.dual_clip: mode 'geo_mean' has no dual clip, but dual_clip is 2;/);
    expect(loadTrainConfig(yamlFile(minimal), ['algorithm.mode=sequence', 'algorithm.dual_clip=null']).algorithm).toMatchObject({ mode: 'sequence', dual_clip: null });
    // ratio space: the lower bound 1 - clip_low must stay positive; log-ratio space allows more
    expect(() => loadTrainConfig(yamlFile(minimal), ['algorithm.clip_low=1'])).toThrow(/algorithm\.clip_low: must be below 1 in mode 'token': the ratio bound 1 − clip_low must stay positive, got 1/);
    expect(loadTrainConfig(yamlFile(minimal), ['algorithm.preset=gmpo', 'algorithm.clip_low=1']).algorithm.clip_low).toBe(1);
    expect(() => loadTrainConfig(yamlFile(minimal), ['algorithm.preset=gmpo', 'algorithm.clip_low=20'])).toThrow(/algorithm\.clip_low: must be below 20 in mode 'geo_mean'/);
    expect(() => loadTrainConfig(yamlFile(minimal), ['algorithm.clip_high=21'])).toThrow(/algorithm\.clip_high: must be at most 20/);
    // a preset's values are named as such when a mode override makes them invalid
    expect(() => loadTrainConfig(yamlFile(minimal), ['algorithm.preset=gmpo', 'algorithm.mode=token', 'algorithm.clip_low=1.5'])).toThrow(/clip_low: must be below 1 .*got 1\.5;?/);
  });

  test('every config the check accepts gives arguments the surrogate kernel accepts, and the rest are refused', () => {
    const B = 2, T = 3;
    const arrays = { logp: new Float32Array(B * T).fill(-1), oldLogp: new Float32Array(B * T).fill(-1.1), advantages: Float32Array.from([1, -1]), mask: new Uint8Array(B * T).fill(1), batch: B, length: T };
    let accepted = 0, refused = 0;
    for (const preset of presetNames)
      for (const mode of surrogateModes)
        for (const clipLow of [0, 0.2, 0.999, 1, 5, 19.9, 20])
          for (const dual of ['null', '3', undefined]) {
            const sets = [`algorithm.preset=${preset}`, `algorithm.mode=${mode}`, `algorithm.clip_low=${clipLow}`, ...(dual ? [`algorithm.dual_clip=${dual}`] : [])];
            let cfg;
            try {
              cfg = loadTrainConfig(yamlFile(minimal), sets);
            } catch (e) {
              refused++;
              expect((e as Error).message).toMatch(/algorithm\.(clip_low|dual_clip)/);
              // what the config refuses, the kernel refuses too
              const a = { ...presets[preset], mode, clip_low: clipLow, dual_clip: dual === undefined ? presets[preset].dual_clip : dual === 'null' ? null : Number(dual) };
              expect(() => surrogateLoss({ ...arrays, mode, clipLow: a.clip_low, clipHigh: a.clip_high, dualClip: a.dual_clip ?? undefined, agg: a.agg })).toThrow();
              continue;
            }
            accepted++;
            expect(() => surrogateLoss({ ...arrays, ...surrogateSettings(cfg.algorithm, false), backend: 'cpu' })).not.toThrow();
          }
    expect(accepted).toBeGreaterThan(20);
    expect(refused).toBeGreaterThan(20);
  });

  test('applySet creates missing blocks', () => {
    const o: Record<string, unknown> = {};
    applySet(o, 'clipo.enabled=true');
    expect(o).toEqual({ clipo: { enabled: true } });
  });

  test('every recipe parses', () => {
    const recipes = path.join(packageRoot, 'recipes');
    const files = readdirSync(recipes).filter((f) => f.endsWith('.yaml'));
    expect(files.length).toBeGreaterThanOrEqual(18);
    for (const f of files) {
      const c = loadTrainConfig(path.join(recipes, f));
      expect(c.clipo.enabled).toBe(f.includes('clipo'));
      for (const p of ['grpo', 'dapo', 'gspo', 'gmpo']) if (f.includes(`-${p}`)) expect(c.algorithm.preset).toBe(p);
    }
  });
});
