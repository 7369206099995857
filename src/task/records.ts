// The built-in task written in the layout of the paper's benchmark files (verl-style rows; see the data README):
// data_source, prompt [{role: 'user', content}], ability, reward_model {ground_truth, style}, extra_info
// {index, split, ...}. The worked solution rides in extra_info.solution for supervised warm-up.
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { writeFileAtomic, writeJsonAtomic } from '../util/atomic.js';
import { SYMBOLIC_RANGES, TASK_SPLITS, TRAIN_RANGES, type TaskProblem, type TaskSizes, type TaskSplit, generateTaskSplits, problemText, solutionText } from './generator.js';
import { INSTRUCTION } from './templates.js';

export interface TaskRecord {
  data_source: string;
  prompt: { role: 'user'; content: string }[];
  ability: 'math';
  reward_model: { ground_truth: string; style: 'rule' };
  extra_info: { index: number; split: string; solution: string; template: string; num_ops: number };
}

/** The benchmark files' naming: train/<name>.parquet and test/<name>.parquet. */
export const TASK_FILES: Record<TaskSplit, string> = {
  train: 'train/task.parquet',
  test: 'test/task.parquet',
  symbolic: 'test/task_symbolic.parquet',
  p1: 'test/task_p1.parquet',
  p2: 'test/task_p2.parquet',
  noop: 'test/task_noop.parquet',
};

/** The user message: the problem, a newline, then the paper's instruction. */
export function promptContent(p: TaskProblem): string {
  return `${problemText(p)}\n${INSTRUCTION}`;
}

export function toRecord(p: TaskProblem, index: number): TaskRecord {
  return {
    data_source: `clipo/task_${p.split}`,
    prompt: [{ role: 'user', content: promptContent(p) }],
    ability: 'math',
    reward_model: { ground_truth: String(p.answer), style: 'rule' },
    extra_info: { index, split: p.split === 'train' ? 'train' : 'test', solution: solutionText(p), template: p.template, num_ops: p.numOps },
  };
}

const str = (name: string) => ({ name, type: 'BYTE_ARRAY' as const, repetition_type: 'OPTIONAL' as const, converted_type: 'UTF8' as const, logical_type: { type: 'STRING' as const } });

// The benchmark files' schema (optional fields, prompt as a LIST of structs), with three extra extra_info fields.
const SCHEMA = [
  { name: 'schema', repetition_type: 'REQUIRED' as const, num_children: 5 },
  str('data_source'),
  { name: 'prompt', repetition_type: 'OPTIONAL' as const, num_children: 1, converted_type: 'LIST' as const, logical_type: { type: 'LIST' as const } },
  { name: 'list', repetition_type: 'REPEATED' as const, num_children: 1 },
  { name: 'element', repetition_type: 'OPTIONAL' as const, num_children: 2 },
  str('content'),
  str('role'),
  str('ability'),
  { name: 'reward_model', repetition_type: 'OPTIONAL' as const, num_children: 2 },
  str('ground_truth'),
  str('style'),
  { name: 'extra_info', repetition_type: 'OPTIONAL' as const, num_children: 5 },
  { name: 'index', type: 'INT64' as const, repetition_type: 'OPTIONAL' as const },
  str('split'),
  str('solution'),
  str('template'),
  { name: 'num_ops', type: 'INT32' as const, repetition_type: 'OPTIONAL' as const },
];

export function recordsToParquet(records: readonly TaskRecord[]): Uint8Array {
  if (records.length === 0) throw new Error('cannot write a parquet file with no rows');
  const col = <K extends keyof TaskRecord>(name: K) => ({ name, data: records.map((r) => r[name]) as unknown[] });
  const columnData = [
    col('data_source'),
    col('prompt'),
    col('ability'),
    col('reward_model'),
    { name: 'extra_info', data: records.map((r) => ({ ...r.extra_info, index: BigInt(r.extra_info.index) })) },
  ];
  // hyparquet-writer's types describe the schema with its own literal unions; ours is the same shape
  const buf = parquetWriteBuffer({ columnData, schema: SCHEMA } as unknown as Parameters<typeof parquetWriteBuffer>[0]);
  return new Uint8Array(buf);
}

export function recordsToJsonl(records: readonly TaskRecord[]): string {
  return records.map((r) => JSON.stringify(r)).join('\n') + (records.length ? '\n' : '');
}

export type TaskFormat = 'parquet' | 'jsonl';

/** Writes every split under `dir` (atomically, one file per split); returns the paths written. */
export function writeTaskSplits(dir: string, splits: Record<TaskSplit, TaskProblem[]>, format: TaskFormat): string[] {
  const written: string[] = [];
  for (const split of TASK_SPLITS) {
    const problems = splits[split];
    if (problems.length === 0) continue;
    const records = problems.map((p, i) => toRecord(p, i));
    const rel = format === 'parquet' ? TASK_FILES[split] : TASK_FILES[split].replace(/\.parquet$/, '.jsonl');
    const file = path.join(dir, rel);
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileAtomic(file, format === 'parquet' ? recordsToParquet(records) : recordsToJsonl(records));
    written.push(file);
  }
  return written;
}

/** Bump whenever the same options would generate different problems (templates, word lists, ranges, format). */
export const TASK_GENERATOR_VERSION = 1;

export interface MakeTaskOptions extends TaskSizes {
  format?: TaskFormat;
}

/** task.json, written next to the files: what produced them, so a cache can tell whether they still fit. */
export interface TaskManifest {
  generator: 'clipo built-in arithmetic task';
  version: number;
  seed: number;
  maxOps: number;
  maxValue: number;
  format: TaskFormat;
  sizes: Record<TaskSplit, number>;
  ranges: { train: typeof TRAIN_RANGES; symbolic: typeof SYMBOLIC_RANGES };
  /** split -> file relative to the folder (splits of size 0 have none) */
  files: Partial<Record<TaskSplit, string>>;
}

function settings(opts: MakeTaskOptions) {
  return { seed: opts.seed, train: opts.train, test: opts.test, maxOps: opts.maxOps ?? 4, maxValue: opts.maxValue ?? TRAIN_RANGES.maxValue, format: opts.format ?? 'parquet' };
}

/** Generates every split and writes the files and task.json under `dir`. */
export function makeTaskData(dir: string, opts: MakeTaskOptions): TaskManifest {
  const s = settings(opts);
  const splits = generateTaskSplits(s);
  const written = writeTaskSplits(dir, splits, s.format);
  const files: Partial<Record<TaskSplit, string>> = {};
  for (const split of TASK_SPLITS) {
    const f = written.find((w) => w.endsWith(s.format === 'parquet' ? TASK_FILES[split] : TASK_FILES[split].replace(/\.parquet$/, '.jsonl')));
    if (f) files[split] = path.relative(dir, f);
  }
  const manifest: TaskManifest = {
    generator: 'clipo built-in arithmetic task',
    version: TASK_GENERATOR_VERSION,
    seed: s.seed,
    maxOps: s.maxOps,
    maxValue: s.maxValue,
    format: s.format,
    sizes: Object.fromEntries(TASK_SPLITS.map((x) => [x, splits[x].length])) as Record<TaskSplit, number>,
    ranges: { train: { ...TRAIN_RANGES, maxValue: s.maxValue }, symbolic: { ...SYMBOLIC_RANGES, maxValue: s.maxValue } },
    files,
  };
  writeJsonAtomic(path.join(dir, 'task.json'), manifest);
  return manifest;
}

/** The task data under `dir`: reused when its task.json says the same generator version and options produced it
 *  and every file is there, else generated afresh. */
export function ensureTaskData(dir: string, opts: MakeTaskOptions): { manifest: TaskManifest; reused: boolean } {
  const s = settings(opts);
  const file = path.join(dir, 'task.json');
  if (existsSync(file)) {
    try {
      const m = JSON.parse(readFileSync(file, 'utf8')) as TaskManifest;
      const same =
        m.version === TASK_GENERATOR_VERSION && m.seed === s.seed && m.maxOps === s.maxOps && m.maxValue === s.maxValue && m.format === s.format &&
        m.sizes?.train === s.train && m.sizes?.test === s.test && Object.values(m.files ?? {}).every((f) => existsSync(path.join(dir, f)));
      if (same) return { manifest: m, reused: true };
    } catch {
      // an unreadable manifest: regenerate
    }
  }
  return { manifest: makeTaskData(dir, opts), reused: false };
}
