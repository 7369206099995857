// The local backend of `clipo eval`: a model directory on the native engine, batched.
//
// Determinism: the engine draws the randomness of a sequence from (seed, prompt index in the call, sample index,
// step), independent of batching. So problems are cut into fixed blocks of P = max(1, floor(C / K)) consecutive
// problems (C = --concurrency, K = --samples); a block is always generated whole (n = K for each of its P prompts)
// with a seed derived from the block's first problem, and only the samples still missing are kept. Sample (p, s)
// therefore gets the same tokens in an uninterrupted run and in a resumed one (for the same --samples and
// --concurrency). A crash costs at most the blocks in flight; a block with a failed sample is redone whole.
// `concurrency` also caps the sequences decoded at once (the engine's maxBatch).
import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { ContextLengthError, LocalModel, type GenerateEngine } from './localmodel.js';
import { keySeed } from '../util/seeds.js';
import type { Completion, GenRequest, Generator, SamplingParams } from './types.js';

export class LocalGenerator implements Generator {
  readonly info: Generator['info'];

  constructor(
    private readonly model: LocalModel,
    private readonly concurrency: number,
    dir: string,
    /** identifies weights that are not (only) on disk, e.g. a policy in training; default: the weight files' size and time */
    fingerprint?: string,
  ) {
    this.info = { backend: 'local', model: model.name, dir: path.resolve(dir), fingerprint: fingerprint ?? weightsFingerprint(dir) };
  }

  async generate(requests: GenRequest[], params: SamplingParams, onSample: (req: GenRequest, sample: number, c: Completion) => void): Promise<void> {
    const blocks = new Map<string, GenRequest[]>();
    for (const r of requests) {
      const per = Math.max(1, Math.floor(this.concurrency / r.k));
      const key = `${r.benchmark}\u0000${Math.floor(r.problem / per)}`;
      blocks.set(key, [...(blocks.get(key) ?? []), r]);
    }
    for (const block of blocks.values()) {
      if (!block.some((r) => r.samples.length)) continue;
      block.sort((a, b) => a.problem - b.problem);
      const ids: number[][] = [];
      for (const r of block) {
        try {
          const p = this.model.encodeChat(r.messages);
          this.model.checkFits(p, params.maxNewTokens);
          ids.push(p);
        } catch (e) {
          // a prompt that cannot run is an error record per sample (reported at the end), not fatal for the run;
          // a single-token placeholder keeps the other prompts' positions (and so their randomness) unchanged
          const msg = e instanceof ContextLengthError ? e.message : `prompt: ${(e as Error).message}`;
          for (const s of r.samples) onSample(r, s, { text: '', finishReason: null, error: msg, attempts: 1 });
          ids.push([]);
        }
      }
      const runnable = ids.map((p, i) => (p.length ? i : -1)).filter((i) => i >= 0);
      if (runnable.length) {
        const k = block[0].k;
        const seed = keySeed(block[0].seed, 'block');
        const placeholder = ids[runnable[0]].slice(0, 1);
        const out = this.model.generate(
          ids.map((p) => ({ ids: p.length ? p : placeholder, n: k })),
          { ...params, seed, maxBatch: this.concurrency },
        );
        for (const i of runnable) {
          for (const s of block[i].samples) {
            const c = out[i][s];
            onSample(block[i], s, { text: c.text, finishReason: c.finishReason, usage: { promptTokens: ids[i].length, completionTokens: c.completionTokens }, attempts: 1 });
          }
        }
      }
      // let the store flush, the progress bar draw and signals arrive between (synchronous) engine calls
      await new Promise<void>((r) => setImmediate(r));
    }
  }
}

/** Size and modification time of the weight files: changes when a checkpoint is overwritten in place. */
export function weightsFingerprint(dir: string): string {
  let bytes = 0;
  let mtime = 0;
  for (const f of readdirSync(dir)) {
    if (!f.endsWith('.safetensors')) continue;
    const st = statSync(path.join(dir, f));
    bytes += st.size;
    mtime = Math.max(mtime, st.mtimeMs);
  }
  return `${bytes} bytes, ${new Date(Math.floor(mtime)).toISOString()}`;
}

/** Loads a model directory (weights, tokenizer with chat template) onto the native engine. */
export async function loadLocalModel(dir: string, opts: { name?: string; threads?: number; backend?: 'cpu' | 'cuda' | 'auto' } = {}): Promise<LocalModel> {
  const { openModelDir } = await import('../model/hfdir.js');
  const md = openModelDir(dir); // weights read one tensor at a time as the engine takes them
  if (!md.tokenizer) throw new Error(`${dir}: no tokenizer.json; evaluation and serving need the model's tokenizer and chat template`);
  if (!md.tokenizer.chatTemplate) throw new Error(`${dir}: the tokenizer has no chat template (tokenizer_config.json "chat_template" or chat_template.jinja)`);
  // the engine (and the native addon) is loaded only when a local model is used: --endpoint runs need neither
  const { Engine } = await import('../engine/engine.js');
  const engine = Engine.create(md.config, md.weights, { ...(opts.threads ? { threads: opts.threads } : {}), backend: opts.backend }) as unknown as GenerateEngine;
  md.weights.clear();
  return new LocalModel(engine, md.tokenizer, opts.name ?? path.basename(path.resolve(dir)));
}

export async function createLocalGenerator(opts: { dir: string; concurrency: number; threads?: number; backend?: 'cpu' | 'cuda' | 'auto'; log: (m: string) => void }): Promise<Generator> {
  const t0 = Date.now();
  const model = await loadLocalModel(opts.dir, { threads: opts.threads, backend: opts.backend });
  opts.log(`loaded ${opts.dir} in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  return new LocalGenerator(model, opts.concurrency, opts.dir);
}
