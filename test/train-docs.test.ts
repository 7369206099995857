// docs/training.md's config table and the config schema agree: every key of every block has exactly one row, every
// row names a real key, and each documented default is the schema's (after the preset is resolved; `(preset)` rows
// are the keys the preset fills, `(required)` rows have no default).
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { parseTrainConfig } from '../src/config/load.js';
import { presets } from '../src/config/presets.js';
import { trainConfigSchema } from '../src/config/schema.js';
import { packageRoot } from '../src/native.js';

type Def = { type: string; innerType?: unknown; shape?: Record<string, unknown>; out?: unknown };
const def = (s: unknown) => (s as { _zod: { def: Def } })._zod.def;
function unwrap(s: unknown): unknown {
  for (;;) {
    const d = def(s);
    if (['default', 'optional', 'nullable', 'prefault'].includes(d.type) && d.innerType) s = d.innerType;
    else if (d.type === 'pipe' && d.out) s = d.out;
    else return s;
  }
}

describe('docs/training.md and the config schema', () => {
  const text = readFileSync(path.join(packageRoot, 'docs', 'training.md'), 'utf8');
  const start = text.indexOf('| block | key | default | meaning |');
  const lines = text.slice(start).split('\n').slice(2);
  const rows = lines.slice(0, lines.findIndex((l) => !l.startsWith('|'))).map((l) => l.split('|').slice(1, -1).map((c) => c.trim()));
  const documented = new Map(rows.map(([block, key, dflt]) => [`${block}.${key}`, dflt!]));

  test('every schema key has one row and every row is a schema key', () => {
    const keys: string[] = [];
    for (const [block, s] of Object.entries(def(trainConfigSchema).shape!)) for (const k of Object.keys(def(unwrap(s)).shape!)) keys.push(`${block}.${k}`);
    expect(rows.length).toBe(documented.size); // no key twice
    expect([...documented.keys()].sort()).toEqual(keys.sort());
  });

  test('every documented default is the schema\'s default', () => {
    const RUNTIME_DEFAULTS = ['(by model size)', '(min(4, cores))'];
    const resolved = parseTrainConfig({ model: { path: 'm' }, data: { train_files: ['f'] }, validation: {} }) as unknown as Record<string, Record<string, unknown>>;
    const raw = trainConfigSchema.parse({ model: { path: 'm' }, data: { train_files: ['f'] }, validation: {} }) as unknown as Record<string, Record<string, unknown>>;
    for (const [dotted, cell] of documented) {
      const [block, key] = dotted.split('.') as [string, string];
      if (cell === '(required)') {
        expect(() => parseTrainConfig({ model: { path: 'm' }, data: { train_files: ['f'] }, [block]: { ...(raw[block] ?? {}), [key]: undefined } })).toThrow(new RegExp(`${block}\\.${key}`));
      } else if (cell === '(preset)') {
        expect(raw[block]![key]).toBeUndefined();
        expect(key in presets.grpo).toBe(true);
      } else if (RUNTIME_DEFAULTS.includes(cell)) {
        // picked when the run starts (from the machine or the model), so the schema leaves it unset
        expect(raw[block]![key]).toBeUndefined();
      } else {
        const m = /^`(.*)`$/.exec(cell);
        if (!m) throw new Error(`${dotted}: default cell '${cell}' is not \`value\`, (required), (preset) or one of ${RUNTIME_DEFAULTS.join(', ')}`);
        expect({ key: dotted, value: resolved[block]![key] }).toEqual({ key: dotted, value: parseYaml(m[1]!) });
      }
    }
  });
});
