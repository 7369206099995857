// The built-in task written in the layout of the paper's benchmark files (verl-style rows; see the data README):
// data_source, prompt [{role: 'user', content}], ability, reward_model {ground_truth, style}, extra_info
// {index, split, ...}. The worked solution rides in extra_info.solution for supervised warm-up.
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { writeFileAtomic, writeJsonAtomic } from '../util/atomic.js';
import { TASK_SPLITS, type TaskProblem, type TaskSplit, problemText, solutionText } from './generator.js';
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

/** A small manifest next to the files, so a run can tell which generator settings produced them. */
export function writeTaskManifest(dir: string, manifest: Record<string, unknown>): void {
  writeJsonAtomic(path.join(dir, 'task.json'), manifest);
}
