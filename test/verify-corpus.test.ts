// The project's own corpus of gold/prediction pairs with their expected verdicts (test/fixtures/verifier-corpus.jsonl,
// one {class, gold, prediction, expected} a line, written for this project): agreement per class is printed; a
// wrong answer accepted (a false accept) fails the test, and so does agreement below 100% on this corpus, whose
// cases are the formats the verifier promises (docs/data-and-verifier.md).
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { packageRoot } from '../src/native.js';
import { verify } from '../src/verify/index.js';

interface Case {
  class: string;
  gold: string;
  prediction: string;
  expected: boolean;
}

const file = path.join(packageRoot, 'test', 'fixtures', 'verifier-corpus.jsonl');
const cases: Case[] = readFileSync(file, 'utf8')
  .split('\n')
  .filter((l) => l.trim() !== '')
  .map((l) => JSON.parse(l) as Case);

describe('verifier corpus', () => {
  test('has at least 200 cases, both verdicts in every class', () => {
    expect(cases.length).toBeGreaterThanOrEqual(200);
    const classes = new Set(cases.map((c) => c.class));
    for (const k of classes) {
      const mine = cases.filter((c) => c.class === k);
      expect(mine.some((c) => c.expected)).toBe(true);
      expect(mine.some((c) => !c.expected)).toBe(true);
    }
  });

  test('agreement with the expected verdicts; no false accepts', () => {
    const byClass = new Map<string, { n: number; agree: number; falseAccepts: string[]; misses: string[] }>();
    for (const c of cases) {
      const r = verify(`Working through it step by step, the answer is \\boxed{${c.prediction}}.`, c.gold);
      const s = byClass.get(c.class) ?? { n: 0, agree: 0, falseAccepts: [], misses: [] };
      s.n++;
      if (r.correct === c.expected) s.agree++;
      else if (r.correct) s.falseAccepts.push(`${c.gold} <- ${c.prediction}`);
      else s.misses.push(`${c.gold} <- ${c.prediction} (${r.reason ?? 'mismatch'})`);
      byClass.set(c.class, s);
    }
    const total = [...byClass.values()].reduce((a, s) => ({ n: a.n + s.n, agree: a.agree + s.agree }), { n: 0, agree: 0 });
    const lines = [...byClass].map(([k, s]) => `${k.padEnd(20)} ${s.agree}/${s.n}${s.misses.length ? `  missed: ${s.misses.join('; ')}` : ''}`);
    console.log(`verifier corpus: ${total.agree}/${total.n} agree (${((100 * total.agree) / total.n).toFixed(1)}%)\n${lines.join('\n')}`);
    expect([...byClass.values()].flatMap((s) => s.falseAccepts)).toEqual([]);
    expect([...byClass.values()].flatMap((s) => s.misses)).toEqual([]);
  });
});
