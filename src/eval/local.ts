// The local backend of `clipo eval`: a model directory on the native engine, batched. `concurrency` is the number
// of sequences per engine call. Each sample is its own sequence (n = 1 per prompt copy), so batches can mix
// problems and sample indices freely; prompt prefill is repeated per copy, which is small next to decoding.
//
// Seeds: one engine call gets one seed, derived from the first sample in the batch. An uninterrupted run is
// reproducible; a resumed run forms different batches, so its sampled (temperature > 0) texts can differ from the
// ones an uninterrupted run would have drawn (same distribution). Greedy decoding is identical either way.
import path from 'node:path';
import { ContextLengthError, LocalModel, type GenerateEngine } from './localmodel.js';
import { deriveSeed } from './seeds.js';
import type { Completion, GenRequest, Generator, SamplingParams } from './types.js';

export class LocalGenerator implements Generator {
  readonly info: Generator['info'];

  constructor(
    private readonly model: LocalModel,
    private readonly concurrency: number,
    dir: string,
  ) {
    this.info = { backend: 'local', model: model.name, dir: path.resolve(dir) };
  }

  async generate(requests: GenRequest[], params: SamplingParams, onSample: (req: GenRequest, sample: number, c: Completion) => void): Promise<void> {
    const items: Array<{ req: GenRequest; sample: number; ids: number[] }> = [];
    for (const req of requests) {
      let ids: number[];
      try {
        ids = this.model.encodeChat(req.messages);
        this.model.checkFits(ids, params.maxNewTokens);
      } catch (e) {
        // a prompt that cannot be run is recorded per sample (and reported), not fatal for the whole evaluation
        const msg = e instanceof ContextLengthError ? e.message : `prompt: ${(e as Error).message}`;
        for (const s of req.samples) onSample(req, s, { text: '', finishReason: null, error: msg, attempts: 1 });
        continue;
      }
      for (const s of req.samples) items.push({ req, sample: s, ids });
    }
    for (let at = 0; at < items.length; at += this.concurrency) {
      const batch = items.slice(at, at + this.concurrency);
      const seed = deriveSeed(batch[0].req.seed, batch[0].sample);
      const out = this.model.generate(batch.map((b) => ({ ids: b.ids, n: 1 })), { ...params, seed });
      batch.forEach((b, i) => {
        const c = out[i][0];
        onSample(b.req, b.sample, { text: c.text, finishReason: c.finishReason, usage: { promptTokens: b.ids.length, completionTokens: c.completionTokens }, attempts: 1 });
      });
      // let the store flush, the progress bar draw and signals arrive between (synchronous) engine calls
      await new Promise<void>((r) => setImmediate(r));
    }
  }
}

/** Loads a model directory (weights, tokenizer with chat template) onto the native engine. */
export async function loadLocalModel(dir: string, opts: { name?: string; threads?: number } = {}): Promise<LocalModel> {
  const { loadModelDir } = await import('../model/hfdir.js');
  const md = loadModelDir(dir);
  if (!md.tokenizer) throw new Error(`${dir}: no tokenizer.json; evaluation and serving need the model's tokenizer and chat template`);
  if (!md.tokenizer.chatTemplate) throw new Error(`${dir}: the tokenizer has no chat template (tokenizer_config.json "chat_template" or chat_template.jinja)`);
  // the engine (and the native addon) is loaded only when a local model is used: --endpoint runs need neither
  const { Engine } = await import('../engine/engine.js');
  const engine = Engine.create(md.config, md.weights, opts.threads ? { threads: opts.threads } : {}) as unknown as GenerateEngine;
  md.weights.clear();
  return new LocalModel(engine, md.tokenizer, opts.name ?? path.basename(path.resolve(dir)));
}

export async function createLocalGenerator(opts: { dir: string; concurrency: number; log: (m: string) => void }): Promise<Generator> {
  const t0 = Date.now();
  const model = await loadLocalModel(opts.dir);
  opts.log(`loaded ${opts.dir} in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  return new LocalGenerator(model, opts.concurrency, opts.dir);
}
