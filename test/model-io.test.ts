// Model-directory I/O: safetensors (round trips in f32/bf16/f16, shards, corrupt headers), config.json validation,
// init -> save -> load round trips, and the errors a user sees for broken directories.
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, existsSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { modelConfigToJson, parseModelConfig } from '../src/model/config.js';
import { Engine } from '../src/engine/engine.js';
import { loadModelDir, openModelDir, saveModelDir } from '../src/model/hfdir.js';
import { fillNormal, initConfigJson, initModel, type InitShape } from '../src/model/init.js';
import { f32ToBf16Bits, f32ToF16Bits, readSafetensors, readSafetensorsDir, writeSafetensors, writeSafetensorsDir } from '../src/model/safetensors.js';
import { expectedTensors, parameterCount } from '../src/model/tensors.js';
import { byteTokenizerDir } from '../src/model/tokenizer.js';
import type { Tensor } from '../src/model/types.js';
import { Rng } from '../src/util/rng.js';

const tmpRoot = mkdtempSync(path.join(os.tmpdir(), 'clipo-model-io-'));
afterAll(() => rmSync(tmpRoot, { recursive: true, force: true }));
let counter = 0;
const tmp = (name = 'x') => path.join(tmpRoot, `${name}-${counter++}`);

function randomTensor(rng: Rng, shape: number[], scale = 1): Tensor {
  const n = shape.reduce((a, d) => a * d, 1);
  const data = new Float32Array(n);
  // a spread of magnitudes (1e-6 .. 1e3), both signs
  for (let i = 0; i < n; i++) data[i] = scale * rng.normal() * 10 ** (rng.int(10) - 6);
  return { shape, data };
}

// float64 references for the rounding: the nearest representable value, ties to the even significand.
function nearestRepresentable(x: number, bitsOf: (v: number) => number, valueOf: (bits: number) => number): number {
  const b = bitsOf(x);
  let best = valueOf(b);
  for (const cand of [b - 1, b + 1]) {
    const v = valueOf(cand & 0xffff);
    if (!Number.isFinite(v)) continue;
    const d = Math.abs(v - x);
    const bd = Math.abs(best - x);
    if (d < bd || (d === bd && (cand & 1) === 0)) best = v;
  }
  return best;
}
const bf16Value = (bits: number) => new Float32Array(new Uint32Array([bits << 16]).buffer)[0]!;
const truncBf16 = (x: number) => new Uint32Array(new Float32Array([x]).buffer)[0]! >>> 16;
function f16Value(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  return e === 0 ? s * m * 2 ** -24 : e === 31 ? (m ? NaN : s * Infinity) : s * (1 + m / 1024) * 2 ** (e - 15);
}

describe('safetensors', () => {
  const rng = new Rng(11);

  test('f32 round trip is exact, with metadata and header alignment', () => {
    const f = tmp('a') + '.safetensors';
    const tensors: Array<[string, Tensor]> = [
      ['w', randomTensor(rng, [7, 5])],
      ['b', randomTensor(rng, [3])],
      ['scalar', { shape: [], data: new Float32Array([rng.normal()]) }],
      ['empty', { shape: [0, 4], data: new Float32Array(0) }],
    ];
    writeSafetensors(f, tensors);
    const buf = readFileSync(f);
    const n = Number(buf.readBigUInt64LE(0));
    expect((8 + n) % 8).toBe(0);
    const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
    expect(header.__metadata__).toEqual({ format: 'pt' });
    expect(header.w).toEqual({ dtype: 'F32', shape: [7, 5], data_offsets: [0, 140] });
    const back = readSafetensors(f);
    expect(back.metadata.format).toBe('pt');
    for (const [name, t] of tensors) {
      expect(back.tensors.get(name)!.shape).toEqual(t.shape);
      expect(Array.from(back.tensors.get(name)!.data)).toEqual(Array.from(t.data));
      expect(back.dtypes.get(name)).toBe('F32');
    }
  });

  test('bf16 write rounds to nearest even; reading widens exactly', () => {
    const f = tmp('b') + '.safetensors';
    const t = randomTensor(rng, [4001]);
    // ties: values exactly halfway between two bf16 numbers (low 16 bits = 0x8000)
    const ties = new Float32Array(new Uint32Array([0x3f808000, 0x3f818000, 0xbf808000]).buffer);
    const special = new Float32Array([1 / 3, ...ties, 0, -0, Infinity, -Infinity, 1e-40, 3.4e38]);
    const data = new Float32Array([...t.data, ...special]);
    writeSafetensors(f, [['x', { shape: [data.length], data }]], { dtype: 'BF16' });
    const back = readSafetensors(f).tensors.get('x')!.data;
    for (let i = 0; i < t.data.length; i++) expect(back[i]).toBe(nearestRepresentable(data[i]!, truncBf16, bf16Value));
    const s = Array.from(back.subarray(t.data.length));
    expect(s.slice(0, 4)).toEqual([0.333984375, 1.0, bf16Value(0x3f82), -1.0]); // 1/3 -> 0x3EAB; ties go to the even one
    expect(Object.is(s[5], -0)).toBe(true);
    expect(s.slice(6, 8)).toEqual([Infinity, -Infinity]);
    expect(s[8]).toBe(nearestRepresentable(1e-40, truncBf16, bf16Value)); // subnormal
    expect(s[9]).toBe(Infinity); // above the largest bf16 (3.3895e38) by more than half an ulp
    expect(Number.isNaN(bf16Value(f32ToBf16Bits(0x7fc00001)))).toBe(true); // NaN stays NaN (never rounds to inf)
    expect(Number.isNaN(bf16Value(f32ToBf16Bits(0x7f800001)))).toBe(true);
  });

  test('f16 read matches the IEEE half value (normals, subnormals, inf) and the writer rounds to nearest even', () => {
    const f = tmp('h') + '.safetensors';
    const rand = randomTensor(rng, [3000], 0.5).data;
    const special = [65504, 65520, 1e5, -1e5, 6.1e-5, 5.96e-8, 2.98e-8, 1e-9, 1 / 3];
    const xs = new Float32Array([...rand, ...special]);
    writeSafetensors(f, [['h', { shape: [xs.length], data: xs }]], { dtype: 'F16' });
    const back = readSafetensors(f).tensors.get('h')!.data;
    // reference: the half values either side of x (float64 arithmetic); the written one is the nearer
    for (let i = 0; i < xs.length; i++) {
      const x = xs[i]!;
      const h = f32ToF16Bits(x);
      const v = f16Value(h);
      expect(back[i]).toBe(Math.fround(v));
      if (!Number.isFinite(v)) continue;
      for (const nb of [h - 1, h + 1]) {
        if ((nb & 0x7fff) > 0x7bff || (nb & 0x8000) !== (h & 0x8000)) continue;
        expect(Math.abs(v - x)).toBeLessThanOrEqual(Math.abs(f16Value(nb) - x));
      }
    }
    const s = Array.from(back.subarray(rand.length));
    expect(s.slice(0, 4)).toEqual([65504, Infinity, Infinity, -Infinity]); // 65520 is a tie between 65504 (odd) and inf
    expect(s[5]).toBe(2 ** -24); // smallest subnormal
    expect(s[6]).toBe(0); // 2.98e-8 < 2^-25: rounds to zero
    expect(s[8]).toBe(f16Value(0x3555)); // 1/3
  });

  test('sharded write + index; reading follows the index', () => {
    const dir = tmp('shards');
    mkdirSync(dir);
    const tensors: Array<[string, Tensor]> = Array.from({ length: 6 }, (_, i) => [`t.${i}`, randomTensor(rng, [50, 10])]);
    const files = writeSafetensorsDir(dir, tensors, { dtype: 'F32', maxShardBytes: 4500 });
    expect(files).toContain('model.safetensors.index.json');
    const shards = files.filter((f) => f.endsWith('.safetensors'));
    expect(shards.length).toBe(3);
    expect(shards[0]).toBe('model-00001-of-00003.safetensors');
    const index = JSON.parse(readFileSync(path.join(dir, 'model.safetensors.index.json'), 'utf8'));
    expect(index.metadata.total_size).toBe(6 * 500 * 4);
    expect(index.weight_map['t.5']).toBe('model-00003-of-00003.safetensors');
    const back = readSafetensorsDir(dir);
    for (const [n, t] of tensors) expect(Array.from(back.tensors.get(n)!.data)).toEqual(Array.from(t.data));
    // an index pointing at the wrong shard is caught
    index.weight_map['t.0'] = 'model-00002-of-00003.safetensors';
    writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify(index));
    expect(() => readSafetensorsDir(dir)).toThrow(/model-00002-of-00003\.safetensors: tensor 't\.0' is listed in model\.safetensors\.index\.json but not in this shard/);
    index.weight_map['t.0'] = '../etc/passwd';
    writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify(index));
    expect(() => readSafetensorsDir(dir)).toThrow(/weight_map\['t\.0'\]: "\.\.\/etc\/passwd" is not a file name/);
  });

  // A file with a hand-made header, to check each corruption gives an error naming the file and tensor.
  function rawFile(header: unknown, dataBytes: number, opts: { lenOverride?: bigint; headerText?: string } = {}): string {
    const f = tmp('corrupt') + '.safetensors';
    const json = Buffer.from(opts.headerText ?? JSON.stringify(header), 'utf8');
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(opts.lenOverride ?? BigInt(json.length));
    writeFileSync(f, Buffer.concat([len, json, Buffer.alloc(dataBytes, 1)]));
    return f;
  }

  test('corrupt headers give errors naming the file and the tensor', () => {
    const ok = { a: { dtype: 'F32', shape: [2, 2], data_offsets: [0, 16] } };
    expect(readSafetensors(rawFile(ok, 16)).tensors.get('a')!.shape).toEqual([2, 2]);
    // F64 narrows to fp32
    const f64 = tmp('f64') + '.safetensors';
    const hdr = Buffer.from(JSON.stringify({ d: { dtype: 'F64', shape: [2], data_offsets: [0, 16] } }));
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(hdr.length));
    writeFileSync(f64, Buffer.concat([len, hdr, Buffer.from(new Float64Array([Math.PI, -1e-3]).buffer)]));
    expect(Array.from(readSafetensors(f64).tensors.get('d')!.data)).toEqual([Math.fround(Math.PI), Math.fround(-1e-3)]);
    const cases: Array<[string, RegExp]> = [
      [rawFile(ok, 16, { lenOverride: 1n << 40n }), /header length \d+ exceeds/],
      [rawFile(ok, 0, { lenOverride: 5000n }), /header length 5000 runs past the end of the file/],
      [rawFile(null, 16, { headerText: '{"a": {"dtype": "F32",' }), /header is not valid UTF-8 JSON/],
      [rawFile([1, 2], 16), /header is not a JSON object/],
      [rawFile({ a: { dtype: 'F32', shape: [2, 2], data_offsets: [0, 32] } }, 16), /tensor 'a': data_offsets \[0, 32\] run past the end of the data \(16 bytes\)/],
      [rawFile({ a: { dtype: 'F32', shape: [2, 3], data_offsets: [0, 16] } }, 16), /tensor 'a': shape \[2, 3\] x 4 bytes \(F32\) = 24 bytes, but data_offsets span 16 bytes/],
      [rawFile({ a: { dtype: 'I64', shape: [2], data_offsets: [0, 16] } }, 16), /tensor 'a': dtype I64 is not supported/],
      [rawFile({ a: { dtype: 'F32', shape: [-2], data_offsets: [0, 8] } }, 16), /tensor 'a': shape \[-2\] is not a list of non-negative integers/],
      [rawFile({ a: { dtype: 'F32', shape: [2], data_offsets: [8] } }, 16), /tensor 'a': data_offsets \[8\] is not a pair/],
      [rawFile({ a: { dtype: 'F32', shape: [2], data_offsets: [8, 0] } }, 16), /tensor 'a': data_offsets \[8, 0\] are reversed/],
      [rawFile({ a: { dtype: 'F32', shape: [3], data_offsets: [0, 12] }, b: { dtype: 'F32', shape: [2], data_offsets: [8, 16] } }, 16), /tensors 'a' and 'b' overlap/],
      [rawFile({ a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] }, z: { dtype: 'F32', shape: [0], data_offsets: [4, 4] }, b: { dtype: 'F32', shape: [1], data_offsets: [8, 12] } }, 16), /tensors 'a' and 'b' overlap/],
      [rawFile({ __metadata__: { k: 1 } }, 0), /__metadata__ must be an object of strings/],
      [rawFile({ a: { shape: [1], data_offsets: [0, 4] } }, 4), /tensor 'a': missing dtype/],
    ];
    for (const [file, re] of cases) {
      let msg = '';
      try {
        readSafetensors(file);
      } catch (e) {
        msg = (e as Error).message;
      }
      expect(msg).toMatch(re);
      expect(msg.startsWith(file)).toBe(true);
    }
    const short = tmp('short');
    writeFileSync(short, Buffer.from([1, 2, 3]));
    expect(() => readSafetensors(short)).toThrow(/too short to be a safetensors file/);
  });
});

// Configs shaped like the released models' config.json (Qwen2.5-7B-Instruct, Llama-3.1-8B-Instruct).
const qwen25 = {
  architectures: ['Qwen2ForCausalLM'], attention_dropout: 0.0, bos_token_id: 151643, eos_token_id: 151645, hidden_act: 'silu',
  hidden_size: 3584, initializer_range: 0.02, intermediate_size: 18944, max_position_embeddings: 32768, max_window_layers: 28,
  model_type: 'qwen2', num_attention_heads: 28, num_hidden_layers: 28, num_key_value_heads: 4, rms_norm_eps: 1e-6,
  rope_theta: 1000000.0, sliding_window: 131072, tie_word_embeddings: false, torch_dtype: 'bfloat16',
  transformers_version: '4.43.1', use_cache: true, use_sliding_window: false, vocab_size: 152064,
};
const llama31 = {
  architectures: ['LlamaForCausalLM'], attention_bias: false, attention_dropout: 0.0, bos_token_id: 128000,
  eos_token_id: [128001, 128008, 128009], hidden_act: 'silu', hidden_size: 4096, initializer_range: 0.02,
  intermediate_size: 14336, max_position_embeddings: 131072, mlp_bias: false, model_type: 'llama', num_attention_heads: 32,
  num_hidden_layers: 32, num_key_value_heads: 8, pretraining_tp: 1, rms_norm_eps: 1e-5,
  rope_scaling: { factor: 8.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_position_embeddings: 8192, rope_type: 'llama3' },
  rope_theta: 500000.0, tie_word_embeddings: false, torch_dtype: 'bfloat16', transformers_version: '4.42.3', use_cache: true, vocab_size: 128256,
};

describe('config.json', () => {
  test('Qwen2.5-7B-Instruct parses with its real values', () => {
    const c = parseModelConfig(qwen25);
    expect(c).toMatchObject({
      architecture: 'qwen2', hfArchitecture: 'Qwen2ForCausalLM', vocabSize: 152064, hiddenSize: 3584, numLayers: 28, numHeads: 28,
      numKvHeads: 4, headDim: 128, ropeTheta: 1e6, ropeScaling: null, attentionBias: true, mlpBias: false, tieWordEmbeddings: false,
      bosTokenId: 151643, eosTokenIds: [151645], rmsNormEps: 1e-6,
    });
    expect(parameterCount(c)).toBe(7615616512); // the published 7.62B
  });

  test('Llama-3.1-8B-Instruct parses with llama3 rope scaling and an eos list', () => {
    const c = parseModelConfig(llama31);
    expect(c).toMatchObject({ architecture: 'llama', headDim: 128, numKvHeads: 8, attentionBias: false, mlpBias: false, eosTokenIds: [128001, 128008, 128009] });
    expect(c.ropeScaling).toEqual({ type: 'llama3', factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 });
    expect(parameterCount(c)).toBe(8030261248); // the published 8.03B
    // the older spelling "type" and transformers 5's rope_parameters are accepted too
    const { rope_type: _t, ...scaling } = llama31.rope_scaling;
    expect(parseModelConfig({ ...llama31, rope_scaling: { ...scaling, type: 'llama3' } }).ropeScaling?.factor).toBe(8);
    const { rope_scaling: _s, rope_theta: _r, ...v5 } = llama31;
    const c5 = parseModelConfig({ ...v5, rope_parameters: { ...llama31.rope_scaling, rope_theta: 500000 } });
    expect(c5.ropeTheta).toBe(500000);
    expect(c5.ropeScaling?.type).toBe('llama3');
  });

  test('defaults: kv heads = heads, head_dim = hidden / heads, no eos', () => {
    const c = parseModelConfig({ model_type: 'llama', vocab_size: 10, hidden_size: 8, intermediate_size: 16, num_hidden_layers: 1, num_attention_heads: 2 });
    expect(c).toMatchObject({ architecture: 'llama', numKvHeads: 2, headDim: 4, eosTokenIds: [], bosTokenId: null, ropeTheta: 10000, tieWordEmbeddings: false });
    const explicit = parseModelConfig({ ...llama31, head_dim: 64 });
    expect(explicit.headDim).toBe(64);
  });

  test('bad configs name the file and the key', () => {
    const f = '/models/x/config.json';
    const bad = (patch: Record<string, unknown>, re: RegExp, base: Record<string, unknown> = qwen25) => {
      const cfg: Record<string, unknown> = { ...base, ...patch };
      for (const [k, v] of Object.entries(patch)) if (v === undefined) delete cfg[k];
      expect(() => parseModelConfig(cfg, f)).toThrow(re);
      try {
        parseModelConfig(cfg, f);
      } catch (e) {
        expect((e as Error).message.startsWith(`${f}: key '`)).toBe(true);
      }
    };
    bad({ architectures: ['MistralForCausalLM'] }, /key 'architectures': 'MistralForCausalLM' is not supported/);
    bad({ architectures: undefined, model_type: 'gpt2' }, /key 'model_type': 'gpt2' is not supported/);
    bad({ model_type: 'llama' }, /key 'model_type': 'llama' does not match architectures\[0\]/);
    bad({ hidden_size: undefined }, /key 'hidden_size': missing/);
    bad({ vocab_size: -5 }, /key 'vocab_size'/);
    bad({ num_hidden_layers: 2.5 }, /key 'num_hidden_layers'/);
    bad({ num_attention_heads: 27, num_key_value_heads: undefined }, /key 'num_attention_heads': 27 does not divide hidden_size = 3584/);
    bad({ num_key_value_heads: 3 }, /key 'num_key_value_heads': 3 does not divide num_attention_heads = 28/);
    bad({ hidden_act: 'gelu' }, /key 'hidden_act': 'gelu' is not supported/);
    bad({ use_sliding_window: true }, /key 'use_sliding_window'/);
    bad({ layer_types: Array(28).fill('full_attention').fill('sliding_attention', 20) }, /key 'layer_types.20': 'sliding_attention' is not supported/);
    bad({ layer_types: ['full_attention'] }, /key 'layer_types': has 1 entries but num_hidden_layers = 28/);
    bad({ eos_token_id: 200000 }, /key 'eos_token_id': token id 200000 is outside the vocabulary/);
    bad({ eos_token_id: 'x' }, /key 'eos_token_id'/);
    bad({ rope_scaling: { type: 'yarn', factor: 4 } }, /key 'rope_scaling.rope_type': "yarn" is not supported/);
    bad({ rope_scaling: { rope_type: 'llama3', factor: 8, low_freq_factor: 1, high_freq_factor: 4 } }, /key 'rope_scaling.original_max_position_embeddings': missing/, llama31);
    bad({ attention_bias: true }, /key 'mlp_bias'.*not supported/, llama31);
    bad({ head_dim: 63 }, /key 'head_dim': rotary embeddings need an even head dimension/, llama31);
    expect(() => parseModelConfig([1], f)).toThrow(/key '\(root\)': expected a JSON object/);
  });

  test('config.json written back parses to the same ModelConfig and keeps unknown keys', () => {
    for (const raw of [qwen25, llama31]) {
      const c = parseModelConfig(raw);
      const out = modelConfigToJson(c, 'f32');
      expect(out.torch_dtype).toBe('float32');
      expect(out.transformers_version).toBe(raw.transformers_version);
      const { raw: _a, ...again } = parseModelConfig(out);
      const { raw: _b, ...orig } = c;
      expect(again).toEqual(orig);
    }
  });
});

const tiny = (arch: 'qwen2' | 'llama', extra: Partial<InitShape> = {}): InitShape => ({
  architecture: arch, numLayers: 2, hiddenSize: 32, numHeads: 4, numKvHeads: 2, intermediateSize: 48, vocabSize: 97, ...extra,
});

describe('model directories', () => {
  test('init -> save -> load round trip (f32 exact; bf16 rounded), both architectures', () => {
    for (const arch of ['qwen2', 'llama'] as const) {
      const { config, weights } = initModel(tiny(arch, { eosTokenIds: [5] }), 3);
      // init statistics: weights ~ N(0, 0.02^2), norms 1, biases 0
      const q = weights.get('model.layers.0.self_attn.q_proj.weight')!.data;
      const mean = q.reduce((a, x) => a + x, 0) / q.length;
      const std = Math.sqrt(q.reduce((a, x) => a + (x - mean) ** 2, 0) / q.length);
      expect(Math.abs(std - 0.02)).toBeLessThan(0.002);
      expect(weights.get('model.norm.weight')!.data.every((x) => x === 1)).toBe(true);
      if (arch === 'qwen2') expect(weights.get('model.layers.1.self_attn.k_proj.bias')!.data.every((x) => x === 0)).toBe(true);
      else expect(weights.has('model.layers.1.self_attn.k_proj.bias')).toBe(false);

      const dir = tmp(arch);
      saveModelDir(dir, config, weights);
      expect(readdirSync(dir).sort()).toEqual(['config.json', 'model.safetensors']);
      const m = loadModelDir(dir);
      const { raw: _r1, ...c1 } = m.config;
      const { raw: _r2, ...c2 } = config;
      expect(c1).toEqual(c2);
      expect(m.tokenizer).toBeUndefined();
      expect([...m.weights.keys()]).toEqual([...weights.keys()]);
      for (const [n, t] of weights) expect(m.weights.get(n)!.data).toEqual(t.data);

      const dirBf = tmp(arch + '-bf16');
      saveModelDir(dirBf, config, weights, { dtype: 'bf16' });
      expect(JSON.parse(readFileSync(path.join(dirBf, 'config.json'), 'utf8')).torch_dtype).toBe('bfloat16');
      const mb = loadModelDir(dirBf);
      expect(new Set(mb.dtypes.values())).toEqual(new Set(['BF16']));
      for (const [n, t] of weights) {
        const got = mb.weights.get(n)!.data;
        for (let i = 0; i < t.data.length; i += 7) expect(got[i]).toBe(nearestRepresentable(t.data[i]!, truncBf16, bf16Value));
      }
    }
  });

  test('init normals: mean 0, variance std^2, kurtosis 3, tails present', () => {
    const a = new Float32Array(200001);
    fillNormal(new Rng(3), a, 0.5);
    let m1 = 0;
    for (const x of a) m1 += x / a.length;
    let m2 = 0;
    let m4 = 0;
    let tail = 0;
    for (const x of a) {
      m2 += (x - m1) ** 2 / a.length;
      m4 += (x - m1) ** 4 / a.length;
      if (Math.abs(x) > 1.5) tail++; // |z| > 3: expected fraction 0.0027
    }
    expect(Math.abs(m1)).toBeLessThan(0.005);
    expect(Math.abs(m2 / 0.25 - 1)).toBeLessThan(0.02);
    expect(Math.abs(m4 / m2 ** 2 - 3)).toBeLessThan(0.1);
    expect(Math.abs(tail / a.length - 0.0027)).toBeLessThan(0.0007);
  });

  test('same seed, same weights; different seed, different weights', () => {
    const a = initModel(tiny('llama'), 7).weights.get('model.embed_tokens.weight')!.data;
    const b = initModel(tiny('llama'), 7).weights.get('model.embed_tokens.weight')!.data;
    const c = initModel(tiny('llama'), 8).weights.get('model.embed_tokens.weight')!.data;
    expect(b).toEqual(a);
    expect(c).not.toEqual(a);
  });

  test('tied embeddings: no lm_head on disk, and a redundant one on load is dropped', () => {
    const { config, weights } = initModel(tiny('qwen2', { tieWordEmbeddings: true }), 1);
    expect(weights.has('lm_head.weight')).toBe(false);
    const dir = tmp('tied');
    saveModelDir(dir, config, weights);
    expect(Object.keys(readSafetensors(path.join(dir, 'model.safetensors')).tensors)).not.toContain('lm_head.weight');
    expect(readSafetensors(path.join(dir, 'model.safetensors')).tensors.has('lm_head.weight')).toBe(false);
    // HF sometimes writes both; loading accepts that
    const withHead = new Map(weights);
    withHead.set('lm_head.weight', weights.get('model.embed_tokens.weight')!);
    const dir2 = tmp('tied2');
    mkdirSync(dir2);
    writeFileSync(path.join(dir2, 'config.json'), JSON.stringify(modelConfigToJson(config, 'f32')));
    writeSafetensors(path.join(dir2, 'model.safetensors'), [...withHead]);
    expect(loadModelDir(dir2).weights.has('lm_head.weight')).toBe(false);
  });

  test('stop tokens: config eos + generation_config eos + tokenizer eos', () => {
    const { config, weights } = initModel(tiny('qwen2', { vocabSize: 300, eosTokenIds: [5] }), 1);
    const dir = tmp('stops');
    saveModelDir(dir, config, weights);
    expect(loadModelDir(dir).stopTokenIds).toEqual([5]);
    writeFileSync(path.join(dir, 'generation_config.json'), JSON.stringify({ eos_token_id: [5, 9, 1000] }));
    expect(loadModelDir(dir).stopTokenIds).toEqual([5, 9]); // 1000 is outside the vocabulary
    for (const f of ['tokenizer.json', 'tokenizer_config.json']) writeFileSync(path.join(dir, f), readFileSync(path.join(byteTokenizerDir, f)));
    expect(loadModelDir(dir).stopTokenIds).toEqual([5, 9, 257]);
    writeFileSync(path.join(dir, 'generation_config.json'), '{broken');
    expect(loadModelDir(dir).stopTokenIds).toEqual([5, 257]);
  });

  test('sharded save loads back', () => {
    const { config, weights } = initModel(tiny('llama'), 2);
    const dir = tmp('sharded');
    const files = saveModelDir(dir, config, weights, { maxShardBytes: 8000 });
    expect(files.filter((f) => /^model-\d{5}-of-\d{5}\.safetensors$/.test(f)).length).toBeGreaterThan(2);
    const m = loadModelDir(dir);
    for (const [n, t] of weights) expect(m.weights.get(n)!.data).toEqual(t.data);
  });

  test('broken directories: missing, misshapen and unexpected tensors, no weights, no config', () => {
    const { config, weights } = initModel(tiny('qwen2'), 4);
    const write = (w: Map<string, Tensor>) => {
      const dir = tmp('broken');
      mkdirSync(dir);
      writeFileSync(path.join(dir, 'config.json'), JSON.stringify(modelConfigToJson(config, 'f32')));
      writeSafetensors(path.join(dir, 'model.safetensors'), [...w]);
      return dir;
    };
    const missing = new Map(weights);
    missing.delete('model.layers.1.mlp.up_proj.weight');
    const misshapen = new Map(weights);
    misshapen.set('model.layers.0.self_attn.k_proj.weight', { shape: [32, 32], data: new Float32Array(1024) });
    const extra = new Map(weights);
    extra.set('model.layers.2.mlp.up_proj.weight', { shape: [1], data: new Float32Array(1) });
    // the eager loader and the lazy one (openModelDir: names and shapes at open, before any value is read) alike
    for (const open of [loadModelDir, openModelDir]) {
      expect(() => open(write(missing))).toThrow(/tensor 'model\.layers\.1\.mlp\.up_proj\.weight' is missing \(expected shape \[48, 32\]\)/);
      expect(() => open(write(misshapen))).toThrow(/tensor 'model\.layers\.0\.self_attn\.k_proj\.weight' has shape \[32, 32\], expected \[16, 32\]/);
      expect(() => open(write(extra))).toThrow(/unexpected tensor 'model\.layers\.2\.mlp\.up_proj\.weight'/);
    }
    // a NaN: the eager loader refuses the directory; the lazy one opens it (values unread) and the engine refuses it
    const corrupt = new Map(weights);
    const bad = new Float32Array(weights.get('model.layers.1.self_attn.o_proj.weight')!.data);
    bad[17] = NaN;
    corrupt.set('model.layers.1.self_attn.o_proj.weight', { shape: [32, 32], data: bad });
    const nanMessage = /'model\.layers\.1\.self_attn\.o_proj\.weight' holds a non-finite value \(NaN\) at index 17/;
    expect(() => loadModelDir(write(corrupt))).toThrow(nanMessage);
    const lazy = openModelDir(write(corrupt));
    expect(() => Engine.create(lazy.config, lazy.weights, { threads: 1, backend: 'cpu' })).toThrow(nanMessage);
    const dir = tmp('noweights');
    mkdirSync(dir);
    writeFileSync(path.join(dir, 'config.json'), JSON.stringify(initConfigJson(tiny('qwen2'))));
    expect(() => loadModelDir(dir)).toThrow(/no model\.safetensors or model\.safetensors\.index\.json/);
    const empty = tmp('noconfig');
    mkdirSync(empty);
    expect(() => loadModelDir(empty)).toThrow(/no config\.json/);
    writeFileSync(path.join(empty, 'config.json'), '{"vocab_size": 3,');
    expect(() => loadModelDir(empty)).toThrow(/config\.json: not valid JSON/);
  });

  test('saving refuses a non-empty directory without force, replaces it with force, leaves no temp dirs', () => {
    const { config, weights } = initModel(tiny('llama'), 5);
    const dir = tmp('save');
    mkdirSync(dir);
    writeFileSync(path.join(dir, 'keep.txt'), 'x');
    expect(() => saveModelDir(dir, config, weights)).toThrow(/directory is not empty/);
    expect(existsSync(path.join(dir, 'keep.txt'))).toBe(true);
    saveModelDir(dir, config, weights, { force: true });
    expect(readdirSync(dir).sort()).toEqual(['config.json', 'model.safetensors']);
    expect(readdirSync(path.dirname(dir)).filter((f) => f.includes('.tmp-'))).toEqual([]);
    // the save checks what it writes
    const bad = new Map(weights);
    bad.delete('model.norm.weight');
    expect(() => saveModelDir(tmp('bad'), config, bad)).toThrow(/weights to save: tensor 'model\.norm\.weight' is missing/);
  });

  test('expected tensor list matches the HF module layout', () => {
    const { config } = initModel(tiny('qwen2'), 0);
    const names = expectedTensors(config).map((s) => s.name);
    expect(names.slice(0, 9)).toEqual([
      'model.embed_tokens.weight', 'model.layers.0.input_layernorm.weight',
      'model.layers.0.self_attn.q_proj.weight', 'model.layers.0.self_attn.q_proj.bias',
      'model.layers.0.self_attn.k_proj.weight', 'model.layers.0.self_attn.k_proj.bias',
      'model.layers.0.self_attn.v_proj.weight', 'model.layers.0.self_attn.v_proj.bias',
      'model.layers.0.self_attn.o_proj.weight',
    ]);
    expect(names.length).toBe(1 + 2 * 12 + 2); // embed, 12 per layer (norms, q/k/v + biases, o, gate/up/down), norm, lm_head
  });
});
