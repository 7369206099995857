// Loaders (parquet and jsonl), prompt building, the suites and their averages against the paper's rows.
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadDataset, DataRowError } from '../src/data/load.js';
import { buildMessages, buildPrompt, choiceInstruction, MATH_INSTRUCTION } from '../src/data/prompt.js';
import { defaultDataRoot, suites, suiteSummary } from '../src/data/suites.js';

const root = defaultDataRoot();
const have = existsSync(path.join(root, 'test'));
if (!have) console.warn(`data: real-data tests skipped, the benchmark data folder is absent (${root}; set CLIPO_DATA_ROOT)`);
const describeData = have ? describe : describe.skip;

// the data README's table
const ROWS: Record<string, number> = {
  'train/gsm8k.parquet': 7473,
  'train/math75.parquet': 7500,
  'test/gsm8k.parquet': 1319,
  'test/gsm_symbolic.parquet': 5000,
  'test/gsm_p1.parquet': 5000,
  'test/gsm_p2.parquet': 2500,
  'test/commonsense_qa.parquet': 1221,
  'test/truthfulqa.parquet': 1634,
  'test/theoremqa.parquet': 1494,
  'test/mmlu2k.parquet': 2000,
  'test/math.parquet': 500,
  'test/math_perturb_simple.parquet': 279,
  'test/math_perturb_hard.parquet': 279,
  'test/amc.parquet': 83,
  'test/aime.parquet': 30,
  'test/aime2025.parquet': 30,
};

describeData('the benchmark parquet files', () => {
  test.each(Object.entries(ROWS))('%s has %d rows, all well-formed, the instruction not appended twice', async (file, n) => {
    const d = await loadDataset(path.join(root, file));
    expect(d.used).toBe(n);
    expect(d.skipped).toBe(0);
    expect(new Set(d.rows.map((r) => r.id)).size).toBe(n);
    const name = path.basename(file, '.parquet');
    // plain checks per row, one assertion at the end (thousands of expect() calls are slow)
    const bad = d.rows.filter(
      (r) => r.messages.length !== 1 || r.messages[0].role !== 'user' || r.messages[0].content.split('\\boxed{}').length !== 2 || r.groundTruth.length === 0 || !Number.isSafeInteger(r.index),
    );
    expect(bad.map((r) => r.id)).toEqual([]);
    expect(d.rows[0].id).toBe(`${name}/${d.rows[0].index}`);
    expect(d.rows[0].source).toMatch(/^conrl\//);
  });

  test('every suite file exists under the data root', () => {
    for (const s of Object.values(suites)) for (const b of s.benchmarks) expect(existsSync(path.join(root, b.file))).toBe(true);
  });

  test('limit keeps the first rows; extra_info.index (a BigInt in parquet) becomes a number', async () => {
    const d = await loadDataset(path.join(root, 'test', 'aime.parquet'), { limit: 5 });
    expect(d.used).toBe(5);
    expect(d.rows.map((r) => r.index)).toEqual([0, 1, 2, 3, 4]);
    expect(typeof d.rows[0].index).toBe('number');
    expect(d.rows[1].groundTruth).toBe('025');
  });
});

describe('jsonl', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'clipo-data-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const write = (name: string, lines: unknown[]) => {
    const f = path.join(dir, name);
    writeFileSync(f, lines.map((l) => (typeof l === 'string' ? l : JSON.stringify(l))).join('\n') + '\n');
    return f;
  };

  test('every accepted field spelling, with the instruction added to bare questions only', async () => {
    const f = write('mixed.jsonl', [
      { question: 'What is 2+3?', answer: 5 },
      { problem: 'Solve x+1=3.', ground_truth: '2' },
      { prompt: 'Already asks.\nLet\'s think step by step and output the final answer within \\boxed{}.', answer: '7' },
      { prompt: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'What is 6*7?' }], answer: '42' },
      { question: 'Which is a fruit?', choices: ['rock', 'apple', 'chair'], answer: 'B' },
      { question: 'Natalia sold 48 clips...', answer: 'She sold 48/2 = 24 in May.\n#### 1,072' },
      { data_source: 'mine', prompt: [{ role: 'user', content: 'Q' }], reward_model: { ground_truth: '3', style: 'rule' }, extra_info: { index: 17 } },
      '',
    ]);
    const d = await loadDataset(f);
    expect(d.used).toBe(7);
    const [a, b, c, m, mc, gsm, verl] = d.rows;
    expect(a.messages).toEqual([{ role: 'user', content: `What is 2+3?\n${MATH_INSTRUCTION}` }]);
    expect(a.groundTruth).toBe('5');
    expect(a.id).toBe('mixed/0');
    expect(a.source).toBe('mixed');
    expect(b.groundTruth).toBe('2');
    expect(c.messages[0].content.split('\\boxed{}').length).toBe(2);
    expect(m.messages[0]).toEqual({ role: 'system', content: 'Be brief.' });
    expect(m.messages[1].content).toBe(`What is 6*7?\n${MATH_INSTRUCTION}`);
    expect(mc.messages[0].content).toBe(`Which is a fruit?\n\nOptions:\nA. rock\nB. apple\nC. chair\n${choiceInstruction(3)}`);
    expect(gsm.groundTruth).toBe('1072');
    expect(verl).toMatchObject({ id: 'mixed/17', index: 17, source: 'mine', groundTruth: '3' });
    expect(verl.messages[0].content).toBe(`Q\n${MATH_INSTRUCTION}`);
  });

  test.each([
    [{ question: 'q' }, "row 2: field 'answer': missing"],
    [{ answer: '1' }, "row 2: field 'prompt': missing"],
    [{ question: 'q', answer: { x: 1 } }, "row 2: field 'answer': expected a string or number, got an object"],
    [{ question: 42, answer: '1' }, "row 2: field 'question': expected a string or a list"],
    [{ prompt: [{ role: 'user' }], answer: '1' }, "row 2: field 'prompt[0].content': expected a string"],
    [{ prompt: [{ role: 'robot', content: 'x' }], answer: '1' }, "row 2: field 'prompt[0].role'"],
    [{ question: 'q', answer: '' }, "row 2: field 'answer': empty"],
    [{ question: 'q', answer: '1', choices: 'abc' }, "row 2: field 'choices'"],
    [{ prompt: 'q', reward_model: { style: 'rule' } }, "row 2: field 'reward_model.ground_truth'"],
    [{ prompt: 'q', answer: '1', extra_info: { index: -3 } }, "row 2: field 'extra_info.index'"],
    ['{"question": "q", "answer": ', "row 2: field '(line)': not valid JSON"],
    [[1, 2], "row 2: field '(row)': expected an object"],
  ])('a bad row %j names the file, the row and the field', async (bad, message) => {
    const f = write('bad.jsonl', [{ question: 'fine', answer: '1' }, bad, { question: 'also fine', answer: '2' }]);
    await expect(loadDataset(f)).rejects.toThrow(DataRowError);
    await expect(loadDataset(f)).rejects.toThrow(`${f}: ${message}`);
    const skipped = await loadDataset(f, { skipBad: true });
    expect(skipped.used).toBe(2);
    expect(skipped.skipped).toBe(1);
    expect(skipped.skipReasons[0]).toContain(message);
  });

  test('duplicate ids, unknown formats, missing files and bad limits are errors', async () => {
    const dup = write('dup.jsonl', [{ question: 'a', answer: '1', index: 3 }, { question: 'b', answer: '2', index: 3 }]);
    await expect(loadDataset(dup)).rejects.toThrow(/row 2: field 'index': duplicate id 'dup\/3'/);
    const txt = path.join(dir, 'x.csv');
    writeFileSync(txt, 'a,b\n');
    await expect(loadDataset(txt)).rejects.toThrow(/unknown data format '.csv'/);
    await expect(loadDataset(path.join(dir, 'nope.jsonl'))).rejects.toThrow(/no such data file/);
    await expect(loadDataset(dup, { limit: -1 })).rejects.toThrow(/limit/);
    const notParquet = path.join(dir, 'fake.parquet');
    writeFileSync(notParquet, 'not parquet at all');
    await expect(loadDataset(notParquet)).rejects.toThrow(/not a readable parquet file/);
  });

  test('limit, and a JSON array file', async () => {
    const f = write('many.jsonl', Array.from({ length: 10 }, (_, i) => ({ question: `q${i}`, answer: String(i) })));
    expect((await loadDataset(f, { limit: 3 })).rows.map((r) => r.groundTruth)).toEqual(['0', '1', '2']);
    expect((await loadDataset(f, { limit: 0 })).used).toBe(0);
    const j = path.join(dir, 'arr.json');
    writeFileSync(j, JSON.stringify([{ question: 'q', answer: true }]));
    expect((await loadDataset(j)).rows[0].groundTruth).toBe('True');
  });
});

describe('prompt building (docs/algorithm.md §4)', () => {
  test('math and multiple-choice instructions, as in the benchmark files', () => {
    expect(buildPrompt('What is 1+1?')).toBe("What is 1+1?\nLet's think step by step and output the final answer within \\boxed{}.");
    expect(choiceInstruction(4)).toBe("Let's think step by step and output the final answer (eg, A, B, C, D) within \\boxed{}.");
    expect(choiceInstruction(5)).toBe("Let's think step by step and output the final answer (eg, A, B, C, D, E) within \\boxed{}.");
    expect(choiceInstruction(12)).toBe("Let's think step by step and output the final answer (eg, A, B, C, D, ...) within \\boxed{}.");
  });

  test('never appended twice; instruction: never leaves the prompt alone; a system message goes first', () => {
    const once = buildMessages('Q');
    expect(buildMessages(once)).toEqual(once);
    expect(buildMessages('Q', { instruction: 'never' })).toEqual([{ role: 'user', content: 'Q' }]);
    expect(buildMessages('Q', { system: 'S' })[0]).toEqual({ role: 'system', content: 'S' });
  });
});

describe('suites and averages (docs/algorithm.md §5 and §6)', () => {
  test('the suites: keys, paper names, files, sampling defaults', () => {
    expect(suites.track1.benchmarks.map((b) => b.key)).toEqual(['gsm8k', 'gsm_symbolic', 'gsm_p1', 'gsm_p2', 'commonsense_qa', 'truthfulqa', 'theoremqa', 'mmlu']);
    expect(suites.track1.benchmarks.map((b) => b.display)).toEqual(['GSM8K', 'SYM', 'P1', 'P2', 'cQA', 'tQA', 'thrmQA', 'MMLU']);
    expect(suites.track1.benchmarks.find((b) => b.key === 'mmlu')?.file).toBe('test/mmlu2k.parquet');
    expect(suites.track2.benchmarks.map((b) => b.key)).toEqual(['math', 'math_perturb_simple', 'math_perturb_hard', 'amc', 'aime', 'aime2025']);
    expect(suites.track2.benchmarks.map((b) => b.display)).toEqual(['MATH500', 'Math_S', 'Math_H', 'AMC23', 'AIME24', 'AIME25']);
    expect(suites.track1.defaults).toMatchObject({ samples: 1, temperature: 0 });
    expect(suites.track2.defaults).toMatchObject({ samples: 16, temperature: 0.6, topP: 0.95 });
  });

  // docs/algorithm.md §6: per-benchmark scores and the paper's averages (M, G or C, Avg)
  const PAPER: [string, 'track1' | 'track2', number[], [number, number, number]][] = [
    ['Track I, GRPO+CLIPO', 'track1', [88.02, 84.62, 74.6, 54.16, 76.9, 31.52, 27.58, 68.64], [75.35, 51.16, 63.26]],
    ['Track I, CLIPO-fixed', 'track1', [88.63, 85.12, 73.48, 51.68, 75.59, 30.11, 26.77, 68.49], [74.73, 50.24, 62.48]],
    ['Track II, GRPO+CLIPO', 'track2', [77.49, 67.21, 38.97, 49.17, 18.13, 10.63], [61.22, 25.97, 43.6]],
    ['Track II, CLIPO-fixed', 'track2', [76.76, 64.83, 38.99, 49.77, 17.92, 7.5], [60.19, 25.06, 42.63]],
    ['R1-Distill-7B, GRPO', 'track2', [89.7, 83.98, 64.48, 72.59, 36.88, 26.67], [79.39, 45.38, 62.38]],
    ['R1-Distill-7B, GRPO+CLIPO', 'track2', [90.08, 83.94, 63.83, 73.8, 39.38, 26.46], [79.28, 46.54, 62.91]],
    ['Llama-3.1-8B, GRPO', 'track2', [52.04, 40.1, 12.39, 23.64, 10.63, 0.0], [34.84, 11.42, 23.13]],
    ['Llama-3.1-8B, GRPO+CLIPO', 'track2', [54.14, 42.87, 14.28, 25.38, 9.79, 0.21], [37.1, 11.79, 24.44]],
  ];
  // The paper averaged its unrounded scores and printed both rounded to 2 decimals, so averaging the printed
  // scores reproduces the printed average after half-up rounding in 20 of 24 cases; the other 4 sit exactly on
  // a rounding boundary or within it (e.g. C-Avg of Track II GRPO+CLIPO: (49.17+18.13+10.63)/3 = 25.9767 -> 25.98,
  // printed 25.97). For those we check what can be checked: some unrounded scores that round to the printed
  // ones give the printed average (the printed average lies within the range reachable by moving each score by
  // at most 0.005).
  const NOT_EXACT = new Set(['Track II, GRPO+CLIPO C-Avg', 'R1-Distill-7B, GRPO+CLIPO C-Avg', 'R1-Distill-7B, GRPO+CLIPO Avg', 'Llama-3.1-8B, GRPO+CLIPO Avg']);
  const round2 = (x: number) => Math.round((x + Math.sign(x) * 1e-9) * 100) / 100;

  test.each(PAPER)('%s', (name, suite, values, paper) => {
    const keys = suites[suite].benchmarks.map((b) => b.key);
    const scores = Object.fromEntries(keys.map((k, i) => [k, values[i]]));
    const s = suiteSummary(suite, scores);
    const second = suite === 'track1' ? 'G-Avg' : 'C-Avg';
    for (const k of keys) expect(s[k]).toBe(scores[k]);
    const groups: [string, string[]][] = [
      ['M-Avg', suites[suite].benchmarks.filter((b) => b.group === 'M-Avg').map((b) => b.key)],
      [second, suites[suite].benchmarks.filter((b) => b.group === second).map((b) => b.key)],
      ['Avg', keys],
    ];
    groups.forEach(([label, ks], i) => {
      const got = s[label] as number;
      const mean = ks.reduce((a, k) => a + (scores[k] as number), 0) / ks.length;
      expect(got).toBeCloseTo(mean, 12);
      const printed = paper[i];
      if (!NOT_EXACT.has(`${name} ${label}`)) {
        expect(round2(got)).toBe(printed);
      } else {
        expect(round2(got)).not.toBe(printed);
        // reachable: the mean of scores each within +-0.005 of the printed ones spans [mean-0.005, mean+0.005]
        expect(Math.abs(printed - got)).toBeLessThanOrEqual(0.005 + 0.005 + 1e-9);
      }
    });
    // Avg is also the mean of the two group averages (the groups are the same size)
    expect(s.Avg as number).toBeCloseTo(((s['M-Avg'] as number) + (s[second] as number)) / 2, 12);
  });

  test('missing or unknown scores', () => {
    const s = suiteSummary('track2', { math: 0.5, amc: 0.2 });
    expect(s['M-Avg']).toBeNull();
    expect(s.Avg).toBeNull();
    expect(() => suiteSummary('track2', { gsm8k: 1 })).toThrow(/unknown benchmark key 'gsm8k'/);
  });
});
