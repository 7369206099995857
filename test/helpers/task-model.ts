// A tiny Qwen2 model for end-to-end training tests: random weights, supervised for a moment (on the CPU engine) on
// the built-in task's answers ("The answer is \boxed{N}.") so that its samples are right some of the time and RL has
// mixed rewards to learn from; saved as a Hugging Face directory with the task's tokenizer, beside the task's jsonl
// data. Used by test/train-cli.test.ts (CPU) and test/train-cuda.test.ts (the same runs on the CUDA engine).
import path from 'node:path';
import { parseTrainConfig } from '../../src/config/load.js';
import { loadDataset } from '../../src/data/load.js';
import { Engine } from '../../src/engine/engine.js';
import { saveModelDir } from '../../src/model/hfdir.js';
import { initModel } from '../../src/model/init.js';
import { ModelTokenizer } from '../../src/model/tokenizer.js';
import { packageRoot } from '../../src/native.js';
import { buildPrompts } from '../../src/rl/run.js';
import { makeTaskData } from '../../src/task/records.js';

export const taskTokenizerDir = path.join(packageRoot, 'assets', 'task');

/**
 * Writes the task data (dir/task/train/task.jsonl, 32 rows; `test` rows per test split, default 1) and the warmed-up
 * model (dir/model); returns both paths.
 */
export async function makeTaskModel(dir: string, opts: { test?: number } = {}): Promise<{ modelDir: string; dataFile: string }> {
  const modelDir = path.join(dir, 'model');
  const dataFile = path.join(dir, 'task', 'train', 'task.jsonl');
  makeTaskData(path.join(dir, 'task'), { seed: 1, train: 32, test: opts.test ?? 1, format: 'jsonl' });
  const tok = ModelTokenizer.fromDir(taskTokenizerDir);
  const { config, weights } = initModel({ architecture: 'qwen2', numLayers: 2, hiddenSize: 32, numHeads: 4, numKvHeads: 2, intermediateSize: 64, vocabSize: 296, tieWordEmbeddings: true, eosTokenIds: [tok.eosTokenId!] }, 5);
  const engine = Engine.create(config, weights, { threads: 1 });
  const rows = (await loadDataset(dataFile)).rows;
  const c = parseTrainConfig({ model: { path: modelDir }, data: { train_files: [dataFile], max_prompt_tokens: 96 } });
  const { prompts } = buildPrompts(rows, tok, c);
  const batch = { sequences: prompts.map((p) => ({ prompt: p.tokens, response: Int32Array.from([...tok.encode(`The answer is \\boxed{${p.groundTruth}}.`), tok.eosTokenId!]) })) };
  for (let s = 0; s < 120; s++) {
    engine.zeroGrad();
    engine.crossEntropyStep(batch);
    engine.adamwStep({ lr: 3e-3 });
  }
  saveModelDir(modelDir, config, engine.exportWeights(), { copyFrom: taskTokenizerDir });
  engine.dispose();
  return { modelDir, dataFile };
}
