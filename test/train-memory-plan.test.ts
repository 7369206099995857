// The training memory plan (src/rl/memory-plan.ts): parameter counts of the Qwen2.5 family against their published
// figures, items worked out by hand (with and without per-layer recomputation), the 7B-on-141-GB case (fp32 master
// refused, bf16 master fits), `auto` checkpointing, and the CPU wiring (`trainingPlan`: a plan for every CPU run, an impossible one refused).
import { formatPlan, parameterCount, planMemory, planRefusal, type PlanModel, type PlanTraining } from '../src/rl/memory-plan.js';
import { trainingPlan } from '../src/rl/run.js';
import { engineBackends } from '../src/engine/engine.js';
import { parseTrainConfig } from '../src/config/load.js';
import { parseModelConfig } from '../src/model/config.js';

const qwen = (layers: number, hidden: number, intermediate: number, heads: number, kvHeads: number, vocab: number, tied: boolean): PlanModel => ({
  layers, hidden, intermediate, heads, kvHeads, headDim: hidden / heads, vocab, tied, attentionBias: true,
});
// the shapes of the Hugging Face configs (config.json of Qwen/Qwen2.5-*)
const q05 = qwen(24, 896, 4864, 14, 2, 151936, true);
const q15 = qwen(28, 1536, 8960, 12, 2, 151936, true);
const q3 = qwen(36, 2048, 11008, 16, 2, 151936, true);
const q7 = qwen(28, 3584, 18944, 28, 4, 152064, false);

describe('parameter counts', () => {
  test('Qwen2.5 0.5B / 1.5B / 3B (tied) and 7B (untied) match the published counts exactly', () => {
    expect(parameterCount(q05)).toBe(494_032_768);
    expect(parameterCount(q15)).toBe(1_543_714_304);
    expect(parameterCount(q3)).toBe(3_085_938_688);
    expect(parameterCount(q7)).toBe(7_615_616_512);
  });
  test('one layer of 0.5B by hand: q 896x896+896, k and v 896x128+128, o 896x896, MLP 3x896x4864, 2 norms', () => {
    const oneLayer = { ...q05, layers: 1 }, noLayer = { ...q05, layers: 0 };
    expect(parameterCount(oneLayer) - parameterCount(noLayer)).toBe(803_712 + 2 * 114_816 + 802_816 + 13_074_432 + 1_792);
    expect(parameterCount(noLayer)).toBe(151936 * 896 + 896);
    expect(parameterCount({ ...noLayer, tied: false })).toBe(2 * 151936 * 896 + 896);
  });
});

const base = (over: Partial<PlanTraining>): PlanTraining => ({
  backend: 'cuda', microBatch: 4, promptTokens: 1024, responseTokens: 4096, groupSize: 8, promptsPerStep: 128,
  checkpointing: 'auto', reference: false, memoryBytes: 141 * 2 ** 30, ...over,
});
const item = (p: ReturnType<typeof planMemory>, name: string) => p.items.find((i) => i.name === name)!;

describe('the plan on CUDA', () => {
  test('7B on a 141 GiB GPU (H200): fp32 master weights fit only at micro-batch 1 with 24 sequences decoding at once; bf16 master fits micro-batch 4 with 152', () => {
    const P = 7_615_616_512;
    const fp32 = planMemory(q7, base({ masterDtype: 'fp32' }));
    expect(item(fp32, 'weights').bytes).toBe(2 * P);
    expect(item(fp32, 'master weights').bytes).toBe(4 * P);
    expect(item(fp32, 'Adam moments').bytes).toBe(8 * P);
    expect(item(fp32, 'gradients').bytes).toBe(4 * P);
    expect(fp32.fits).toBe(false); // 18P = 127.7 GiB held before activations (10.0 GiB) and the reserve (6.2 GiB)
    const why = planRefusal(fp32)!;
    expect(why).toMatch(/does not fit: it needs 143\.91 GiB but the device has 141\.00 GiB/);
    expect(why).toMatch(/Adam moments 56\.74 GiB/); // 8P = 60,924,932,096 bytes
    expect(why).toMatch(/master weights in bf16/);
    const fp32mb1 = planMemory(q7, base({ masterDtype: 'fp32', microBatch: 1 }));
    expect(fp32mb1.fits).toBe(true);
    expect(fp32mb1.decodeSequences).toBe(24);

    const bf16 = planMemory(q7, base({ masterDtype: 'bf16' }));
    expect(item(bf16, 'master weights').bytes).toBe(0);
    expect(bf16.fits).toBe(true);
    expect(planRefusal(bf16)).toBeNull();
    // 14P = 106.6e9 held; activations of 4 x 5120 tokens do not fit beside it without recomputation
    expect(bf16.checkpointing).toBe('on');
    // by hand, recomputation on, per token: the (L+1) layer inputs 2H each; one layer's set, 3H + q|k|v (4,608) + o
    // (3,584) + gate|up 2I in bf16 = 113,664 bytes, plus 2 rstd and 28 log-sum-exps in fp32 = 120; the final norm's
    // output 2H and rstd 4; the backward's scratch 4I + 3H + o + q|k|v = 94,720 values in bf16
    const tokens = 4 * 5120;
    expect(item(bf16, 'activations').bytes).toBe(tokens * (29 * 3584 * 2 + 113_664 + 120 + (2 * 3584 + 4) + 94_720 * 2));
    // the KV cache takes what is left, in whole groups: 8 x 4097-token responses + a shared 1024-token prompt per group
    const perGroup = (64 + 8 * 257) * 16 * (28 * 2 * 4 * 128 * 2);
    expect(item(bf16, 'KV cache').bytes % perGroup).toBe(0);
    expect(bf16.decodeSequences).toBe(152); // floor((141 GiB - 14P - reserve) / per group) = 19 groups of 8
    expect(Math.floor((141 * 2 ** 30 - 14 * P - (2 * 2 ** 30 + 0.03 * 141 * 2 ** 30)) / perGroup)).toBe(19);
    expect(bf16.total).toBeLessThanOrEqual(141 * 2 ** 30);
    // 8-bit moments leave more room for the cache
    const int8 = planMemory(q7, base({ masterDtype: 'bf16', momentsDtype: 'int8' }));
    expect(int8.decodeSequences).toBeGreaterThan(bf16.decodeSequences);
    expect(formatPlan(bf16)).toMatch(/checkpointing on[\s\S]*KV cache[\s\S]*total/);
  });

  test('auto checkpointing is off when everything fits without it; on/off as asked otherwise', () => {
    const small = planMemory(q05, base({ microBatch: 1, responseTokens: 1024, memoryBytes: 80e9 }));
    expect(small.checkpointing).toBe('off');
    const on = planMemory(q05, base({ microBatch: 1, responseTokens: 1024, memoryBytes: 80e9, checkpointing: 'on' }));
    expect(item(on, 'activations').bytes).toBeLessThan(item(small, 'activations').bytes);
    // by hand, off, per token: the L+1 layer inputs (2H each); per layer 3H + q|k|v (18 x 64) + o (14 x 64) + gate|up
    // 2I in bf16 and 2 rstd + 14 log-sum-exps in fp32; the final norm's output 2H and rstd 4; the backward's scratch
    const perLayer = 2 * (3 * 896 + 18 * 64 + 14 * 64 + 2 * 4864) + 4 * (2 + 14);
    const scratch = 2 * (4 * 4864 + 3 * 896 + 14 * 64 + 18 * 64);
    expect(item(small, 'activations').bytes).toBe(2048 * (25 * 896 * 2 + 24 * perLayer + (2 * 896 + 4) + scratch));
    // on: one layer's set instead of 24
    expect(item(on, 'activations').bytes).toBe(2048 * (25 * 896 * 2 + perLayer + (2 * 896 + 4) + scratch));
    expect(item(on, 'activations').note).toMatch(/layer inputs only \(recomputed per layer\)/);
    const off = planMemory(q3, base({ microBatch: 16, memoryBytes: 80e9, checkpointing: 'off' }));
    expect(off.fits).toBe(false);
    expect(planRefusal(off)).toMatch(/model\.checkpointing/);
    expect(planMemory(q3, base({ microBatch: 16, memoryBytes: 80e9 })).checkpointing).toBe('on');
  });

  test('the reference policy is counted only with a KL term', () => {
    expect(item(planMemory(q15, base({ reference: true })), 'reference policy').bytes).toBe(2 * 1_543_714_304);
    expect(item(planMemory(q15, base({ reference: false })), 'reference policy').bytes).toBe(0);
  });
});

describe('the plan of a CPU run (clipo train)', () => {
  const tinyModel = parseModelConfig({
    architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', vocab_size: 512, hidden_size: 64, intermediate_size: 128,
    num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 2, rms_norm_eps: 1e-6, rope_theta: 10000,
    max_position_embeddings: 1024, tie_word_embeddings: true,
  });
  const cfg = (extra: Record<string, unknown> = {}) =>
    parseTrainConfig({ model: { path: '/m', backend: 'cpu', ...((extra.model as object) ?? {}) }, data: { train_files: ['x.jsonl'] }, ...(extra.optim ? { optim: extra.optim } : {}) });

  test('a tiny model fits; items by hand (fp32 weights, the loaded copy, moments, gradients; KV of floor(64/16) x 16 sequences)', () => {
    const c = cfg();
    const p = trainingPlan(c, tinyModel, 16e9);
    const P = parameterCount({ layers: 2, hidden: 64, intermediate: 128, heads: 4, kvHeads: 2, headDim: 16, vocab: 512, tied: true, attentionBias: true });
    expect(p.params).toBe(P);
    expect(item(p, 'weights').bytes).toBe(4 * P);
    expect(item(p, 'Adam moments').bytes).toBe(8 * P);
    expect(item(p, 'KV cache').bytes).toBe(64 * (512 + 2048 + 1) * 2 * 2 * 2 * 16 * 4);
    expect(p.checkpointing).toBe('off');
    expect(p.fits).toBe(true);
  });

  test('an impossible run is refused, naming the largest items and what to change', () => {
    const big = { ...tinyModel, vocabSize: 151936, hiddenSize: 3584, intermediateSize: 18944, numLayers: 28, numHeads: 28, numKvHeads: 4, headDim: 128, tieWordEmbeddings: false };
    const p = trainingPlan(cfg(), big, 64e9);
    expect(p.fits).toBe(false);
    expect(planRefusal(p)).toMatch(/the run does not fit: it needs [\d.]+ GiB but this machine has 59\.60 GiB; the largest items: .*To fit: /);
  });

  test('model.checkpointing: on is refused on the CPU; the config key is validated strictly', () => {
    expect(() => trainingPlan(cfg({ model: { checkpointing: 'on' } }), tinyModel, 16e9)).toThrow(/needs the cuda backend/);
    expect(cfg({ model: { checkpointing: 'off' } }).model.checkpointing).toBe('off');
    expect(cfg().model.checkpointing).toBe('auto');
    expect(() => cfg({ model: { checkpointing: 'sometimes' } })).toThrow(/checkpointing/);
    expect(parseTrainConfig({ model: { path: '/m' }, data: { train_files: ['x.jsonl'] } }).model.backend).toBe('auto');
    expect(() => cfg({ model: { backend: 'tpu' } })).toThrow(/backend/);
  });

  test('model.backend: cuda plans against the GPU (auto: recomputation only when needed; on as asked), or says why it cannot run', () => {
    const c = cfg({ model: { backend: 'cuda' } });
    if (engineBackends().cuda) {
      const p = trainingPlan(c, tinyModel, 16e9);
      expect(p.backend).toBe('cuda');
      expect(p.checkpointing).toBe('off');
      expect(item(p, 'weights').note).toMatch(/bf16/);
      const on = trainingPlan(cfg({ model: { backend: 'cuda', checkpointing: 'on' } }), tinyModel, 16e9);
      expect(on.checkpointing).toBe('on');
      expect(item(on, 'activations').bytes).toBeLessThan(item(p, 'activations').bytes);
    } else {
      expect(() => trainingPlan(c, tinyModel, 16e9)).toThrow(/^model\.backend: backend 'cuda': /);
    }
  });

  test('a plan of today\'s CUDA engine (current): auto turns recomputation on when needed; hints name only what it offers', () => {
    const t: PlanTraining = base({ microBatch: 16, memoryBytes: 80e9 });
    const planned = planMemory(q3, t), current = planMemory(q3, { ...t, current: true });
    expect(planned.checkpointing).toBe('on');
    expect(current.checkpointing).toBe('on');
    expect(item(current, 'activations').bytes).toBe(item(planned, 'activations').bytes);
    expect(current.fits).toBe(false);
    const why = planRefusal(current)!;
    // fp32 master weights: today's option is optim.master_weights (no 8-bit moments yet); recomputation is on already
    expect(why).toMatch(/optim\.master_weights to bf16-sr/);
    expect(why).not.toMatch(/8 bits|model\.checkpointing/);
    expect(why).toMatch(/optim\.micro_batch/);
    // off as asked: the refusal suggests recomputation
    expect(planRefusal(planMemory(q3, { ...t, current: true, checkpointing: 'off' }))).toMatch(/set model\.checkpointing to auto or on/);
  });
});
