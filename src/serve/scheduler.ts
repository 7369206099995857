// Continuous batching for `clipo serve`: requests join the engine's running batch between decode steps and leave it
// when they finish, hit a stop string or are cancelled. Runs next to the engine (in the serve worker, or in process
// for tests); it only needs the step-wise part of the engine API (StepEngine), so a GPU engine with the same methods
// drops in unchanged.
//
// Every sequence has its own sampling settings and seed, and the engine makes a sequence's tokens independent of the
// batch around it, so an answer does not depend on what else was being served.
import type { DecodeAddRequest, DecodeStepToken } from '../engine/engine.js';
import type { LocalModel } from '../eval/localmodel.js';
import type { ChatMessage } from '../eval/types.js';
import { Detokenizer, findStop } from './text.js';

/** The slice of the engine the scheduler drives (src/engine/engine.ts implements it). */
export interface StepEngine {
  readonly config: { eosTokenIds: number[]; maxPositionEmbeddings: number; vocabSize: number };
  decodeAdd(req: DecodeAddRequest): number[];
  decodeStep(): DecodeStepToken[];
  decodeRemove(id: number): boolean;
  /** full-sequence logits [length * vocab] (for completions with echo + logprobs) */
  logits?(tokens: Int32Array, batch: number, length: number): Float32Array;
}

export function isStepEngine(e: unknown): e is StepEngine {
  const x = e as Partial<StepEngine> | null;
  return !!x && typeof x.decodeAdd === 'function' && typeof x.decodeStep === 'function' && typeof x.decodeRemove === 'function';
}

/** What the HTTP side asks for (plain data: it crosses the worker boundary). */
export interface JobSpec {
  kind: 'chat' | 'completion';
  messages?: ChatMessage[];
  /** completions: text or token ids, one entry per prompt */
  prompts?: Array<string | number[]>;
  n: number;
  /** null: chat fills the context (capped by defaultMaxTokens), completions 16 */
  maxTokens: number | null;
  temperature: number;
  topP: number;
  topK: number;
  minP: number;
  repetitionPenalty: number;
  logitBias: Array<[number, number]>;
  seed: number;
  stop: string[];
  /** null: no log-probs; k: the token's log-prob and the k most likely tokens */
  logprobs: number | null;
  /** completions: the prompt is part of the returned text (and of the log-probs) */
  echo: boolean;
}

export interface TokenLogprob {
  token: string;
  /** null for a prompt's first token (nothing predicts it) */
  logprob: number | null;
  bytes: number[];
  top: Array<{ token: string; logprob: number; bytes: number[] }>;
}

export type JobEvent =
  | { type: 'start'; promptTokens: number; queueMs: number }
  | { type: 'delta'; choice: number; text: string; logprobs?: TokenLogprob[] }
  | { type: 'finish'; choice: number; finishReason: 'stop' | 'length'; completionTokens: number }
  | { type: 'done'; queueMs: number; engineMs: number; promptTokens: number; completionTokens: number }
  | { type: 'error'; status: number; message: string; param: string | null };

export interface SchedulerMetrics {
  requests: number;
  steps: number;
  /** sum over steps of the sequences decoded in that step (mean batch size = stepSequences / steps) */
  stepSequences: number;
  generatedTokens: number;
  promptTokens: number;
  running: number;
  waiting: number;
  cancelled: number;
}

export interface SchedulerOptions {
  /** most sequences in the running batch (a request with more samples runs alone), default 32 */
  maxBatchSequences?: number;
  /** default max_tokens for chat requests that give none (capped by the context), default 4096 */
  defaultMaxTokens?: number;
}

class RequestError extends Error {
  constructor(
    message: string,
    readonly param: string | null,
  ) {
    super(message);
  }
}

interface Choice {
  index: number;
  seqId: number;
  detok: Detokenizer;
  /** text decided so far (stop strings cut it) and how much of it was sent */
  text: string;
  sent: number;
  tokens: number;
  pendingLogprobs: TokenLogprob[];
  done: boolean;
}

interface Job {
  id: number;
  spec: JobSpec;
  emit: (e: JobEvent) => void;
  prompts: Int32Array[];
  maxNewTokens: number;
  sequences: number;
  enqueued: number;
  queueMs: number;
  engineMs: number;
  choices: Choice[];
  bySeq: Map<number, Choice>;
  open: number;
  completionTokens: number;
}

export class Scheduler {
  private readonly waiting: Job[] = [];
  private readonly running = new Map<number, Job>();
  private readonly seqOwner = new Map<number, Job>();
  private readonly tokenText = new Map<number, string>();
  private readonly maxBatch: number;
  private ticking = false;
  private nextJob = 1;
  readonly metrics: SchedulerMetrics = { requests: 0, steps: 0, stepSequences: 0, generatedTokens: 0, promptTokens: 0, running: 0, waiting: 0, cancelled: 0 };

  constructor(
    readonly model: LocalModel,
    private readonly engine: StepEngine,
    private readonly opts: SchedulerOptions = {},
  ) {
    this.maxBatch = opts.maxBatchSequences ?? 32;
  }

  /** Queues a request; events arrive through emit. Returns its id (for cancel). */
  submit(spec: JobSpec, emit: (e: JobEvent) => void): number {
    const id = this.nextJob++;
    let job: Job;
    try {
      job = this.prepare(id, spec, emit);
    } catch (e) {
      const err = e instanceof RequestError ? e : new RequestError((e as Error).message, spec.kind === 'chat' ? 'messages' : 'prompt');
      emit({ type: 'error', status: 400, message: err.message, param: err.param });
      return id;
    }
    this.metrics.requests++;
    this.waiting.push(job);
    this.kick();
    return id;
  }

  /** Drops a request (client gone): its sequences leave the batch at once; no more events. */
  cancel(id: number): void {
    const w = this.waiting.findIndex((j) => j.id === id);
    if (w >= 0) {
      this.waiting.splice(w, 1);
      this.metrics.cancelled++;
      return;
    }
    const job = this.running.get(id);
    if (!job) return;
    for (const c of job.choices) if (!c.done) this.release(c);
    this.running.delete(id);
    this.metrics.cancelled++;
  }

  snapshot(): SchedulerMetrics {
    return { ...this.metrics, running: [...this.running.values()].reduce((a, j) => a + j.open, 0), waiting: this.waiting.length };
  }

  // --- preparation (tokenizing, limits) -------------------------------------------------------------------------

  private prepare(id: number, spec: JobSpec, emit: (e: JobEvent) => void): Job {
    const m = this.model;
    let prompts: Int32Array[];
    // a prompt certainly longer than the context is refused before tokenizing it (tokenizing megabytes takes
    // seconds on this thread, and every running request would wait for it)
    const texts = spec.kind === 'chat' ? [(spec.messages ?? []).map((x) => x.content).join('')] : (spec.prompts ?? []).filter((p): p is string => typeof p === 'string');
    for (const t of texts) {
      const atLeast = Math.ceil(Buffer.byteLength(t, 'utf8') / m.tokenizer.maxTokenBytes);
      if (atLeast > m.contextLength) {
        const param = spec.kind === 'chat' ? 'messages' : 'prompt';
        throw new RequestError(`the prompt has at least ${atLeast} tokens (${Buffer.byteLength(t, 'utf8')} bytes), more than the model's context of ${m.contextLength}`, param);
      }
    }
    if (spec.kind === 'chat') {
      try {
        prompts = [Int32Array.from(m.encodeChat(spec.messages ?? []))];
      } catch (e) {
        throw new RequestError(`messages: ${(e as Error).message}`, 'messages');
      }
    } else {
      const vocab = this.engine.config.vocabSize;
      prompts = (spec.prompts ?? []).map((p, i) => {
        if (typeof p === 'string') return Int32Array.from(m.encodeText(p));
        p.forEach((t, k) => {
          if (t >= vocab) throw new RequestError(`prompt.${i}.${k}: token id ${t} is out of range [0, ${vocab})`, 'prompt');
        });
        return Int32Array.from(p);
      });
    }
    const param = spec.kind === 'chat' ? 'messages' : 'prompt';
    const longest = Math.max(...prompts.map((p) => p.length));
    if (prompts.some((p) => p.length === 0)) throw new RequestError(`${param}: the prompt is empty after tokenization`, param);
    const room = m.contextLength - longest;
    const maxNewTokens = spec.maxTokens ?? Math.max(1, Math.min(spec.kind === 'chat' ? this.opts.defaultMaxTokens ?? 4096 : 16, room));
    if (longest + maxNewTokens > m.contextLength) {
      throw new RequestError(`the prompt has ${longest} tokens; with max ${maxNewTokens} new tokens that exceeds the model's context of ${m.contextLength}`, param);
    }
    if (spec.echo && spec.logprobs !== null) {
      if (!this.engine.logits) throw new RequestError('echo with logprobs: this engine cannot score prompts', 'echo');
      // the prompt's full logits are materialised: bound them (2^27 floats = 512 MB)
      const vocab = this.engine.config.vocabSize;
      if (longest * vocab > 2 ** 27) throw new RequestError(`echo with logprobs: a prompt of ${longest} tokens is too long to score here (at most ${Math.floor(2 ** 27 / vocab)} with this vocabulary)`, 'prompt');
    }
    const choices: Choice[] = [];
    for (let i = 0; i < prompts.length * spec.n; i++) choices.push({ index: i, seqId: -1, detok: new Detokenizer(m.tokenizer), text: '', sent: 0, tokens: 0, pendingLogprobs: [], done: false });
    return { id, spec, emit, prompts, maxNewTokens, sequences: choices.length, enqueued: Date.now(), queueMs: 0, engineMs: 0, choices, bySeq: new Map(), open: choices.length, completionTokens: 0 };
  }

  // --- the loop -------------------------------------------------------------------------------------------------

  private kick(): void {
    if (this.ticking) return;
    this.ticking = true;
    setImmediate(() => this.tick());
  }

  private live(): number {
    return this.seqOwner.size;
  }

  private tick(): void {
    this.ticking = false;
    try {
      this.admit();
    } catch (e) {
      this.failAll(e);
      return;
    }
    if (this.live() === 0) {
      if (this.waiting.length) this.kick();
      return;
    }
    const t0 = performance.now();
    let out: DecodeStepToken[];
    try {
      out = this.engine.decodeStep();
    } catch (e) {
      this.failAll(e);
      return;
    }
    const ms = performance.now() - t0;
    this.metrics.steps++;
    this.metrics.stepSequences += out.length;
    const touched = new Set<Job>();
    for (const t of out) {
      const job = this.seqOwner.get(t.id);
      if (!job) continue; // cancelled while stepping cannot happen (same thread); defensive
      if (!touched.has(job)) {
        job.engineMs += ms;
        touched.add(job);
      }
      this.onToken(job, job.bySeq.get(t.id)!, t);
    }
    for (const job of touched) this.flush(job);
    this.kick();
  }

  /** Starts waiting requests, in arrival order, while the running batch has room (a big one waits for an empty batch). */
  private admit(): void {
    while (this.waiting.length) {
      const job = this.waiting[0];
      const need = job.spec.maxTokens === 0 ? 0 : job.sequences;
      if (this.live() > 0 && this.live() + need > this.maxBatch) return;
      this.waiting.shift();
      const t0 = performance.now();
      job.queueMs = Date.now() - job.enqueued;
      this.running.set(job.id, job);
      this.metrics.promptTokens += job.prompts.reduce((a, p) => a + p.length, 0);
      job.emit({ type: 'start', promptTokens: job.prompts.reduce((a, p) => a + p.length, 0), queueMs: job.queueMs });
      if (job.spec.echo) this.echo(job);
      if (job.maxNewTokens === 0) {
        for (const c of job.choices) this.finish(job, c, 'length');
        job.engineMs += performance.now() - t0;
        continue;
      }
      const s = job.spec;
      const bias = new Map(s.logitBias);
      try {
        this.addToBatch(job, s, bias);
      } catch (e) {
        // only this request fails (e.g. out of memory for its KV cache); the running batch goes on
        for (const c of job.choices) this.release(c);
        this.running.delete(job.id);
        job.emit({ type: 'error', status: 500, message: `engine error: ${(e as Error)?.message ?? String(e)}`, param: null });
      }
      job.engineMs += performance.now() - t0;
    }
  }

  private addToBatch(job: Job, s: JobSpec, bias: Map<number, number>): void {
    job.prompts.forEach((prompt, p) => {
      const ids = this.engine.decodeAdd({
        prompt,
        n: s.n,
        maxNewTokens: job.maxNewTokens,
        seed: s.seed,
        promptIndex: p,
        stopTokens: this.model.stopTokens,
        temperature: s.temperature,
        topP: s.topP,
        topK: s.topK,
        minP: s.minP,
        repetitionPenalty: s.repetitionPenalty,
        logitBias: bias,
        topLogprobs: s.logprobs ?? 0,
      });
      ids.forEach((seqId, k) => {
        const c = job.choices[p * s.n + k];
        c.seqId = seqId;
        job.bySeq.set(seqId, c);
        this.seqOwner.set(seqId, job);
      });
    });
  }

  private tokenString(id: number): string {
    let s = this.tokenText.get(id);
    if (s === undefined) {
      s = this.model.tokenizer.decode([id], { skipSpecialTokens: false });
      if (this.tokenText.size < 200_000) this.tokenText.set(id, s);
    }
    return s;
  }

  private logprobEntry(token: number, logprob: number | null, top: Array<{ token: number; logprob: number }>): TokenLogprob {
    const str = this.tokenString(token);
    return {
      token: str,
      logprob,
      bytes: [...Buffer.from(str, 'utf8')],
      top: top.map((t) => {
        const ts = this.tokenString(t.token);
        return { token: ts, logprob: t.logprob, bytes: [...Buffer.from(ts, 'utf8')] };
      }),
    };
  }

  /** Completions with echo: the prompt's text (and, with logprobs, each prompt token's log-prob given the ones before). */
  private echo(job: Job): void {
    job.prompts.forEach((prompt, p) => {
      const text = this.model.tokenizer.decode(prompt, { skipSpecialTokens: false });
      let lps: TokenLogprob[] | undefined;
      if (job.spec.logprobs !== null) {
        const k = job.spec.logprobs;
        const V = this.engine.config.vocabSize;
        const z = this.engine.logits!(prompt, 1, prompt.length);
        lps = [this.logprobEntry(prompt[0], null, [])];
        for (let i = 1; i < prompt.length; i++) {
          const row = z.subarray((i - 1) * V, i * V);
          let mx = -Infinity;
          for (let v = 0; v < V; v++) if (row[v] > mx) mx = row[v];
          let sum = 0;
          for (let v = 0; v < V; v++) sum += Math.exp(row[v] - mx);
          const lse = mx + Math.log(sum);
          // the k largest in one pass (k <= 20), ties to the lower id
          const best: number[] = [];
          if (k > 0)
            for (let v = 0; v < V; v++) {
              if (best.length === k && row[v] <= row[best[k - 1]]) continue;
              let at = best.length;
              while (at > 0 && row[best[at - 1]] < row[v]) at--;
              best.splice(at, 0, v);
              if (best.length > k) best.pop();
            }
          const top = best.map((t) => ({ token: t, logprob: row[t] - lse }));
          lps.push(this.logprobEntry(prompt[i], row[prompt[i]] - lse, top));
        }
      }
      for (let k = 0; k < job.spec.n; k++) {
        const c = job.choices[p * job.spec.n + k];
        c.text = text;
        c.sent = text.length;
        job.emit({ type: 'delta', choice: c.index, text, ...(lps ? { logprobs: lps } : {}) });
      }
    });
  }

  private onToken(job: Job, c: Choice, t: DecodeStepToken): void {
    c.tokens++;
    job.completionTokens++;
    this.metrics.generatedTokens++;
    const isStopToken = t.stopped;
    if (!isStopToken) {
      if (job.spec.logprobs !== null) c.pendingLogprobs.push(this.logprobEntry(t.token, t.logprob, t.top ?? []));
      const before = c.text.length;
      c.text += c.detok.push(t.token);
      if (job.spec.stop.length) {
        // a stop string can end in the new text and start up to (longest stop - 1) characters before it
        const from = Math.max(c.sent, before - Math.max(...job.spec.stop.map((s) => s.length)) + 1);
        const at = findStop(c.text, job.spec.stop, from);
        if (at >= 0) {
          c.text = c.text.slice(0, at);
          if (!t.finished) this.engine.decodeRemove(t.id);
          this.finish(job, c, 'stop');
          return;
        }
      }
    }
    if (t.finished) {
      c.text += c.detok.flush();
      if (job.spec.stop.length) {
        const at = findStop(c.text, job.spec.stop, c.sent);
        if (at >= 0) {
          c.text = c.text.slice(0, at);
          this.finish(job, c, 'stop');
          return;
        }
      }
      this.finish(job, c, isStopToken ? 'stop' : 'length');
    }
  }

  /** Sends what is certain: text that can no longer turn out to start a stop string. */
  private flush(job: Job): void {
    if (!this.running.has(job.id)) return;
    const hold = job.spec.stop.length ? Math.max(...job.spec.stop.map((s) => s.length)) - 1 : 0;
    for (const c of job.choices) {
      if (c.done) continue;
      const upto = Math.max(c.sent, c.text.length - hold);
      if (upto > c.sent || c.pendingLogprobs.length) {
        job.emit({ type: 'delta', choice: c.index, text: c.text.slice(c.sent, upto), ...(job.spec.logprobs !== null ? { logprobs: c.pendingLogprobs } : {}) });
        c.sent = upto;
        c.pendingLogprobs = [];
      }
    }
  }

  private release(c: Choice): void {
    if (c.seqId >= 0 && this.seqOwner.has(c.seqId)) {
      this.engine.decodeRemove(c.seqId);
      this.seqOwner.delete(c.seqId);
    }
  }

  private finish(job: Job, c: Choice, reason: 'stop' | 'length'): void {
    if (c.done) return;
    c.done = true;
    if (c.seqId >= 0) this.seqOwner.delete(c.seqId);
    if (c.text.length > c.sent || c.pendingLogprobs.length) {
      job.emit({ type: 'delta', choice: c.index, text: c.text.slice(c.sent), ...(job.spec.logprobs !== null ? { logprobs: c.pendingLogprobs } : {}) });
      c.sent = c.text.length;
      c.pendingLogprobs = [];
    }
    job.emit({ type: 'finish', choice: c.index, finishReason: reason, completionTokens: c.tokens });
    if (--job.open === 0) {
      this.running.delete(job.id);
      job.emit({ type: 'done', queueMs: job.queueMs, engineMs: Math.round(job.engineMs), promptTokens: job.prompts.reduce((a, p) => a + p.length, 0), completionTokens: job.completionTokens });
    }
  }

  private failAll(e: unknown): void {
    const msg = `engine error: ${(e as Error)?.message ?? String(e)}`;
    for (const job of this.running.values()) {
      for (const c of job.choices) if (!c.done) this.release(c);
      job.emit({ type: 'error', status: 500, message: msg, param: null });
    }
    this.running.clear();
    this.seqOwner.clear();
    this.kick();
  }
}
