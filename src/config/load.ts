// Loading a training config: YAML file -> `--set block.key=value` overrides -> zod validation -> preset resolution.
// Every failure is a ConfigError naming the file and the dotted path of the bad key.
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import { ConfigError } from '../errors.js';
import { algorithmIssues, resolveAlgorithm, type AlgorithmSettings } from './presets.js';
import { trainConfigSchema, type ParsedTrainConfig } from './schema.js';

export { ConfigError };

/** A fully resolved training config: the parsed blocks plus the algorithm with every preset field filled. */
export type TrainConfig = Omit<ParsedTrainConfig, 'algorithm'> & { algorithm: AlgorithmSettings };

/** The `clipo` block of a training config. */
export type ClipoSettings = TrainConfig['clipo'];

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Parses, validates and resolves a config object; `source` names it in error messages. */
export function parseTrainConfig(raw: unknown, source = 'config'): TrainConfig {
  const r = trainConfigSchema.safeParse(raw ?? {});
  if (!r.success) throw new ConfigError(`${source}: ${formatIssues(r.error.issues)}`);
  const algorithm = resolveAlgorithm(r.data.algorithm);
  const explicit = new Set(Object.entries(r.data.algorithm).filter(([, v]) => v !== undefined).map(([k]) => k));
  const issues = algorithmIssues(algorithm, explicit);
  if (issues.length) throw new ConfigError(`${source}: ${issues.map(([k, m]) => `${k}: ${m}`).join('; ')}`);
  return { ...r.data, algorithm };
}

/** Reads a YAML config file, applies `--set` overrides (in order) and validates. */
export function loadTrainConfig(file: string, sets: string[] = []): TrainConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError(`config ${file}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (e) {
    throw new ConfigError(`config ${file}: YAML syntax error: ${(e as Error).message.split('\n')[0]}`);
  }
  if (raw === null || raw === undefined) raw = {};
  if (!isObj(raw)) throw new ConfigError(`config ${file}: expected a mapping of blocks (model, data, rollout, ...) at the top level`);
  for (const s of sets) applySet(raw, s);
  return parseTrainConfig(raw, `config ${file}`);
}

/** Applies one `block.key=value` override in place; the value is typed by the schema at that path. */
export function applySet(target: Obj, assignment: string): void {
  const eq = assignment.indexOf('=');
  if (eq <= 0) throw new ConfigError(`--set '${assignment}': expected block.key=value`);
  const key = assignment.slice(0, eq).trim();
  const rawValue = assignment.slice(eq + 1);
  const parts = key.split('.');
  if (parts.some((p) => p === '')) throw new ConfigError(`--set '${assignment}': bad key '${key}'`);
  const leaf = schemaAt(parts, assignment);
  let obj = target;
  for (const p of parts.slice(0, -1)) {
    if (obj[p] === undefined || obj[p] === null) obj[p] = {};
    if (!isObj(obj[p])) throw new ConfigError(`--set '${assignment}': '${p}' is not a block in the config`);
    obj = obj[p] as Obj;
  }
  obj[parts[parts.length - 1]!] = typedValue(leaf, rawValue);
}

// --- schema introspection (zod 4 internals: _zod.def) ---

type AnySchema = z.ZodType;
function def(s: AnySchema): { type: string; innerType?: AnySchema; out?: AnySchema; options?: AnySchema[]; shape?: Record<string, AnySchema>; values?: unknown[] } {
  return (s as unknown as { _zod: { def: never } })._zod.def;
}
function unwrap(s: AnySchema): AnySchema {
  for (;;) {
    const d = def(s);
    if (['default', 'optional', 'nullable', 'prefault', 'readonly', 'catch'].includes(d.type) && d.innerType) s = d.innerType;
    else if (d.type === 'pipe' && d.out) s = d.out;
    else return s;
  }
}

function schemaAt(parts: string[], assignment: string): AnySchema {
  let s: AnySchema = trainConfigSchema;
  const walked: string[] = [];
  for (const p of parts) {
    s = unwrap(s);
    const d = def(s);
    if (d.type !== 'object' || !d.shape) throw new ConfigError(`--set '${assignment}': '${walked.join('.')}' is a value, not a block`);
    // own keys only: '__proto__', 'constructor', ... are not config keys (and must never reach the object walk)
    const next = Object.hasOwn(d.shape, p) ? d.shape[p] : undefined;
    if (!next) {
      const where = walked.length ? walked.join('.') : 'the top level';
      throw new ConfigError(`--set '${assignment}': unknown key '${[...walked, p].join('.')}' (keys of ${where}: ${Object.keys(d.shape).join(', ')})`);
    }
    walked.push(p);
    s = next;
  }
  return s;
}

/** Which JSON kinds a schema accepts, looking through wrappers and unions. */
function kinds(s: AnySchema, out = new Set<string>()): Set<string> {
  const d = def(s);
  if (['default', 'optional', 'prefault', 'readonly', 'catch'].includes(d.type) && d.innerType) return kinds(d.innerType, out);
  if (d.type === 'nullable' && d.innerType) {
    out.add('null');
    return kinds(d.innerType, out);
  }
  if (d.type === 'pipe' && d.out) return kinds(d.out, out);
  if (d.type === 'union' && d.options) {
    for (const o of d.options) kinds(o, out);
    return out;
  }
  if (d.type === 'enum') out.add('string');
  else if (d.type === 'literal') for (const v of d.values ?? []) out.add(v === null ? 'null' : typeof v);
  else out.add(d.type);
  return out;
}

function typedValue(leaf: AnySchema, raw: string): unknown {
  const k = kinds(leaf);
  const onlyString = k.has('string') && !k.has('number') && !k.has('boolean') && !k.has('array') && !k.has('object');
  if (onlyString) return k.has('null') && raw.trim() === 'null' ? null : raw;
  let v: unknown;
  try {
    v = parseYaml(raw);
  } catch {
    v = raw;
  }
  // a union like `int | 'epoch'` gets the string when YAML did not make a number of it
  return v === undefined ? raw : v;
}

// --- messages ---

interface Issue { code: string; path: PropertyKey[]; message: string; keys?: string[]; input?: unknown; expected?: string }
function formatIssues(issues: readonly Issue[]): string {
  const lines = issues.slice(0, 5).map((i) => {
    const at = i.path.map(String).join('.');
    if (i.code === 'unrecognized_keys' && i.keys) {
      return i.keys.map((k) => `${at ? at + '.' : ''}${k}: unknown key`).join('; ');
    }
    let msg = i.message;
    if (i.code === 'invalid_type' && /received undefined/.test(i.message)) msg = 'required';
    return `${at || '(top level)'}: ${msg}`;
  });
  if (issues.length > 5) lines.push(`(and ${issues.length - 5} more)`);
  return lines.join('; ');
}
