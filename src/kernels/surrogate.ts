// The clipped surrogate policy loss (docs/algorithm.md §3), forward and backward in one native call:
// mode 'token' (GRPO / DAPO), 'sequence' (GSPO), 'geo_mean' (GMPO), optional low-variance KL to a reference.
// Conventions (weights, clamps, metric definitions) are documented in docs/kernels.md, "Surrogate kernel".
import { nativeFunction } from '../native.js';
import { resolveBackend, type Backend, type BackendRequest } from './backend.js';

import { klTypes, policyLossModes, surrogateAggs, surrogateModes, isVariant, type KlType, type SurrogateAgg, type SurrogateMode } from './variants.js';

export { surrogateModes, surrogateAggs };
export type { SurrogateMode, SurrogateAgg };

export interface SurrogateInput {
  /** log pi_theta of the response tokens, [B*T] row-major */
  logp: Float32Array;
  /** log pi_old, [B*T] */
  oldLogp: Float32Array;
  /** log pi_ref, [B*T]; enables the KL term */
  refLogp?: Float32Array;
  /** sequence advantages A_i, [B] */
  advantages: Float32Array;
  /** response mask, [B*T], nonzero = response token */
  mask: Uint8Array;
  batch: number;
  length: number;
  mode: SurrogateMode;
  /** token/sequence: ratio >= 1 - clipLow; geo_mean: log-ratio >= -clipLow */
  clipLow: number;
  /** token/sequence: ratio <= 1 + clipHigh; geo_mean: log-ratio <= clipHigh */
  clipHigh: number;
  /** dual-clip bound c > 1 for A < 0 (mode 'token' only) */
  dualClip?: number;
  agg: SurrogateAgg;
  /** coefficient of the KL term (needs refLogp); default 0 */
  klCoef?: number;
  klType?: KlType;
  /** 'cpu' | 'cuda' | 'auto' (default: the best available) */
  backend?: BackendRequest;
  /** reuse this [B*T] array for gradLogp instead of allocating one */
  out?: Float32Array;
  /** CPU only: OpenMP threads for this call (default: all) */
  threads?: number;
}

export interface SurrogateOutput {
  /** pgLoss + klCoef * klLoss */
  loss: number;
  /** d loss / d logp per token, 0 on masked tokens, [B*T] */
  gradLogp: Float32Array;
  /** fraction of response tokens with A > 0 whose upper clip is active (gradient cut) */
  clipFracHigh: number;
  /** fraction of response tokens with A < 0 whose lower clip is active */
  clipFracLow: number;
  /** mean over response tokens of -(logp - oldLogp) (verl's ppo_kl) */
  approxKl: number;
  /** the policy part of the loss */
  pgLoss: number;
  /** fraction of response tokens with A < 0 where the dual clip is active (verl's pg_clipfrac_lower) */
  dualClipFrac: number;
  /** aggregated low_var_kl to the reference, before klCoef (only when refLogp is given) */
  klLoss?: number;
  /** number of response tokens N and of non-empty responses */
  tokens: number;
  sequences: number;
  backend: Backend;
}

type NativeSurrogate = (o: object) => Omit<SurrogateOutput, 'backend'>;

function checkInt(name: string, v: unknown, min: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > 2 ** 31 - 1) {
    throw new Error(`surrogateLoss: ${name} must be an integer >= ${min}, got ${String(v)}`);
  }
  return v;
}

function checkArray(name: string, v: unknown, ctor: Float32ArrayConstructor | Uint8ArrayConstructor, length: number, optional = false): void {
  if (v === undefined && optional) return;
  // by tag rather than instanceof: typed arrays from another realm (a vm context, e.g. jest's) are fine too
  if (Object.prototype.toString.call(v) !== `[object ${ctor.name}]`) {
    throw new Error(`surrogateLoss: ${name} must be a ${ctor.name}, got ${v === undefined ? 'nothing' : (v as object)?.constructor?.name ?? typeof v}`);
  }
  const n = (v as ArrayLike<number>).length;
  if (n !== length) throw new Error(`surrogateLoss: ${name} must have length ${length}, got ${n}`);
}

function checkNumber(name: string, v: unknown, ok: (x: number) => boolean, rule: string): number {
  if (typeof v !== 'number' || Number.isNaN(v) || !ok(v)) throw new Error(`surrogateLoss: ${name} must be ${rule}, got ${String(v)}`);
  return v;
}

function overlapping(a: ArrayBufferView, b: ArrayBufferView | undefined): boolean {
  if (b === undefined || a.buffer !== b.buffer) return false;
  return a.byteOffset < b.byteOffset + b.byteLength && b.byteOffset < a.byteOffset + a.byteLength;
}

/** Validates everything the native side needs, with messages that name the field. */
export function validateSurrogateInput(o: SurrogateInput): void {
  if (typeof o !== 'object' || o === null) throw new Error('surrogateLoss: expected an options object');
  const B = checkInt('batch', o.batch, 1);
  const T = checkInt('length', o.length, 1);
  if (!isVariant(surrogateModes, o.mode)) throw new Error(`surrogateLoss: mode must be one of ${surrogateModes.join(', ')}, got ${JSON.stringify(o.mode)}`);
  if (!isVariant(surrogateAggs, o.agg)) throw new Error(`surrogateLoss: agg must be one of ${surrogateAggs.join(', ')}, got ${JSON.stringify(o.agg)}`);
  checkArray('logp', o.logp, Float32Array, B * T);
  checkArray('oldLogp', o.oldLogp, Float32Array, B * T);
  checkArray('refLogp', o.refLogp, Float32Array, B * T, true);
  checkArray('advantages', o.advantages, Float32Array, B);
  checkArray('mask', o.mask, Uint8Array, B * T);
  checkArray('out', o.out, Float32Array, B * T, true);
  if (o.out !== undefined) {
    // the kernel writes `out` while it reads the inputs: a shared byte range would give silently wrong results
    for (const name of ['logp', 'oldLogp', 'refLogp', 'advantages', 'mask'] as const) {
      if (overlapping(o.out, o[name])) throw new Error(`surrogateLoss: out must not overlap ${name} (give a separate array)`);
    }
  }
  const m = policyLossModes[o.mode];
  const logSpace = m.clipSpace === 'log_ratio';
  checkNumber('clipLow', o.clipLow, (x) => x >= 0 && x < m.clipLowBelow, logSpace ? `a number in [0, ${m.clipLowBelow})` : `a number in [0, ${m.clipLowBelow}) (the ratio bound 1 - clipLow must stay positive)`);
  checkNumber('clipHigh', o.clipHigh, (x) => x >= 0 && x <= m.clipHighMax, `a number in [0, ${m.clipHighMax}]`);
  if (o.dualClip !== undefined) {
    checkNumber('dualClip', o.dualClip, (x) => x > 1 && Number.isFinite(x), 'a finite number > 1 (the dual-clip bound c)');
    if (!m.dualClip) throw new Error(`surrogateLoss: dualClip only applies to mode 'token' (got mode '${o.mode}')`);
  }
  if (o.klCoef !== undefined) {
    checkNumber('klCoef', o.klCoef, (x) => x >= 0 && Number.isFinite(x), 'a finite number >= 0');
    if (o.klCoef !== 0 && o.refLogp === undefined) throw new Error('surrogateLoss: klCoef needs refLogp (the reference policy log-probs)');
  }
  if (o.threads !== undefined) checkNumber('threads', o.threads, (x) => Number.isInteger(x) && x >= 1 && x <= 4096, 'an integer in [1, 4096]');
  if (o.klType !== undefined && !isVariant(klTypes, o.klType)) throw new Error(`surrogateLoss: klType must be ${klTypes.map((n) => `'${n}'`).join(' or ')}, got ${JSON.stringify(o.klType)}`);
}

/** The clipped surrogate loss and d loss / d logp (see SurrogateInput / SurrogateOutput). */
export function surrogateLoss(o: SurrogateInput): SurrogateOutput {
  validateSurrogateInput(o);
  const backend = resolveBackend(o.backend, 'surrogateLoss: backend');
  const fn = nativeFunction<NativeSurrogate>(backend === 'cuda' ? 'surrogateLossCuda' : 'surrogateLossCpu');
  const r = fn(o);
  const out: SurrogateOutput = { ...r, backend };
  if (o.refLogp === undefined) delete out.klLoss;
  return out;
}

/** The same math as separate passes with intermediate buffers (eager-style); for benchmarks and tests only. */
export function surrogateLossUnfused(o: SurrogateInput): Omit<SurrogateOutput, 'backend'> {
  validateSurrogateInput(o);
  return nativeFunction<NativeSurrogate>('surrogateLossUnfused')(o);
}
