// Dataset loaders: verl-style parquet (the paper's benchmark files) and jsonl/json, both to the same DataRow.
//
// A record may have either shape:
//   verl:  { data_source, prompt: [{role, content}], reward_model: {ground_truth}, extra_info: {index} }
//   flat:  { prompt | question | problem, answer | ground_truth, choices?, id?, index?, source? | data_source? }
// A flat record's bare question becomes one user message with the paper's instruction (see prompt.ts); a prompt that
// already carries the instruction is left as it is. A row that fits neither shape is an Error naming the file, the
// row (1-based) and the field, unless `skipBad` is set, in which case it is counted in `skipped`.
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { asyncBufferFromFile, parquetReadObjects } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import { buildMessages, type ChatMessage, type PromptOptions } from './prompt.js';

export interface DataRow {
  /** `<dataset name>/<index>`, stable across runs (the dataset name is the file name without extension) */
  id: string;
  /** the row's own index (extra_info.index / index / id when numeric), else its 0-based position in the file */
  index: number;
  messages: ChatMessage[];
  groundTruth: string;
  /** data_source / source field, else the dataset name */
  source: string;
  /** extra_info.solution, when the row carries a worked solution (the built-in task's rows do) */
  solution?: string;
}

export interface LoadOptions extends PromptOptions {
  /** keep at most this many rows (the first ones, after skipping bad rows) */
  limit?: number;
  /** count rows that do not fit instead of throwing */
  skipBad?: boolean;
}

export interface LoadedDataset {
  rows: DataRow[];
  file: string;
  /** rows returned */
  used: number;
  /** bad rows skipped (only with skipBad) */
  skipped: number;
  /** the first few skip reasons, for a run's log */
  skipReasons: string[];
}

/** Thrown for a row that does not fit; carries the file, 1-based row number and field. */
export class DataRowError extends Error {
  constructor(readonly file: string, readonly row: number, readonly field: string, detail: string) {
    super(`${file}: row ${row}: field '${field}': ${detail}`);
    this.name = 'DataRowError';
  }
}

export async function loadDataset(file: string, opts: LoadOptions = {}): Promise<LoadedDataset> {
  if (opts.limit !== undefined && !(Number.isInteger(opts.limit) && opts.limit >= 0)) {
    throw new Error(`loadDataset: limit must be a non-negative integer, got ${opts.limit}`);
  }
  const st = await stat(file).catch(() => null);
  if (!st || !st.isFile()) throw new Error(`${file}: no such data file`);
  const name = datasetName(file);
  const ext = path.extname(file).toLowerCase();
  const records = ext === '.parquet' ? await readParquet(file) : ext === '.jsonl' || ext === '.ndjson' ? await readJsonl(file) : ext === '.json' ? await readJsonArray(file) : null;
  if (!records) throw new Error(`${file}: unknown data format '${ext}' (expected .parquet, .jsonl or .json)`);

  const rows: DataRow[] = [];
  const seen = new Set<string>();
  let skipped = 0;
  const skipReasons: string[] = [];
  for (let i = 0; i < records.length; i++) {
    if (opts.limit !== undefined && rows.length >= opts.limit) break;
    const { row: rowNumber, value } = records[i];
    try {
      const row = toDataRow(value, file, rowNumber, i, name, opts);
      if (seen.has(row.id)) throw new DataRowError(file, rowNumber, 'index', `duplicate id '${row.id}'`);
      seen.add(row.id);
      rows.push(row);
    } catch (e) {
      if (!opts.skipBad || !(e instanceof DataRowError)) throw e;
      skipped++;
      if (skipReasons.length < 5) skipReasons.push(e.message);
    }
  }
  return { rows, file, used: rows.length, skipped, skipReasons };
}

/** `test/gsm8k.parquet` -> `gsm8k` */
export function datasetName(file: string): string {
  return path.basename(file).replace(/\.(parquet|jsonl|ndjson|json)$/i, '');
}

interface RawRecord {
  /** 1-based row (jsonl: line number) */
  row: number;
  value: unknown;
}

async function readParquet(file: string): Promise<RawRecord[]> {
  let objs: Record<string, unknown>[];
  try {
    objs = (await parquetReadObjects({ file: await asyncBufferFromFile(file), compressors })) as Record<string, unknown>[];
  } catch (e) {
    throw new Error(`${file}: not a readable parquet file (${(e as Error).message})`);
  }
  return objs.map((value, i) => ({ row: i + 1, value }));
}

async function readJsonl(file: string): Promise<RawRecord[]> {
  const text = await readFile(file, 'utf8');
  const out: RawRecord[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (!line) continue;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (e) {
      // an unparseable line is a bad row like any other (skippable), reported with its line number
      value = new BadJson((e as Error).message);
    }
    out.push({ row: i + 1, value });
  }
  return out;
}

async function readJsonArray(file: string): Promise<RawRecord[]> {
  let value: unknown;
  try {
    value = JSON.parse(await readFile(file, 'utf8'));
  } catch (e) {
    throw new Error(`${file}: not valid JSON (${(e as Error).message})`);
  }
  if (!Array.isArray(value)) throw new Error(`${file}: expected a JSON array of records`);
  return value.map((v, i) => ({ row: i + 1, value: v }));
}

class BadJson {
  constructor(readonly message: string) {}
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** One record -> DataRow, or a DataRowError naming the field. */
function toDataRow(value: unknown, file: string, rowNumber: number, position: number, name: string, opts: PromptOptions): DataRow {
  const fail = (field: string, detail: string) => new DataRowError(file, rowNumber, field, detail);
  if (value instanceof BadJson) throw fail('(line)', `not valid JSON (${value.message})`);
  if (!isObj(value)) throw fail('(row)', `expected an object, got ${describe(value)}`);

  // ground truth: reward_model.ground_truth (verl), else answer / ground_truth
  let groundTruth: string;
  if (value.reward_model !== undefined && value.reward_model !== null) {
    if (!isObj(value.reward_model)) throw fail('reward_model', `expected an object with ground_truth, got ${describe(value.reward_model)}`);
    groundTruth = scalarText(value.reward_model.ground_truth, () => fail('reward_model.ground_truth', `expected a string or number, got ${describe(value.reward_model && (value.reward_model as Record<string, unknown>).ground_truth)}`));
  } else {
    const key = value.answer !== undefined ? 'answer' : value.ground_truth !== undefined ? 'ground_truth' : null;
    if (!key) throw fail('answer', 'missing (expected reward_model.ground_truth, answer or ground_truth)');
    groundTruth = scalarText(value[key], () => fail(key, `expected a string or number, got ${describe(value[key])}`));
    // GSM8K's original jsonl: the worked solution, then "#### 72"
    if (key === 'answer') {
      const m = /\n####\s*(.+?)\s*$/.exec(groundTruth);
      if (m) groundTruth = m[1].replace(/,/g, '');
    }
  }
  if (groundTruth.trim() === '') throw fail(value.reward_model ? 'reward_model.ground_truth' : 'answer', 'empty');

  // prompt: prompt / question / problem, a string or a list of {role, content}
  const pkey = value.prompt !== undefined ? 'prompt' : value.question !== undefined ? 'question' : value.problem !== undefined ? 'problem' : null;
  if (!pkey) throw fail('prompt', 'missing (expected prompt, question or problem)');
  const p = value[pkey];
  let prompt: string | ChatMessage[];
  if (typeof p === 'string') {
    if (p.trim() === '') throw fail(pkey, 'empty');
    prompt = p;
  } else if (Array.isArray(p)) {
    if (p.length === 0) throw fail(pkey, 'empty message list');
    prompt = p.map((m, j) => {
      if (!isObj(m)) throw fail(`${pkey}[${j}]`, `expected {role, content}, got ${describe(m)}`);
      if (typeof m.role !== 'string' || !['system', 'user', 'assistant'].includes(m.role)) {
        throw fail(`${pkey}[${j}].role`, `expected 'system', 'user' or 'assistant', got ${describe(m.role)}`);
      }
      if (typeof m.content !== 'string') throw fail(`${pkey}[${j}].content`, `expected a string, got ${describe(m.content)}`);
      return { role: m.role as ChatMessage['role'], content: m.content };
    });
    if (!prompt.some((m) => m.role === 'user')) throw fail(pkey, 'no user message');
  } else {
    throw fail(pkey, `expected a string or a list of {role, content}, got ${describe(p)}`);
  }

  // multiple-choice options for a bare question: a list (lettered A, B, ...) or an object {A: ..., B: ...}
  let choices: string[] | undefined;
  if (value.choices !== undefined && value.choices !== null) {
    const c = value.choices;
    if (Array.isArray(c) && c.every((x) => typeof x === 'string' || typeof x === 'number')) choices = c.map(String);
    else if (isObj(c) && Object.values(c).every((x) => typeof x === 'string' || typeof x === 'number')) choices = Object.values(c).map(String);
    else throw fail('choices', `expected a list of strings, got ${describe(c)}`);
    if (choices.length < 2 || choices.length > 26) throw fail('choices', `expected 2 to 26 options, got ${choices.length}`);
  }

  // index: extra_info.index (BigInt in parquet), index, or a numeric id; else the position in the file
  let index = position;
  const rawIndex = isObj(value.extra_info) && value.extra_info.index !== undefined ? value.extra_info.index : value.index;
  if (rawIndex !== undefined && rawIndex !== null) {
    const n = typeof rawIndex === 'bigint' ? Number(rawIndex) : rawIndex;
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) {
      throw fail(isObj(value.extra_info) && value.extra_info.index !== undefined ? 'extra_info.index' : 'index', `expected a non-negative integer, got ${describe(rawIndex)}`);
    }
    index = n;
  }
  const idRaw = value.id;
  const id = typeof idRaw === 'string' && idRaw !== '' ? idRaw : typeof idRaw === 'number' || typeof idRaw === 'bigint' ? `${name}/${idRaw}` : `${name}/${index}`;
  const src = value.data_source ?? value.source;
  const source = typeof src === 'string' && src !== '' ? src : name;

  const sol = isObj(value.extra_info) ? value.extra_info.solution : undefined;
  return { id, index, messages: buildMessages(prompt, { ...opts, choices }), groundTruth, source, ...(typeof sol === 'string' ? { solution: sol } : {}) };
}

function scalarText(v: unknown, err: () => Error): string {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' && Number.isFinite(v)) return String(v);
  if (typeof v === 'bigint') return v.toString();
  if (typeof v === 'boolean') return v ? 'True' : 'False';
  throw err();
}

function describe(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'bigint') return `${v}`;
  if (typeof v === 'object') return 'an object';
  const s = JSON.stringify(v) ?? String(v);
  return `${typeof v} ${s.length > 40 ? s.slice(0, 40) + '...' : s}`;
}
