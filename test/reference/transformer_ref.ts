// Float64 reference of the Qwen2/Llama decoder (one sequence at a time), written for clarity, to check the native
// engine's logits, log-probs, pooled states and (by finite differences) its gradients.
import type { ModelConfig, TensorMap } from '../../src/model/types.js';

export type RefParams = Map<string, Float64Array>;

export function toRefParams(w: TensorMap): RefParams {
  const out: RefParams = new Map();
  for (const [name, t] of w) out.set(name, Float64Array.from(t.data));
  return out;
}

export function refInvFreq(c: ModelConfig): number[] {
  const half = c.headDim / 2;
  const out: number[] = [];
  for (let i = 0; i < half; i++) {
    let f = 1 / Math.pow(c.ropeTheta, (2 * i) / c.headDim);
    const s = c.ropeScaling;
    if (s && s.type === 'llama3') {
      const lowWavelen = s.originalMaxPositionEmbeddings / s.lowFreqFactor;
      const highWavelen = s.originalMaxPositionEmbeddings / s.highFreqFactor;
      const wavelen = (2 * Math.PI) / f;
      if (wavelen > lowWavelen) f = f / s.factor;
      else if (wavelen >= highWavelen) {
        const smooth = (s.originalMaxPositionEmbeddings / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor);
        f = ((1 - smooth) * f) / s.factor + smooth * f;
      }
    }
    out.push(f);
  }
  return out;
}

function matvec(W: Float64Array, rows: number, cols: number, x: Float64Array, b?: Float64Array): Float64Array {
  const y = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let s = b ? b[r] : 0;
    for (let k = 0; k < cols; k++) s += W[r * cols + k] * x[k];
    y[r] = s;
  }
  return y;
}

function rmsnorm(x: Float64Array, w: Float64Array, eps: number): Float64Array {
  let ss = 0;
  for (const v of x) ss += v * v;
  const r = 1 / Math.sqrt(ss / x.length + eps);
  return x.map((v, i) => v * r * w[i]);
}

function rope(v: Float64Array, offset: number, hd: number, pos: number, invFreq: number[]): void {
  const half = hd / 2;
  for (let i = 0; i < half; i++) {
    const a = v[offset + i], b = v[offset + i + half];
    const c = Math.cos(pos * invFreq[i]), s = Math.sin(pos * invFreq[i]);
    v[offset + i] = a * c - b * s;
    v[offset + i + half] = b * c + a * s;
  }
}

const silu = (x: number) => x / (1 + Math.exp(-x));

/** logits [T][V] and final hidden states (after the final norm) [T][H] of one sequence */
export function refForward(c: ModelConfig, p: RefParams, tokens: ArrayLike<number>): { logits: Float64Array[]; hidden: Float64Array[] } {
  const H = c.hiddenSize, I = c.intermediateSize, nh = c.numHeads, nkv = c.numKvHeads, hd = c.headDim;
  const qd = nh * hd, kvd = nkv * hd, T = tokens.length, V = c.vocabSize;
  const get = (n: string) => {
    const t = p.get(n);
    if (!t) throw new Error(`reference: missing ${n}`);
    return t;
  };
  const opt = (n: string) => p.get(n);
  const invFreq = refInvFreq(c);
  const emb = get('model.embed_tokens.weight');
  let x: Float64Array[] = [];
  for (let t = 0; t < T; t++) x.push(emb.slice(tokens[t] * H, (tokens[t] + 1) * H));
  for (let l = 0; l < c.numLayers; l++) {
    const pre = `model.layers.${l}.`;
    const qs: Float64Array[] = [], ks: Float64Array[] = [], vs: Float64Array[] = [];
    for (let t = 0; t < T; t++) {
      const xn = rmsnorm(x[t], get(pre + 'input_layernorm.weight'), c.rmsNormEps);
      const q = matvec(get(pre + 'self_attn.q_proj.weight'), qd, H, xn, opt(pre + 'self_attn.q_proj.bias'));
      const k = matvec(get(pre + 'self_attn.k_proj.weight'), kvd, H, xn, opt(pre + 'self_attn.k_proj.bias'));
      const v = matvec(get(pre + 'self_attn.v_proj.weight'), kvd, H, xn, opt(pre + 'self_attn.v_proj.bias'));
      for (let h = 0; h < nh; h++) rope(q, h * hd, hd, t, invFreq);
      for (let h = 0; h < nkv; h++) rope(k, h * hd, hd, t, invFreq);
      qs.push(q);
      ks.push(k);
      vs.push(v);
    }
    const next: Float64Array[] = [];
    for (let t = 0; t < T; t++) {
      const o = new Float64Array(qd);
      for (let h = 0; h < nh; h++) {
        const g = Math.floor(h / (nh / nkv));
        const s: number[] = [];
        for (let j = 0; j <= t; j++) {
          let d = 0;
          for (let i = 0; i < hd; i++) d += qs[t][h * hd + i] * ks[j][g * hd + i];
          s.push(d / Math.sqrt(hd));
        }
        const m = Math.max(...s);
        const e = s.map((v) => Math.exp(v - m));
        const z = e.reduce((a, b) => a + b, 0);
        for (let j = 0; j <= t; j++) for (let i = 0; i < hd; i++) o[h * hd + i] += (e[j] / z) * vs[j][g * hd + i];
      }
      const attn = matvec(get(pre + 'self_attn.o_proj.weight'), H, qd, o, opt(pre + 'self_attn.o_proj.bias'));
      const x1 = x[t].map((v, i) => v + attn[i]);
      const xn2 = rmsnorm(x1, get(pre + 'post_attention_layernorm.weight'), c.rmsNormEps);
      const gate = matvec(get(pre + 'mlp.gate_proj.weight'), I, H, xn2, opt(pre + 'mlp.gate_proj.bias'));
      const up = matvec(get(pre + 'mlp.up_proj.weight'), I, H, xn2, opt(pre + 'mlp.up_proj.bias'));
      const act = gate.map((g, i) => silu(g) * up[i]);
      const down = matvec(get(pre + 'mlp.down_proj.weight'), H, I, act, opt(pre + 'mlp.down_proj.bias'));
      next.push(x1.map((v, i) => v + down[i]));
    }
    x = next;
  }
  const head = c.tieWordEmbeddings ? emb : get('lm_head.weight');
  const hidden = x.map((v) => rmsnorm(v, get('model.norm.weight'), c.rmsNormEps));
  const logits = hidden.map((h) => matvec(head, V, H, h));
  return { logits, hidden };
}

export function logSoftmax(z: Float64Array): Float64Array {
  const m = Math.max(...z);
  let s = 0;
  for (const v of z) s += Math.exp(v - m);
  const lse = m + Math.log(s);
  return z.map((v) => v - lse);
}

/** log-probs of the response tokens of one prompt+response sequence */
export function refResponseLogprobs(c: ModelConfig, p: RefParams, prompt: ArrayLike<number>, response: ArrayLike<number>): number[] {
  const tokens = [...Array.from(prompt), ...Array.from(response)];
  const { logits } = refForward(c, p, tokens);
  const out: number[] = [];
  for (let t = 0; t < response.length; t++) out.push(logSoftmax(logits[prompt.length - 1 + t])[response[t]]);
  return out;
}
