// The model commands as a user runs them: `clipo model init` -> `model info` -> `generate` -> `score`, checked
// against the engine in this process (score = log-softmax of the full-sequence logits; generate's sampling
// log-probs = score's; greedy = argmax), plus determinism and the errors for bad flags.
import { mkdtempSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Engine, engineBackends } from '../src/engine/engine.js';
import { jest } from '@jest/globals';
import { main } from '../src/cli/main.js';
import { loadModelDir } from '../src/model/hfdir.js';
import { runClipo as clipo } from './helpers/cli.js';


/** The CLI in this process (for the error cases: no process start per case). */
async function clipoHere(...args: string[]) {
  let out = '';
  let err = '';
  const log = jest.spyOn(console, 'log').mockImplementation((...a: unknown[]) => void (out += a.join(' ') + '\n'));
  const write = jest.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => ((err += String(chunk)), true));
  try {
    const code = await main(['node', 'clipo', ...args]);
    return { code, out, err };
  } finally {
    log.mockRestore();
    write.mockRestore();
  }
}

const tmpRoot = mkdtempSync(path.join(os.tmpdir(), 'clipo-model-cli-'));
afterAll(() => rmSync(tmpRoot, { recursive: true, force: true }));
const byteModel = path.join(tmpRoot, 'byte-qwen2');
const bareModel = path.join(tmpRoot, 'bare-llama');

/** log-softmax(logits[row])[token], in float64 */
function logSoftmaxAt(logits: Float32Array, row: number, vocab: number, token: number): number {
  let max = -Infinity;
  for (let v = 0; v < vocab; v++) max = Math.max(max, logits[row * vocab + v]!);
  let sum = 0;
  for (let v = 0; v < vocab; v++) sum += Math.exp(logits[row * vocab + v]! - max);
  return logits[row * vocab + token]! - max - Math.log(sum);
}

describe('clipo model init / info', () => {
  beforeAll(() => {
    const a = clipo('model', 'init', '--arch', 'qwen2', '--layers', '2', '--hidden', '32', '--heads', '4', '--kv-heads', '2',
      '--intermediate', '64', '--vocab', '272', '--tokenizer', 'byte', '--tie-embeddings', '--seed', '1', '--out', byteModel, '--json');
    expect(a.err).toBe('');
    expect(a.code).toBe(0);
    const b = clipo('model', 'init', '--arch', 'llama', '--layers', '1', '--hidden', '16', '--heads', '2', '--intermediate', '24',
      '--vocab', '50', '--dtype', 'bf16', '--out', bareModel);
    expect(b.code).toBe(0);
    expect(b.out).toMatch(/wrote .*LlamaForCausalLM/);
  });

  test('the directories hold what was asked and load back', () => {
    expect(readdirSync(byteModel).sort()).toEqual(['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']);
    expect(readdirSync(bareModel).sort()).toEqual(['config.json', 'model.safetensors']);
    const info = JSON.parse(clipo('model', 'info', byteModel, '--json').out);
    expect(info).toMatchObject({ architecture: 'Qwen2ForCausalLM', layers: 2, hidden: 32, kvHeads: 2, vocab: 272, tiedEmbeddings: true, eosTokenIds: [257] });
    expect(info.tokenizer).toEqual({ vocab: 259, chatTemplate: true, eos: '<|im_end|>' });
    // 272*32 embedding + 2 layers * (q,k,v,o + biases + mlp + norms) + final norm
    expect(info.parameters).toBe(272 * 32 + 2 * (32 * 32 + 32 + 2 * (16 * 32 + 16) + 32 * 32 + 3 * 32 * 64 + 2 * 32) + 32);
    const bare = JSON.parse(clipo('model', 'info', bareModel, '--json').out);
    expect(bare.storedDtypes).toEqual(['BF16']);
    expect(bare.tokenizer).toBeNull();
  });

  test('same seed, same weights', async () => {
    const again = path.join(tmpRoot, 'again');
    expect((await clipoHere('model', 'init', '--arch', 'qwen2', '--layers', '2', '--hidden', '32', '--heads', '4', '--kv-heads', '2',
      '--intermediate', '64', '--vocab', '272', '--tokenizer', 'byte', '--tie-embeddings', '--seed', '1', '--out', again)).code).toBe(0);
    const a = loadModelDir(byteModel).weights;
    const b = loadModelDir(again).weights;
    for (const [n, t] of a) expect(b.get(n)!.data).toEqual(t.data);
  });

  test('bad flags are refused with a clear message', async () => {
    const base = ['model', 'init', '--arch', 'qwen2', '--layers', '1', '--hidden', '32', '--heads', '4', '--intermediate', '8', '--vocab', '300'];
    const cases: Array<[string[], RegExp]> = [
      [['--out', path.join(tmpRoot, 'e1'), '--tokenizer', 'byte', '--vocab', '258'], /--vocab: the byte tokenizer needs at least 259/],
      [['--out', path.join(tmpRoot, 'e2'), '--kv-heads', '3'], /--kv-heads: 3 does not divide --heads 4/],
      [['--out', path.join(tmpRoot, 'e3'), '--heads', '5'], /--heads: 5 does not divide --hidden 32/],
      [['--out', path.join(tmpRoot, 'e4'), '--heads', '32'], /must be even \(rotary embeddings/],
      [['--out', path.join(tmpRoot, 'e5'), '--arch', 'gpt2'], /--arch: expected qwen2 or llama, got 'gpt2'/],
      [['--out', path.join(tmpRoot, 'e6'), '--layers', '1.5'], /--layers: expected an integer/],
      [['--out', path.join(tmpRoot, 'e7'), '--dtype', 'f16'], /--dtype: expected f32 or bf16/],
      [['--out', path.join(tmpRoot, 'e8'), '--tokenizer', path.join(tmpRoot, 'nope.json')], /--tokenizer: .* does not exist/],
      [['--out', byteModel], /--out: .* exists and is not empty \(use --force to overwrite\)/],
    ];
    for (const [extra, re] of cases) {
      const r = await clipoHere(...base, ...extra);
      expect(r.code).toBe(2);
      expect(r.err).toMatch(re);
    }
    // a missing required flag is reported (not a process.exit from inside commander)
    const missing = await clipoHere('model', 'init', '--arch', 'llama');
    expect(missing.code).toBe(2);
    expect(missing.err).toMatch(/required option '--layers <n>' not specified/);
    // --force replaces a non-empty directory
    const dir = path.join(tmpRoot, 'forced');
    mkdirSync(dir);
    writeFileSync(path.join(dir, 'junk'), 'x');
    expect((await clipoHere(...base, '--out', dir, '--force')).code).toBe(0);
    expect(readdirSync(dir).sort()).toEqual(['config.json', 'model.safetensors']);
  });

  test('--tokenizer FILE copies that tokenizer and takes its special tokens', async () => {
    const out = path.join(tmpRoot, 'from-file');
    const r = await clipoHere('model', 'init', '--arch', 'llama', '--layers', '1', '--hidden', '16', '--heads', '2', '--intermediate', '24',
      '--vocab', '259', '--tokenizer', path.join(byteModel, 'tokenizer.json'), '--out', out);
    expect(r.code).toBe(0);
    const m = loadModelDir(out);
    expect(m.tokenizer?.vocabSize).toBe(259);
    expect(m.config.eosTokenIds).toEqual([257]);
  });
});

describe('clipo generate / score', () => {
  test('score prints log p(x_i | x_<i) for every token after the first, equal to the engine logits', async () => {
    const tokens = [104, 105, 32, 257, 3, 200];
    const r = clipo('score', '--model', byteModel, '--tokens', tokens.join(','), '--json');
    expect(r.err).toBe('');
    const doc = JSON.parse(r.out);
    expect(Object.keys(doc)).toEqual(['logprobs']);
    expect(doc.logprobs.length).toBe(tokens.length - 1);
    const m = loadModelDir(byteModel);
    const engine = Engine.create(m.config, m.weights, { threads: 1 });
    const logits = engine.logits(Int32Array.from(tokens), 1, tokens.length);
    engine.dispose();
    for (let i = 0; i + 1 < tokens.length; i++) {
      expect(Math.abs(doc.logprobs[i] - logSoftmaxAt(logits, i, 272, tokens[i + 1]!))).toBeLessThan(1e-4);
    }
    // text mode: a table and the sum
    const t = await clipoHere('score', '--model', byteModel, '--text', 'hi!');
    expect(t.code).toBe(0);
    expect(t.out).toMatch(/position\s+token\s+text\s+logprob/);
    expect(t.out).toMatch(/^sum -\d+\.\d{4}/m);
  });

  test('generate: same seed same output; sampling log-probs equal score; greedy is the argmax', async () => {
    const args = ['generate', '--model', byteModel, '--prompt', 'Hi', '--chat', '--max-new-tokens', '12', '--temperature', '1', '--seed', '7', '--n', '3', '--json'];
    const a = clipo(...args);
    expect(a.err).toBe('');
    const b = clipo(...args, '--threads', '1');
    expect(b.out).toBe(a.out);
    const doc = JSON.parse(a.out);
    expect(doc.prompt.text).toBe('<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n');
    expect(doc.prompt.tokens[0]).toBe(256);
    expect(doc.samples.length).toBe(3);
    expect(new Set(doc.samples.map((s: { tokens: number[] }) => s.tokens.join(','))).size).toBeGreaterThan(1);
    const other = JSON.parse((await clipoHere(...args.slice(0, -5), '--seed', '8', '--n', '3', '--json')).out);
    expect(other.samples.map((s: { tokens: number[] }) => s.tokens)).not.toEqual(doc.samples.map((s: { tokens: number[] }) => s.tokens));

    const s0 = doc.samples[0] as { tokens: number[]; logprobs: number[]; finishReason: string; text: string };
    expect(s0.logprobs.length).toBe(s0.tokens.length);
    expect(s0.finishReason === 'stop' ? s0.tokens.at(-1) === 257 : s0.tokens.length === 12).toBe(true);
    const full = [...doc.prompt.tokens, ...s0.tokens];
    const scored = JSON.parse((await clipoHere('score', '--model', byteModel, '--tokens', full.join(','), '--json')).out).logprobs as number[];
    const tail = scored.slice(doc.prompt.tokens.length - 1);
    for (let i = 0; i < s0.tokens.length; i++) expect(Math.abs(tail[i]! - s0.logprobs[i]!)).toBeLessThan(1e-3);

    const g = JSON.parse((await clipoHere('generate', '--model', bareModel, '--prompt-tokens', '4,5,6', '--max-new-tokens', '5', '--temperature', '0', '--json')).out);
    const m = loadModelDir(bareModel);
    const engine = Engine.create(m.config, m.weights, { threads: 1 });
    const seq = [4, 5, 6, ...g.samples[0].tokens];
    const logits = engine.logits(Int32Array.from(seq), 1, seq.length);
    engine.dispose();
    for (let i = 0; i < g.samples[0].tokens.length; i++) {
      const row = logits.subarray((2 + i) * 50, (3 + i) * 50);
      expect(g.samples[0].tokens[i]).toBe(row.indexOf(Math.max(...row)));
    }
    expect(g.samples[0].text).toBeUndefined(); // no tokenizer: ids only
  });

  test('text output decodes the sample and marks ids the tokenizer does not know', async () => {
    const r = await clipoHere('generate', '--model', byteModel, '--prompt', 'ab', '--max-new-tokens', '40', '--temperature', '3', '--seed', '1');
    expect(r.code).toBe(0);
    expect(r.out.length).toBeGreaterThan(0);
    const j = JSON.parse((await clipoHere('generate', '--model', byteModel, '--prompt', 'ab', '--max-new-tokens', '40', '--temperature', '3', '--seed', '1', '--json')).out);
    const unknown = (j.samples[0].tokens as number[]).filter((t) => t >= 259);
    for (const t of unknown) expect(j.samples[0].text).toContain(`<|unk:${t}|>`);
  });

  test('errors: no tokenizer, out-of-range ids, too few tokens, missing model, conflicting flags', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['generate', '--model', bareModel, '--prompt', 'x'], /--prompt: .* has no tokenizer\.json; use --prompt-tokens/],
      [['generate', '--model', byteModel, '--prompt', ''], /--prompt: the prompt encodes to no tokens/],
      [['generate', '--model', byteModel, '--prompt-tokens', '1,999'], /--prompt-tokens: item 1: token id 999 is out of range \(vocab_size = 272\)/],
      [['generate', '--model', byteModel, '--prompt-tokens', '1,x'], /--prompt-tokens: item 1 \('x'\) is not a non-negative integer/],
      [['generate', '--model', byteModel, '--prompt', 'a', '--prompt-tokens', '1'], /exactly one of --prompt TEXT or --prompt-tokens/],
      [['generate', '--model', byteModel, '--prompt-tokens', '1', '--chat'], /--chat applies to --prompt TEXT/],
      [['generate', '--model', byteModel, '--prompt-tokens', '1', '--top-p', '0'], /--top-p: must be at least/],
      [['generate', '--model', byteModel, '--prompt-tokens', '1', '--max-new-tokens', '5000'], /exceeds the model's max_position_embeddings \(4096\)/],
      [['generate', '--model', path.join(tmpRoot, 'nope'), '--prompt-tokens', '1'], /--model: .*nope: not a directory/],
      [['score', '--model', byteModel, '--tokens', '5'], /--tokens: need at least two tokens/],
      [['score', '--model', byteModel, '--tokens', '5,-1'], /--tokens: item 1 \('-1'\) is not a non-negative integer/],
      [['score', '--model', bareModel, '--text', 'hello'], /--text: .* has no tokenizer\.json/],
    ];
    for (const [args, re] of cases) {
      const r = await clipoHere(...args);
      expect(r.err).toMatch(re);
      expect(r.code).toBe(2);
    }
  });
});

describe('--backend on the engine commands', () => {
  test("auto is cpu without a usable GPU (same output); cuda there is an error that names what is missing (exit 1), on a GPU it runs; a bad name is a usage error", async () => {
    const b = engineBackends();
    const gen = (be: string) => clipoHere('generate', '--model', byteModel, '--prompt-tokens', '4,5,6', '--max-new-tokens', '6', '--temperature', '1', '--seed', '3', '--backend', be, '--json');
    const cpu = await gen('cpu');
    const auto = await gen('auto');
    expect(cpu.code).toBe(0);
    expect(auto.code).toBe(0);
    expect(JSON.parse(auto.out).settings.backend).toBe(b.cuda ? 'cuda' : 'cpu');
    if (!b.cuda) expect(JSON.parse(cpu.out).samples).toEqual(JSON.parse(auto.out).samples);
    const sc = (be: string) => clipoHere('score', '--model', byteModel, '--tokens', '4,5,6,7', '--backend', be, '--json');
    if (!b.cuda) expect(JSON.parse((await sc('cpu')).out)).toEqual(JSON.parse((await sc('auto')).out));
    const data = path.join(tmpRoot, 'backend-eval.jsonl');
    writeFileSync(data, JSON.stringify({ problem: '1+1?', answer: '2' }) + '\n');
    const cases: string[][] = [
      ['generate', '--model', byteModel, '--prompt-tokens', '4,5', '--backend', 'cuda'],
      ['score', '--model', byteModel, '--tokens', '4,5', '--backend', 'cuda'],
      ['eval', '--model', byteModel, '--data', data, '--out', path.join(tmpRoot, 'backend-eval'), '--backend', 'cuda'],
      ['serve', '--model', byteModel, '--port', '0', '--backend', 'cuda'],
    ];
    for (const args of b.cuda ? [] : cases) {
      const r = await clipoHere(...args);
      expect(r.err).toContain(`--backend cuda: ${b.cudaReason}`);
      expect(r.code).toBe(1);
    }
    if (b.cuda) expect((await clipoHere(...cases[1]!)).code).toBe(0);
    for (const args of [['generate', '--prompt-tokens', '4,5'], ['score', '--tokens', '4,5'], ['serve', '--port', '0']]) {
      const r = await clipoHere(...args, '--model', byteModel, '--backend', 'tpu');
      expect(r.err).toMatch(/--backend: expected cpu, cuda or auto, got 'tpu'/);
      expect(r.code).toBe(2);
    }
    const ep = await clipoHere('eval', '--endpoint', 'http://127.0.0.1:9/v1', '--served-model', 'm', '--data', data, '--out', path.join(tmpRoot, 'e2'), '--backend', 'cpu');
    expect(ep.err).toMatch(/--backend goes with --model/);
    expect(ep.code).toBe(2);
  });

  test('--help of each command describes --backend', async () => {
    for (const cmd of ['generate', 'score', 'eval', 'serve']) {
      const r = clipo(cmd, '--help');
      expect(r.out).toMatch(/--backend <name>\s+(with --model: )?engine backend: cpu, cuda or auto/);
    }
  });
});
