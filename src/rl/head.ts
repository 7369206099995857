// The CLIPO contrastive head g(h) = normalize(W h) (linear, W ∈ R^{D×H}, no bias) or normalize(W2 relu(W1 h))
// (mlp, W1 ∈ R^{H×H}, W2 ∈ R^{D×H}), with its own AdamW (torch defaults: betas 0.9/0.999, eps 1e-8; lr 1e-3,
// weight decay 0.01 from the paper). It is small (D·H values), so it lives in TypeScript; the contrastive kernel
// takes its weights and returns their gradients.
import type { TensorMap } from '../model/types.js';
import { Rng } from '../util/rng.js';
import type { ContrastiveHeadKind } from '../kernels/variants.js';


export interface HeadOptimOptions {
  lr: number;
  weightDecay: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
}

export class ContrastiveHead {
  readonly kind: ContrastiveHeadKind;
  readonly hiddenSize: number;
  readonly outSize: number;
  /** linear: [W (D×H)]; mlp: [W1 (H×H), W2 (D×H)], row-major like nn.Linear.weight */
  readonly weights: Float32Array[];
  /** AdamW moments, one per weight tensor */
  readonly m: Float32Array[];
  readonly v: Float32Array[];
  step = 0;

  private constructor(kind: ContrastiveHeadKind, hiddenSize: number, outSize: number, weights: Float32Array[]) {
    this.kind = kind;
    this.hiddenSize = hiddenSize;
    this.outSize = outSize;
    this.weights = weights;
    this.m = weights.map((w) => new Float32Array(w.length));
    this.v = weights.map((w) => new Float32Array(w.length));
  }

  /** nn.Linear's default init: U(−1/√fan_in, 1/√fan_in) per weight (fan_in = H for both layers). */
  static init(kind: ContrastiveHeadKind, hiddenSize: number, outSize: number, seed: number): ContrastiveHead {
    const rng = new Rng(seed);
    const bound = 1 / Math.sqrt(hiddenSize);
    const uniform = (n: number): Float32Array => {
      const w = new Float32Array(n);
      for (let i = 0; i < n; i++) w[i] = (2 * rng.next() - 1) * bound;
      return w;
    };
    const weights = kind === 'linear' ? [uniform(outSize * hiddenSize)] : [uniform(hiddenSize * hiddenSize), uniform(outSize * hiddenSize)];
    return new ContrastiveHead(kind, hiddenSize, outSize, weights);
  }

  /** The weight arguments of contrastiveLoss for this head. */
  kernelWeights(): { head: ContrastiveHeadKind; weight?: Float32Array; weight1?: Float32Array; weight2?: Float32Array } {
    return this.kind === 'linear' ? { head: 'linear', weight: this.weights[0] } : { head: 'mlp', weight1: this.weights[0], weight2: this.weights[1] };
  }

  /**
   * One AdamW step (decoupled decay, torch.optim.AdamW):
   *   p ← p − lr·wd·p;  m ← β1 m + (1−β1) g;  v ← β2 v + (1−β2) g²;  p ← p − lr · (m/(1−β1^t)) / (√(v/(1−β2^t)) + eps)
   */
  adamwStep(grads: Float32Array[], o: HeadOptimOptions): void {
    if (grads.length !== this.weights.length) throw new Error(`head step: expected ${this.weights.length} gradient tensors, got ${grads.length}`);
    const b1 = o.beta1 ?? 0.9;
    const b2 = o.beta2 ?? 0.999;
    const eps = o.eps ?? 1e-8;
    for (let k = 0; k < grads.length; k++) {
      if (grads[k]!.length !== this.weights[k]!.length) throw new Error(`head step: gradient ${k} has ${grads[k]!.length} values, weight has ${this.weights[k]!.length}`);
      for (const g of grads[k]!) if (!Number.isFinite(g)) throw new Error('head step: non-finite gradient of the contrastive loss');
    }
    this.step += 1;
    const c1 = 1 - Math.pow(b1, this.step);
    const c2 = 1 - Math.pow(b2, this.step);
    const decay = 1 - o.lr * o.weightDecay;
    for (let k = 0; k < grads.length; k++) {
      const w = this.weights[k]!, g = grads[k]!, m = this.m[k]!, v = this.v[k]!;
      for (let i = 0; i < w.length; i++) {
        const gi = g[i]!;
        const mi = b1 * m[i]! + (1 - b1) * gi;
        const vi = b2 * v[i]! + (1 - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        w[i] = w[i]! * decay - (o.lr * (mi / c1)) / (Math.sqrt(vi / c2) + eps);
      }
    }
  }

  /** Embeddings without the kernel (for reports): z = normalize(head(h)) per row of pooled [B×H]. */
  embed(pooled: Float32Array, batch: number): Float32Array {
    const H = this.hiddenSize, D = this.outSize;
    const out = new Float32Array(batch * D);
    const hid = new Float64Array(H);
    for (let b = 0; b < batch; b++) {
      const h = pooled.subarray(b * H, (b + 1) * H);
      let x: ArrayLike<number> = h;
      if (this.kind === 'mlp') {
        const W1 = this.weights[0]!;
        for (let r = 0; r < H; r++) {
          let s = 0;
          for (let c = 0; c < H; c++) s += W1[r * H + c]! * h[c]!;
          hid[r] = s > 0 ? s : 0;
        }
        x = hid;
      }
      const W = this.weights[this.weights.length - 1]!;
      let norm = 0;
      for (let r = 0; r < D; r++) {
        let s = 0;
        for (let c = 0; c < H; c++) s += W[r * H + c]! * x[c]!;
        out[b * D + r] = s;
        norm += s * s;
      }
      const inv = 1 / Math.max(Math.sqrt(norm), 1e-12);
      for (let r = 0; r < D; r++) out[b * D + r]! *= inv;
    }
    return out;
  }

  /** Weights and optimizer state by name, for a safetensors checkpoint. */
  toTensors(): { weights: TensorMap; optimizer: TensorMap } {
    const names = this.kind === 'linear' ? ['weight'] : ['weight1', 'weight2'];
    const shapes = this.kind === 'linear' ? [[this.outSize, this.hiddenSize]] : [[this.hiddenSize, this.hiddenSize], [this.outSize, this.hiddenSize]];
    const weights: TensorMap = new Map();
    const optimizer: TensorMap = new Map();
    names.forEach((n, k) => {
      weights.set(n, { shape: shapes[k]!, data: this.weights[k]! });
      optimizer.set(`${n}.exp_avg`, { shape: shapes[k]!, data: this.m[k]! });
      optimizer.set(`${n}.exp_avg_sq`, { shape: shapes[k]!, data: this.v[k]! });
    });
    return { weights, optimizer };
  }

  static fromTensors(kind: ContrastiveHeadKind, hiddenSize: number, outSize: number, weights: TensorMap, optimizer: TensorMap | null, step: number): ContrastiveHead {
    const names = kind === 'linear' ? ['weight'] : ['weight1', 'weight2'];
    const sizes = kind === 'linear' ? [outSize * hiddenSize] : [hiddenSize * hiddenSize, outSize * hiddenSize];
    const get = (map: TensorMap, n: string, size: number): Float32Array => {
      const t = map.get(n);
      if (!t) throw new Error(`contrastive head checkpoint: tensor '${n}' is missing`);
      if (t.data.length !== size) throw new Error(`contrastive head checkpoint: tensor '${n}' has ${t.data.length} values, expected ${size} (head ${kind}, H ${hiddenSize}, D ${outSize})`);
      return Float32Array.from(t.data);
    };
    const head = new ContrastiveHead(kind, hiddenSize, outSize, names.map((n, k) => get(weights, n, sizes[k]!)));
    if (optimizer) {
      names.forEach((n, k) => {
        head.m[k]!.set(get(optimizer, `${n}.exp_avg`, sizes[k]!));
        head.v[k]!.set(get(optimizer, `${n}.exp_avg_sq`, sizes[k]!));
      });
      head.step = step;
    }
    return head;
  }
}
