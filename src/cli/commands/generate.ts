// `clipo generate`: sample continuations from a model directory with the engine (KV cache, temperature, top-p,
// seeded: the same seed gives the same tokens).
import chalk from 'chalk';
import type { Command } from 'commander';
import { Engine } from '../../engine/engine.js';
import { openModelDir, type LazyModelDir } from '../../model/hfdir.js';
import { BACKEND_HELP, THREADS_HELP, UsageError, backendOption, parseNumberOption, threadsOption } from '../errors.js';

interface GenerateOptions {
  model: string;
  prompt?: string;
  promptTokens?: string;
  chat?: boolean;
  system?: string;
  maxNewTokens: string;
  temperature: string;
  topP: string;
  seed: string;
  n: string;
  stopTokens?: string;
  threads?: string;
  backend?: string;
  json?: boolean;
}

/** "1,2,3" -> ids, each an integer in [0, vocab). */
export function parseTokenList(flag: string, raw: string, vocab: number): Int32Array {
  const parts = raw.split(',').map((s) => s.trim());
  if (parts.length === 0 || parts.some((p) => p === '')) throw new UsageError(`${flag}: expected comma-separated token ids like 1,2,3, got '${raw}'`);
  return Int32Array.from(parts, (p, i) => {
    const v = Number(p);
    if (!/^\d+$/.test(p) || !Number.isSafeInteger(v)) throw new UsageError(`${flag}: item ${i} ('${p}') is not a non-negative integer`);
    if (v >= vocab) throw new UsageError(`${flag}: item ${i}: token id ${v} is out of range (vocab_size = ${vocab})`);
    return v;
  });
}

/** Opens a model directory for the CLI (weights read as the engine takes them): errors become one-line usage
 *  errors naming the directory. */
export function loadForCli(dir: string): LazyModelDir {
  try {
    return openModelDir(dir);
  } catch (e) {
    throw new UsageError(`--model: ${(e as Error).message}`);
  }
}

export function registerGenerate(program: Command): void {
  program
    .command('generate')
    .description('sample continuations of a prompt from a model directory (same seed, same output)')
    .requiredOption('--model <dir>', 'Hugging Face model directory (config.json + safetensors [+ tokenizer])')
    .option('--prompt <text>', 'prompt text (needs the tokenizer in the model directory)')
    .option('--prompt-tokens <ids>', 'prompt as comma-separated token ids, e.g. 1,2,3')
    .option('--chat', "wrap --prompt as a user message with the model's chat template (generation prompt added)")
    .option('--system <text>', 'system message for --chat')
    .option('--max-new-tokens <n>', 'most tokens to generate per sample', '64')
    .option('--temperature <t>', 'sampling temperature (0 = greedy)', '1')
    .option('--top-p <p>', 'nucleus sampling mass in (0, 1]', '1')
    .option('--seed <n>', 'random seed', '0')
    .option('--n <k>', 'samples per prompt', '1')
    .option('--stop-tokens <ids>', 'token ids that end a sample (default: eos_token_id of config.json and generation_config.json, and the tokenizer eos)')
    .option('--threads <n>', THREADS_HELP)
    .option('--backend <name>', BACKEND_HELP, 'auto')
    .option('--json', 'print one JSON document with tokens, log-probs and text')
    .action((opts: GenerateOptions) => runGenerate(opts));
}

function runGenerate(opts: GenerateOptions): void {
  if ((opts.prompt === undefined) === (opts.promptTokens === undefined)) throw new UsageError('give exactly one of --prompt TEXT or --prompt-tokens 1,2,3');
  if (opts.chat && opts.prompt === undefined) throw new UsageError('--chat applies to --prompt TEXT (not to --prompt-tokens)');
  if (opts.system !== undefined && !opts.chat) throw new UsageError('--system needs --chat');
  const maxNewTokens = parseNumberOption('--max-new-tokens', opts.maxNewTokens, { integer: true, min: 1, max: 1 << 20 });
  const temperature = parseNumberOption('--temperature', opts.temperature, { min: 0, max: 1000 });
  const topP = parseNumberOption('--top-p', opts.topP, { min: Number.MIN_VALUE, max: 1 });
  const seed = parseNumberOption('--seed', opts.seed, { integer: true, min: 0, max: 2 ** 53 - 1 });
  const n = parseNumberOption('--n', opts.n, { integer: true, min: 1, max: 100000 });
  const threads = threadsOption(opts.threads);
  const backend = backendOption(opts.backend);

  const m = loadForCli(opts.model);
  const { config, tokenizer } = m;
  let prompt: Int32Array;
  let promptText: string | undefined;
  if (opts.prompt !== undefined) {
    if (!tokenizer) throw new UsageError(`--prompt: ${opts.model} has no tokenizer.json; use --prompt-tokens 1,2,3`);
    if (opts.chat) {
      if (tokenizer.chatTemplate === null) throw new UsageError(`--chat: ${opts.model} has no chat template`);
      const messages = [...(opts.system !== undefined ? [{ role: 'system', content: opts.system }] : []), { role: 'user', content: opts.prompt }];
      promptText = tokenizer.applyChatTemplate(messages, { addGenerationPrompt: true });
    } else {
      promptText = opts.prompt;
    }
    prompt = Int32Array.from(tokenizer.encode(promptText));
    if (prompt.length === 0) throw new UsageError('--prompt: the prompt encodes to no tokens');
  } else {
    prompt = parseTokenList('--prompt-tokens', opts.promptTokens!, config.vocabSize);
  }
  if (prompt.length + maxNewTokens > config.maxPositionEmbeddings) {
    throw new UsageError(`prompt (${prompt.length} tokens) + --max-new-tokens ${maxNewTokens} exceeds the model's max_position_embeddings (${config.maxPositionEmbeddings})`);
  }
  const stopTokens = opts.stopTokens !== undefined ? Array.from(parseTokenList('--stop-tokens', opts.stopTokens, config.vocabSize)) : m.stopTokenIds;

  const engine = Engine.create(config, m.weights, { threads, backend });
  m.weights.clear(); // the engine holds its own copy (read one tensor at a time from the files)
  try {
    const { sequences } = engine.generate({ prompts: [prompt], n, maxNewTokens, temperature, topP, seed, stopTokens });
    const samples = sequences.map((s) => {
      const ids = Array.from(s.tokens);
      // the text of what was generated, without the stop token that ended it
      const body = s.finishReason === 'stop' ? ids.slice(0, -1) : ids;
      return {
        index: s.sampleIndex,
        tokens: ids,
        logprobs: Array.from(s.logprobs),
        finishReason: s.finishReason,
        ...(tokenizer ? { text: tokenizer.decode(body) } : {}),
      };
    });
    if (opts.json) {
      const doc = {
        model: opts.model,
        prompt: { ...(promptText !== undefined ? { text: promptText } : {}), tokens: Array.from(prompt) },
        settings: { maxNewTokens, temperature, topP, seed, n, stopTokens, backend },
        samples,
      };
      console.log(JSON.stringify(doc));
      return;
    }
    for (const s of samples) {
      if (n > 1) console.log(chalk.dim(`--- sample ${s.index} (${s.tokens.length} tokens, ${s.finishReason}) ---`));
      console.log(s.text ?? s.tokens.join(','));
    }
  } finally {
    engine.dispose();
  }
}
