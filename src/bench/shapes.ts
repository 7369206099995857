// The model shapes the GPU benchmarks build random models of: Qwen2.5 configs (config.json: hidden, layers, heads,
// kv heads, intermediate, tied embeddings), named as `clipo bench train --backend cuda --shape` takes them.
import { smallConfig } from '../engine/params.js';
import type { ModelConfig } from '../model/types.js';

export interface BenchShape {
  /** the name --shape takes */
  name: string;
  /** the label rows carry */
  label: string;
  config: ModelConfig;
}

const QWEN25: Record<string, { hidden: number; layers: number; heads: number; intermediate: number; kvHeads?: number; tie?: boolean }> = {
  'qwen2.5-0.5b': { hidden: 896, layers: 24, heads: 14, intermediate: 4864 },
  'qwen2.5-1.5b': { hidden: 1536, layers: 28, heads: 12, intermediate: 8960 },
  'qwen2.5-3b': { hidden: 2048, layers: 36, heads: 16, intermediate: 11008 },
  'qwen2.5-7b': { hidden: 3584, layers: 28, heads: 28, intermediate: 18944, kvHeads: 4, tie: false },
};

/** The names --shape accepts (an alias drops the family: 0.5b, 1.5b, 3b, 7b). */
export const BENCH_SHAPE_NAMES = Object.keys(QWEN25);

/** A Qwen2.5-shaped config (vocabulary 151936; 2 kv heads and tied embeddings up to 3B, 4 and untied at 7B), or
 *  `vocab` instead of Qwen's. */
export function benchShape(name: string, vocab = 151936): BenchShape {
  const key = QWEN25[name] ? name : `qwen2.5-${name}`;
  const s = QWEN25[key];
  if (!s) throw new Error(`unknown model shape '${name}' (known: ${BENCH_SHAPE_NAMES.join(', ')}; or 0.5b, 1.5b, 3b, 7b)`);
  const label = `Qwen2.5-${key.slice('qwen2.5-'.length).toUpperCase()}-shaped`;
  return { name: key, label, config: smallConfig('qwen2', { vocab, hidden: s.hidden, layers: s.layers, heads: s.heads, kvHeads: s.kvHeads ?? 2, intermediate: s.intermediate, tie: s.tie ?? true }) };
}

/** A smoke-test shape (--quick): ~50M parameters. */
export function quickShape(vocab = 32000): BenchShape {
  return { name: 'quick', label: '~50M (quick)', config: smallConfig('qwen2', { vocab, hidden: 512, layers: 4, heads: 8, kvHeads: 2, intermediate: 1536 }) };
}

/** Parses --shape: comma-separated names, each known, no repeats. */
export function parseShapes(raw: string): string[] {
  const names = raw.split(',').map((s) => s.trim().toLowerCase()).filter(Boolean);
  if (!names.length) throw new Error(`--shape: expected one or more of ${BENCH_SHAPE_NAMES.join(', ')}, got '${raw}'`);
  const keys = names.map((n) => {
    try {
      return benchShape(n).name;
    } catch (e) {
      throw new Error(`--shape: ${(e as Error).message}`);
    }
  });
  const dup = keys.find((k, i) => keys.indexOf(k) !== i);
  if (dup) throw new Error(`--shape: '${dup}' given twice`);
  return keys;
}

/** Parses --batch: "BxT" sequences x tokens per sequence (1 prompt token + T-1 response tokens). */
export function parseTrainBatch(raw: string, maxTokens = 4096): { batch: number; seqLen: number } {
  const m = /^\s*(\d+)\s*x\s*(\d+)\s*$/i.exec(raw);
  if (!m) throw new Error(`--batch: expected SEQUENCESxTOKENS such as 4x1024, got '${raw}'`);
  const batch = Number(m[1]), seqLen = Number(m[2]);
  if (batch < 1 || batch > 1024) throw new Error(`--batch: sequences must be 1 to 1024, got ${batch}`);
  if (seqLen < 2 || seqLen > maxTokens) throw new Error(`--batch: tokens per sequence must be 2 to ${maxTokens} (the models' position limit), got ${seqLen}`);
  return { batch, seqLen };
}
