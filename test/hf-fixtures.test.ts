// The engine against Hugging Face transformers: tiny random Qwen2/Llama directories made by
// scripts/reference/make_hf_fixtures.py (float64 reference outputs), loaded through loadModelDir (BF16/F16/F32
// safetensors) and run through the Engine: logits, log-probs, pooled final hidden states, gradients, tokenizer ids.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { Engine } from '../src/engine/engine.js';
import { loadModelDir } from '../src/model/hfdir.js';
import { readSafetensors } from '../src/model/safetensors.js';
import { packageRoot } from '../src/native.js';

const root = path.join(packageRoot, 'test', 'fixtures', 'hf');
const fixtures = existsSync(root) ? readdirSync(root).filter((d) => existsSync(path.join(root, d, 'reference.json'))).sort() : [];

interface Reference {
  name: string;
  architecture: string;
  storage_dtype: string;
  tokens: number[][];
  grad_tensors: string[];
  tokenizer: { text: string; ids: number[]; decoded: string; chat: Array<{ role: string; content: string }>; chat_text: string; chat_ids: number[] };
}

/** max |a - b| relative to max(1, max |b|): fp32 against a float64 reference. */
function maxRelDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let scale = 1;
  for (let i = 0; i < b.length; i++) scale = Math.max(scale, Math.abs(b[i]!));
  let d = 0;
  for (let i = 0; i < b.length; i++) d = Math.max(d, Math.abs(a[i]! - b[i]!));
  return d / scale;
}

if (fixtures.length === 0) {
  test.skip(`HF reference fixtures are absent (${root}); make them with python scripts/reference/make_hf_fixtures.py where torch + transformers are installed`, () => {});
} else describe.each(fixtures)('HF fixture %s', (name) => {
  const dir = path.join(root, name);
  const ref = JSON.parse(readFileSync(path.join(dir, 'reference.json'), 'utf8')) as Reference;
  const out = readSafetensors(path.join(dir, 'reference.safetensors')).tensors;
  const B = ref.tokens.length;
  const T = ref.tokens[0]!.length;
  let engine: Engine;
  let model: ReturnType<typeof loadModelDir>;

  beforeAll(() => {
    model = loadModelDir(path.join(dir, 'model'));
    engine = Engine.create(model.config, model.weights, { threads: 2 });
  });
  afterAll(() => engine?.dispose());

  test('config and storage dtype as written by transformers', () => {
    expect(model.config.hfArchitecture).toBe(ref.architecture);
    const stored = { bfloat16: 'BF16', float16: 'F16', float32: 'F32' }[ref.storage_dtype];
    expect(new Set(model.dtypes.values())).toEqual(new Set([stored]));
  });

  test('logits match transformers (float64) within fp32 tolerance', () => {
    const V = model.config.vocabSize;
    const logits = engine.logits(Int32Array.from(ref.tokens.flat()), B, T);
    const want = out.get('logits')!;
    expect(want.shape).toEqual([B, T, V]);
    expect(maxRelDiff(logits, want.data)).toBeLessThan(2e-5);
  });

  test('score: log-probs and pooled final hidden states', () => {
    const H = model.config.hiddenSize;
    const r = engine.score(
      { sequences: ref.tokens.map((t) => ({ prompt: Int32Array.of(t[0]!), response: Int32Array.from(t.slice(1)) })) },
      { pooled: true },
    );
    expect(r.length).toBe(T - 1);
    expect(maxRelDiff(r.logprobs, out.get('logprobs')!.data)).toBeLessThan(2e-5);
    // pooled = mean of the final hidden states at the response tokens' positions (1..T-1)
    const hidden = out.get('hidden')!.data;
    const want = new Float64Array(B * H);
    for (let b = 0; b < B; b++) {
      for (let t = 1; t < T; t++) for (let h = 0; h < H; h++) want[b * H + h]! += hidden[(b * T + t) * H + h]! / (T - 1);
    }
    expect(maxRelDiff(r.pooled!, want)).toBeLessThan(2e-5);
  });

  test('gradients of sum(w * logprobs) match torch autograd', () => {
    const w = out.get('grad_weights')!.data;
    engine.zeroGrad();
    engine.forwardTrain({ sequences: ref.tokens.map((t) => ({ prompt: Int32Array.of(t[0]!), response: Int32Array.from(t.slice(1)) })) });
    engine.backward(Float32Array.from(w));
    const grads = engine.exportGradients()!;
    for (const n of ref.grad_tensors) {
      const want = out.get(`grad.${n}`)!;
      const got = grads.get(n);
      expect(got?.shape).toEqual(want.shape);
      const d = maxRelDiff(got!.data, want.data);
      if (d >= 1e-4) throw new Error(`gradient of ${n}: max relative difference ${d}`);
    }
  });

  test("the byte tokenizer gives transformers' ids for text and chat", () => {
    const tok = model.tokenizer!;
    expect(tok.encode(ref.tokenizer.text)).toEqual(ref.tokenizer.ids);
    expect(tok.decode(ref.tokenizer.ids)).toBe(ref.tokenizer.decoded);
    expect(tok.applyChatTemplate(ref.tokenizer.chat, { addGenerationPrompt: true })).toBe(ref.tokenizer.chat_text);
    expect(tok.encodeChat(ref.tokenizer.chat)).toEqual(ref.tokenizer.chat_ids);
  });
});
