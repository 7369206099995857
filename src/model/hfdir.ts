// Hugging Face model directories: config.json + safetensors (+ tokenizer files) in, the same layout out, so a
// directory clipo writes loads in transformers or vLLM and a trained policy replaces the original in place.
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { ensureDir, writeJsonAtomic } from '../util/atomic.js';
import { modelConfigToJson, parseModelConfig, type SaveDtype } from './config.js';
import { openSafetensorsDir, readSafetensorsDir, writeSafetensorsDir, type StoredDtype } from './safetensors.js';
import { checkWeights, expectedTensors, finiteOnLoad } from './tensors.js';
import { ModelTokenizer, tokenizerFiles } from './tokenizer.js';
import type { LazyTensorMap, ModelConfig, Tensor, TensorMap } from './types.js';

export interface ModelDir {
  dir: string;
  config: ModelConfig;
  weights: TensorMap;
  /** absent when the directory has no tokenizer.json (valid: such a model takes token ids) */
  tokenizer?: ModelTokenizer;
  /** storage dtype of each tensor as found on disk */
  dtypes: Map<string, StoredDtype>;
  /**
   * Tokens that end a generation: config.json's eos_token_id, generation_config.json's eos_token_id (instruct models
   * list their end-of-turn token there) and the tokenizer's eos token, without duplicates.
   */
  stopTokenIds: number[];
}

/** Reads and validates config.json of a model directory. */
export function loadModelConfig(dir: string): ModelConfig {
  const file = path.join(dir, 'config.json');
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new Error(`${dir}: not a directory`);
  if (!existsSync(file)) throw new Error(`${dir}: no config.json (not a Hugging Face model directory)`);
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`${file}: not valid JSON (${(e as Error).message})`);
  }
  return parseModelConfig(raw, file);
}

/** Loads config, weights (fp32, every expected tensor checked by name and shape) and the tokenizer if present. */
export function loadModelDir(dir: string, opts: { tokenizer?: boolean } = {}): ModelDir {
  const config = loadModelConfig(dir);
  const { tensors, dtypes } = readSafetensorsDir(dir);
  const weights = checkWeights(config, tensors, dir);
  return { dir, config, weights, dtypes, ...modelExtras(dir, config, opts) };
}

/** A model directory whose weights are read only when consumed (Engine.create reads them one tensor at a time). */
export interface LazyModelDir extends Omit<ModelDir, 'weights'> {
  weights: LazyTensorMap;
}

/**
 * As loadModelDir, but the weights stay on disk until the engine takes them: names and shapes are checked now,
 * values (finite) as each tensor is read. For inference, so the host never holds the whole model in fp32 beside the
 * engine's own copy (for a 7B model, 30 GB it would otherwise need).
 */
export function openModelDir(dir: string, opts: { tokenizer?: boolean } = {}): LazyModelDir {
  const config = loadModelConfig(dir);
  const { tensors, dtypes } = openSafetensorsDir(dir);
  const weights = finiteOnLoad(checkWeights(config, tensors, dir), dir);
  return { dir, config, weights, dtypes, ...modelExtras(dir, config, opts) };
}

/** The tokenizer (if present and wanted) and the stop tokens of a model directory. */
function modelExtras(dir: string, config: ModelConfig, opts: { tokenizer?: boolean }): { tokenizer?: ModelTokenizer; stopTokenIds: number[] } {
  let tokenizer: ModelTokenizer | undefined;
  if ((opts.tokenizer ?? true) && existsSync(path.join(dir, 'tokenizer.json'))) {
    tokenizer = ModelTokenizer.fromDir(dir);
    if (tokenizer.vocabSize > config.vocabSize) {
      throw new Error(`${dir}: the tokenizer has ids up to ${tokenizer.vocabSize - 1} but config.json vocab_size is ${config.vocabSize}`);
    }
  }
  const stop = new Set(config.eosTokenIds);
  for (const id of generationEos(dir)) if (id < config.vocabSize) stop.add(id);
  const tokEos = tokenizer?.eosTokenId;
  if (tokEos != null) stop.add(tokEos);
  return { ...(tokenizer ? { tokenizer } : {}), stopTokenIds: [...stop] };
}

/** eos_token_id of generation_config.json (a number or a list), [] when absent or unreadable. */
function generationEos(dir: string): number[] {
  const file = path.join(dir, 'generation_config.json');
  if (!existsSync(file)) return [];
  try {
    const eos = (JSON.parse(readFileSync(file, 'utf8')) as { eos_token_id?: unknown }).eos_token_id;
    const list = Array.isArray(eos) ? eos : [eos];
    return list.filter((x): x is number => Number.isSafeInteger(x) && (x as number) >= 0);
  } catch {
    return []; // generation_config.json only tunes defaults; a broken one must not stop the model from loading
  }
}

export interface SaveOptions {
  /** storage dtype of the weights (default f32) */
  dtype?: SaveDtype;
  /** a directory whose tokenizer files (and generation_config.json) are copied along */
  copyFrom?: string;
  /** copy generation_config.json from copyFrom too (default true: a trained policy keeps its sampling defaults) */
  copyGenerationConfig?: boolean;
  /** overwrite a non-empty directory */
  force?: boolean;
  /** shard above this many bytes (default 5 GB, as transformers) */
  maxShardBytes?: number;
}

/**
 * Writes config.json, the weights and companion files into `dir`. Atomic: everything goes to a temporary sibling
 * directory first, which then replaces `dir` by rename, so a crash leaves either the old directory or the new one.
 */
export function saveModelDir(dir: string, config: ModelConfig, weights: TensorMap, opts: SaveOptions = {}): string[] {
  const target = path.resolve(dir);
  if (existsSync(target)) {
    if (!statSync(target).isDirectory()) throw new Error(`${dir}: exists and is not a directory`);
    if (readdirSync(target).length > 0 && !opts.force) throw new Error(`${dir}: directory is not empty (use --force to overwrite)`);
  }
  const checked = checkWeights(config, weights, 'weights to save');
  const ordered: Array<[string, Tensor]> = expectedTensors(config)
    .filter((s) => checked.has(s.name))
    .map((s) => [s.name, checked.get(s.name)!]);

  const dtype = opts.dtype ?? 'f32';
  const parent = path.dirname(target);
  ensureDir(parent, 'folder');
  const tmp = path.join(parent, `.${path.basename(target)}.tmp-${process.pid}-${Date.now()}`);
  mkdirSync(tmp);
  try {
    const written = writeSafetensorsDir(tmp, ordered, { dtype: dtype === 'bf16' ? 'BF16' : 'F32', maxShardBytes: opts.maxShardBytes });
    writeJsonAtomic(path.join(tmp, 'config.json'), modelConfigToJson(config, dtype));
    written.push('config.json');
    if (opts.copyFrom) {
      for (const f of [...tokenizerFiles, ...(opts.copyGenerationConfig === false ? [] : ['generation_config.json'])]) {
        const src = path.join(opts.copyFrom, f);
        if (existsSync(src)) {
          copyFileSync(src, path.join(tmp, f));
          written.push(f);
        }
      }
    }
    // Swap: move the old directory aside, the new one in, then delete the old one.
    if (existsSync(target)) {
      const old = `${tmp}.old`;
      renameSync(target, old);
      renameSync(tmp, target);
      rmSync(old, { recursive: true, force: true });
    } else {
      renameSync(tmp, target);
    }
    return written.sort();
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}
