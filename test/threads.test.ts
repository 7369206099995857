// Engine threads: picked by the model's size when not given, and a --threads option on every engine command.
import { parameterCount } from '../src/model/tensors.js';
import { initConfigJson } from '../src/model/init.js';
import { parseModelConfig } from '../src/model/config.js';
import { PARAMS_PER_THREAD, threadsForModel } from '../src/engine/threads.js';
import os from 'node:os';
import { runClipo } from './helpers/cli.js';

const config = (hiddenSize: number, numLayers: number) =>
  parseModelConfig(initConfigJson({ architecture: 'qwen2', numLayers, hiddenSize, numHeads: 4, numKvHeads: 2, intermediateSize: 3 * hiddenSize, vocabSize: 1000 }), 'test');

describe('threadsForModel', () => {
  test('one thread for small models, one per PARAMS_PER_THREAD parameters above, at most the cores', () => {
    const tiny = config(128, 2);
    expect(parameterCount(tiny)).toBeLessThan(PARAMS_PER_THREAD);
    expect(threadsForModel(tiny, 16)).toBe(1);
    const mid = config(512, 8);
    const want = Math.floor(parameterCount(mid) / PARAMS_PER_THREAD);
    expect(want).toBeGreaterThan(1);
    expect(threadsForModel(mid, 64)).toBe(want);
    expect(threadsForModel(mid, 2)).toBe(2);
    expect(threadsForModel(mid, 1)).toBe(1);
  });
});

describe('--threads on the engine commands', () => {
  for (const cmd of [['generate', '--model', 'x', '--prompt', 'p'], ['score', '--model', 'x', '--text', 't'], ['serve', '--model', os.tmpdir()], ['eval', '--model', 'x', '--data', 'd', '--out', 'o'], ['train', '--config', 'c'], ['demo']]) {
    test(`${cmd[0]} --threads 0 is a usage error`, () => {
      const r = runClipo(...cmd, '--threads', '0');
      expect(r.code).toBe(2);
      expect(r.err).toMatch(/--threads: must be at least 1, got 0/);
    });
  }
  test('eval --threads goes with --model only', () => {
    const r = runClipo('eval', '--endpoint', 'http://127.0.0.1:9/v1', '--served-model', 'm', '--data', 'd', '--out', 'o', '--threads', '2');
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/--threads goes with --model/);
  });
  test('--help of each engine command lists --threads', () => {
    for (const c of ['generate', 'score', 'serve', 'eval', 'train', 'demo']) expect(runClipo(c, '--help').out).toMatch(/--threads <n>/);
  });
});
