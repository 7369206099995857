// The contrastive kernel of CLIPO (docs/algorithm.md §2). The contrastive reward built from its
// per-anchor losses is RL logic and lives beside the CLIPO phase (src/rl/clipo.ts).
// Inputs are validated here with messages naming the field; the native side validates again at its boundary.
import { checkAllocatable, MIN_CONTRASTIVE_TEMPERATURE } from '../util/limits.js';
import { nativeFunction } from '../native.js';
import { resolveBackend, type BackendRequest } from './backend.js';

import {
  contrastiveDistances,
  contrastiveHeadKinds,
  contrastiveLevels,
  contrastiveLossTypes,
  tokenDtypes,
  type ContrastiveDistance,
  type ContrastiveHeadKind,
  type ContrastiveLevel,
  type ContrastiveLossType,
  type MaskedLabel,
  type TokenDtype,
} from './variants.js';

export { contrastiveLossTypes, contrastiveLevels, contrastiveDistances, contrastiveHeadKinds };
export type { ContrastiveLossType, ContrastiveLevel, ContrastiveDistance, ContrastiveHeadKind };

export interface ContrastiveLossOptions {
  /** already-pooled representations [B*H]; or give tokens + mask + length */
  pooled?: Float32Array;
  /** token-level hidden states [B*L*H]: Float32Array, or Uint16Array of raw bf16 bits with dtype 'bf16' */
  tokens?: Float32Array | Uint16Array;
  dtype?: TokenDtype;
  /** response mask [B*L], 1 = response token; every response needs at least one */
  mask?: Uint8Array;
  batch: number;
  length?: number;
  hiddenSize: number;
  outSize: number;
  head?: ContrastiveHeadKind;
  /** linear head W [D*H], row-major like nn.Linear.weight */
  weight?: Float32Array;
  /** mlp head: W1 [H*H] and W2 [D*H]; u = W2 relu(W1 h) */
  weight1?: Float32Array;
  weight2?: Float32Array;
  /** [B] 0/1 */
  correct: Uint8Array;
  /** [B] group (prompt) id per response, >= 0 */
  group: Int32Array;
  lossType: ContrastiveLossType;
  level: ContrastiveLevel;
  distance: ContrastiveDistance;
  temperature: number;
  /** 0: correct anchors only, -1: all anchors, 1: incorrect anchors only */
  maskedLabel: MaskedLabel;
  skipTrivial: boolean;
  eps?: number;
  /** InfoNCE positive per anchor ([B], -1 none); otherwise drawn by a counter-based hash of (seed, anchor) */
  positives?: Int32Array;
  seed?: number;
  /** compute the weight gradients (default true) */
  grad?: boolean;
  /** CPU only: OpenMP threads for this call (default: all) */
  threads?: number;
  backend?: BackendRequest;
}

export interface ContrastiveLossResult {
  /** [B] per-anchor loss L_i, 0 for masked anchors */
  perSample: Float32Array;
  /** batch loss sum_i L_i / (valid + eps), 0 when no anchor is valid */
  loss: number;
  /** [B*D] unit-norm head outputs */
  embeddings: Float32Array;
  /** [D*H] d loss / d W (linear head) */
  gradWeight?: Float32Array;
  /** [H*H] and [D*H] (mlp head) */
  gradWeight1?: Float32Array;
  gradWeight2?: Float32Array;
  /** the weight gradients in the order of the head's weights: [gradWeight] or [gradWeight1, gradWeight2] */
  gradients?: Float32Array[];
  /** [B] InfoNCE positive used per anchor, -1 where none */
  positives: Int32Array;
  validAnchors: number;
  /** the backend that ran */
  backend: 'cpu' | 'cuda';
}

type NativeContrastive = (o: object) => Omit<ContrastiveLossResult, 'backend'>;

function fail(msg: string): never {
  throw new Error(`contrastiveLoss: ${msg}`);
}

function checkInt(name: string, v: unknown, min: number, max = 2 ** 31 - 1): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    fail(`${name}: expected an integer in [${min}, ${max}], got ${String(v)}`);
  }
  return v;
}

function checkArray(name: string, v: unknown, ctor: { name: string; prototype: object }, length: number): void {
  // by tag rather than instanceof: arrays from another realm (a vm context, the addon's results) are fine too
  if (Object.prototype.toString.call(v) !== `[object ${ctor.name}]`) {
    fail(`${name}: expected a ${ctor.name}${v === undefined ? ' (missing)' : `, got ${(v as object)?.constructor?.name ?? typeof v}`}`);
  }
  const n = (v as ArrayLike<number>).length;
  if (n !== length) fail(`${name}: expected length ${length}, got ${n}`);
}

function checkEnum<T extends string>(name: string, v: unknown, allowed: readonly T[]): T {
  if (typeof v !== 'string' || !allowed.includes(v as T)) {
    fail(`${name}: unknown value '${String(v)}' (expected one of: ${allowed.join(', ')})`);
  }
  return v as T;
}

/** Same-group and positive-set rules of docs/algorithm.md §2 (j != i is the caller's job). */
export function inPositiveSet(level: ContrastiveLevel, gi: number, gj: number, yi: number, yj: number): boolean {
  const same = (yi !== 0) === (yj !== 0);
  return level === 'batch' ? same : gi === gj && same;
}
export function inAllSet(level: ContrastiveLevel, gi: number, gj: number): boolean {
  return level !== 'group' || gi === gj;
}

/** Validates the options; throws an Error naming the offending field. */
export function validateContrastiveOptions(o: ContrastiveLossOptions): void {
  if (typeof o !== 'object' || o === null) fail('expected an options object');
  const B = checkInt('batch', o.batch, 1);
  const H = checkInt('hiddenSize', o.hiddenSize, 1);
  const D = checkInt('outSize', o.outSize, 1);
  const head = o.head === undefined ? 'linear' : checkEnum('head', o.head, contrastiveHeadKinds);
  checkEnum('lossType', o.lossType, contrastiveLossTypes);
  const level = checkEnum('level', o.level, contrastiveLevels);
  checkEnum('distance', o.distance, contrastiveDistances);
  if (typeof o.temperature !== 'number' || !Number.isFinite(o.temperature) || !(o.temperature >= MIN_CONTRASTIVE_TEMPERATURE)) {
    fail(`temperature: expected a finite number >= ${MIN_CONTRASTIVE_TEMPERATURE}, got ${String(o.temperature)}`);
  }
  if (o.eps !== undefined && (typeof o.eps !== 'number' || !Number.isFinite(o.eps) || !(o.eps > 0))) {
    fail(`eps: expected a finite number > 0, got ${String(o.eps)}`);
  }
  if (o.maskedLabel !== -1 && o.maskedLabel !== 0 && o.maskedLabel !== 1) {
    fail(`maskedLabel: expected -1, 0 or 1, got ${String(o.maskedLabel)}`);
  }
  if (typeof o.skipTrivial !== 'boolean') fail(`skipTrivial: expected a boolean, got ${String(o.skipTrivial)}`);
  if (o.grad !== undefined && typeof o.grad !== 'boolean') fail(`grad: expected a boolean, got ${String(o.grad)}`);
  if (o.seed !== undefined) checkInt('seed', o.seed, 0, 2 ** 32 - 1);
  if (o.threads !== undefined) checkInt('threads', o.threads, 0, 4096);
  if (o.backend !== undefined) checkEnum('backend', o.backend, ['cpu', 'cuda', 'auto'] as const);

  // the outputs and the kernel's scratch (B x B similarities, B x D projections) must fit before anything runs
  const grad = o.grad ?? true;
  const outputs = 2 * B + B * D + (grad ? D * H + (head === 'mlp' ? H * H : 0) : 0);
  const scratch = 2 * B * B + 3 * B * D + (head === 'mlp' ? 3 : 1) * B * H;
  checkAllocatable(4 * (outputs + scratch), 'contrastiveLoss');

  const hasPooled = o.pooled !== undefined, hasTokens = o.tokens !== undefined;
  if (hasPooled === hasTokens) fail('pooled/tokens: give exactly one of them');
  if (hasPooled) {
    checkArray('pooled', o.pooled, Float32Array, B * H);
    for (let k = 0; k < B * H; k++) if (!Number.isFinite(o.pooled![k]!)) fail(`pooled: non-finite value at index ${k}`);
  } else {
    const L = checkInt('length', o.length, 1);
    const dtype = o.dtype === undefined ? 'f32' : checkEnum('dtype', o.dtype, tokenDtypes);
    checkArray('tokens', o.tokens, dtype === 'bf16' ? Uint16Array : Float32Array, B * L * H);
    checkArray('mask', o.mask, Uint8Array, B * L);
    const mask = o.mask!;
    for (let i = 0; i < B; i++) {
      let n = 0;
      for (let t = 0; t < L; t++) {
        const m = mask[i * L + t]!;
        if (m > 1) fail(`mask: values must be 0 or 1, got ${m} at index ${i * L + t}`);
        n += m;
      }
      if (n === 0) fail(`mask: response ${i} has no response token (an all-masked response has no mean)`);
    }
  }
  if (head === 'linear') {
    checkArray('weight', o.weight, Float32Array, D * H);
  } else {
    checkArray('weight1', o.weight1, Float32Array, H * H);
    checkArray('weight2', o.weight2, Float32Array, D * H);
  }
  checkArray('correct', o.correct, Uint8Array, B);
  checkArray('group', o.group, Int32Array, B);
  for (let i = 0; i < B; i++) {
    if (o.correct[i]! > 1) fail(`correct: values must be 0 or 1, got ${o.correct[i]} at index ${i}`);
    if (o.group[i]! < 0) fail(`group: ids must be >= 0, got ${o.group[i]} at index ${i}`);
  }
  if (o.positives !== undefined) {
    checkArray('positives', o.positives, Int32Array, B);
    for (let i = 0; i < B; i++) {
      const j = o.positives[i]!;
      if (j === -1) continue;
      const ok = j >= 0 && j < B && j !== i && inAllSet(level, o.group[i]!, o.group[j]!) &&
        inPositiveSet(level, o.group[i]!, o.group[j]!, o.correct[i]!, o.correct[j]!);
      if (!ok) fail(`positives: entry ${i} = ${j} is not -1 and not in the positive set P(${i})`);
    }
  }
}

/**
 * Fused pool -> project -> normalize -> similarity -> contrastive loss, forward and backward (docs/algorithm.md §2).
 * Give either `pooled` [B*H] or `tokens` [B*L*H] with `mask` [B*L] (pooling is then fused into the same pass).
 */
export function contrastiveLoss(o: ContrastiveLossOptions): ContrastiveLossResult {
  validateContrastiveOptions(o);
  const backend = resolveBackend(o.backend, 'contrastiveLoss: backend');
  const fn = nativeFunction<NativeContrastive>(backend === 'cuda' ? 'contrastiveLossCuda' : 'contrastiveLoss');
  return withGradients({ ...fn(o), backend });
}

function withGradients(r: ContrastiveLossResult): ContrastiveLossResult {
  const g = r.gradWeight ? [r.gradWeight] : r.gradWeight1 && r.gradWeight2 ? [r.gradWeight1, r.gradWeight2] : undefined;
  return g ? { ...r, gradients: g } : r;
}

/** The unfused CPU implementation of the same math (separate passes, full intermediates): the benchmark baseline. */
export function contrastiveLossUnfused(o: ContrastiveLossOptions): ContrastiveLossResult {
  validateContrastiveOptions(o);
  return withGradients({ ...nativeFunction<NativeContrastive>('contrastiveLossUnfused')(o), backend: 'cpu' });
}
