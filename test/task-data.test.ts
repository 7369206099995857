// `clipo data make-task`: writes the six splits in the benchmark files' layout, readable by hyparquet (the reader
// the data loaders use), with the same problems as the generator; jsonl too; bad flags fail with a message.
import { parquetReadObjects } from 'hyparquet';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadDataset } from '../src/data/load.js';
import { reward } from '../src/verify/index.js';
import { TASK_SPLITS, generateTaskSplits, solutionText } from '../src/task/generator.js';
import { TASK_FILES, ensureTaskData, promptContent } from '../src/task/records.js';
import { runClipo as clipo } from './helpers/cli.js';


const tmp = mkdtempSync(path.join(os.tmpdir(), 'clipo-task-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const plain = (v: unknown): unknown => JSON.parse(JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? Number(x) : x)));

describe('clipo data make-task', () => {
  test('parquet files in the benchmark layout, read back by hyparquet, equal to the generator', async () => {
    const out = path.join(tmp, 'pq');
    const r = clipo('data', 'make-task', '--out', out, '--seed', '5', '--train', '60', '--test', '25');
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    const expected = generateTaskSplits({ seed: 5, train: 60, test: 25 });
    for (const split of TASK_SPLITS) {
      const buf = readFileSync(path.join(out, TASK_FILES[split]));
      const file = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
      const rows = plain(await parquetReadObjects({ file })) as any[];
      expect(rows.length).toBe(split === 'train' ? 60 : 25);
      rows.forEach((row, i) => {
        const p = expected[split][i]!;
        expect(Object.keys(row).sort()).toEqual(['ability', 'data_source', 'extra_info', 'prompt', 'reward_model']);
        expect(row.data_source).toBe(`clipo/task_${split}`);
        expect(row.prompt).toEqual([{ role: 'user', content: promptContent(p) }]);
        expect(row.prompt[0].content.endsWith("\nLet's think step by step and output the final answer within \\boxed{}.")).toBe(true);
        expect(row.ability).toBe('math');
        expect(row.reward_model).toEqual({ ground_truth: String(p.answer), style: 'rule' });
        expect(row.extra_info).toEqual({ index: i, split: split === 'train' ? 'train' : 'test', solution: solutionText(p), template: p.template, num_ops: p.numOps });
      });
    }
    const manifest = JSON.parse(readFileSync(path.join(out, 'task.json'), 'utf8'));
    expect(manifest.seed).toBe(5);
    expect(manifest.sizes.p2).toBe(25);
  });

  test('the project data loader reads every file and the verifier accepts each worked solution', async () => {
    const out = path.join(tmp, 'pq');
    const expected = generateTaskSplits({ seed: 5, train: 60, test: 25 });
    for (const split of TASK_SPLITS) {
      const ds = await loadDataset(path.join(out, TASK_FILES[split]));
      expect(ds.used).toBe(expected[split].length);
      ds.rows.forEach((row, i) => {
        const p = expected[split][i]!;
        expect(row.messages).toEqual([{ role: 'user', content: promptContent(p) }]);
        expect(row.groundTruth).toBe(String(p.answer));
        expect(reward(solutionText(p), row.groundTruth)).toBe(1);
        expect(reward(solutionText(p).replace(/\\boxed\{\d+\}/, `\\boxed{${p.answer + 1}}`), row.groundTruth)).toBe(0);
      });
    }
  });

  test('jsonl files carry the same rows', () => {
    const out = path.join(tmp, 'jl');
    const r = clipo('data', 'make-task', '--out', out, '--seed', '5', '--train', '10', '--test', '4', '--format', 'jsonl');
    expect(r.code).toBe(0);
    const rows = readFileSync(path.join(out, 'test', 'task_noop.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    const expected = generateTaskSplits({ seed: 5, train: 10, test: 4 }).noop;
    expect(rows.map((x) => x.prompt[0].content)).toEqual(expected.map(promptContent));
    expect(rows.map((x) => x.reward_model.ground_truth)).toEqual(expected.map((p) => String(p.answer)));
    expect(existsSync(path.join(out, 'train', 'task.jsonl'))).toBe(true);
  });

  test('ensureTaskData reuses matching files and regenerates when the options change', () => {
    const dir = path.join(tmp, 'cache');
    const first = ensureTaskData(dir, { seed: 1, train: 20, test: 5 });
    expect(first.reused).toBe(false);
    expect(first.manifest.files.p1).toBe(TASK_FILES.p1);
    const trainFile = path.join(dir, TASK_FILES.train);
    const mtime = statSync(trainFile).mtimeMs;
    const again = ensureTaskData(dir, { seed: 1, train: 20, test: 5 });
    expect(again.reused).toBe(true);
    expect(statSync(trainFile).mtimeMs).toBe(mtime);
    expect(ensureTaskData(dir, { seed: 2, train: 20, test: 5 }).reused).toBe(false);
    rmSync(path.join(dir, TASK_FILES.noop));
    expect(ensureTaskData(dir, { seed: 2, train: 20, test: 5 }).reused).toBe(false);
    expect(existsSync(path.join(dir, TASK_FILES.noop))).toBe(true);
  });

  test('bad flags fail with a clear message', () => {
    const a = clipo('data', 'make-task', '--out', path.join(tmp, 'x'), '--format', 'csv');
    expect(a.code).toBe(2);
    expect(a.err).toMatch(/--format: expected parquet or jsonl/);
    const b = clipo('data', 'make-task', '--out', path.join(tmp, 'x'), '--train', '-3');
    expect(b.code).toBe(2);
    expect(b.err).toMatch(/--train: must be at least 0/);
    const c = clipo('data', 'make-task');
    expect(c.code).not.toBe(0);
    expect(c.err).toMatch(/--out/);
  });
});
