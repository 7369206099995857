// `clipo score`: the log-prob of each token after the first, given the tokens before it:
//   logprobs[i] = log p(x_{i+1} | x_0 .. x_i),  i = 0 .. n-2
// computed by the engine's scoring pass with prompt = the first token and response = the rest.
import chalk from 'chalk';
import type { Command } from 'commander';
import { Engine } from '../../engine/engine.js';
import { renderTable } from '../table.js';
import { BACKEND_HELP, THREADS_HELP, UsageError, backendOption, threadsOption } from '../errors.js';
import { loadForCli, parseTokenList } from './generate.js';

interface ScoreOptions {
  model: string;
  tokens?: string;
  text?: string;
  threads?: string;
  backend?: string;
  json?: boolean;
}

export function registerScore(program: Command): void {
  program
    .command('score')
    .description('log-prob of each token after the first, given the tokens before it')
    .requiredOption('--model <dir>', 'Hugging Face model directory')
    .option('--tokens <ids>', 'comma-separated token ids (at least two)')
    .option('--text <text>', 'text to tokenize and score instead of --tokens (needs the tokenizer)')
    .option('--threads <n>', THREADS_HELP)
    .option('--backend <name>', BACKEND_HELP, 'auto')
    .option('--json', 'print {"logprobs": [...]}')
    .action((opts: ScoreOptions) => runScore(opts));
}

function runScore(opts: ScoreOptions): void {
  if ((opts.tokens === undefined) === (opts.text === undefined)) throw new UsageError('give exactly one of --tokens 1,2,3 or --text TEXT');
  const threads = threadsOption(opts.threads);
  const backend = backendOption(opts.backend);
  const m = loadForCli(opts.model);
  let tokens: Int32Array;
  if (opts.text !== undefined) {
    if (!m.tokenizer) throw new UsageError(`--text: ${opts.model} has no tokenizer.json; use --tokens 1,2,3`);
    tokens = Int32Array.from(m.tokenizer.encode(opts.text));
  } else {
    tokens = parseTokenList('--tokens', opts.tokens!, m.config.vocabSize);
  }
  const flag = opts.text !== undefined ? '--text' : '--tokens';
  if (tokens.length < 2) throw new UsageError(`${flag}: need at least two tokens (the first is only context), got ${tokens.length}`);
  if (tokens.length > m.config.maxPositionEmbeddings) {
    throw new UsageError(`${flag}: ${tokens.length} tokens exceed the model's max_position_embeddings (${m.config.maxPositionEmbeddings})`);
  }

  const engine = Engine.create(m.config, m.weights, { threads, backend });
  m.weights.clear();
  let logprobs: number[];
  try {
    const r = engine.score({ sequences: [{ prompt: tokens.subarray(0, 1), response: tokens.subarray(1) }] });
    logprobs = Array.from(r.logprobs.subarray(0, tokens.length - 1));
  } finally {
    engine.dispose();
  }
  const bad = logprobs.findIndex((x) => !Number.isFinite(x));
  // a NaN here means the model's arithmetic overflowed (or its weights are corrupt): an error, never a null score
  if (bad >= 0) throw new Error(`the log-prob of token ${bad + 1} is ${logprobs[bad]}: the model's computation overflowed (are its weights corrupt?)`);
  if (opts.json) {
    console.log(JSON.stringify({ logprobs }));
    return;
  }
  const tok = m.tokenizer;
  const rows = logprobs.map((lp, i) => ({
    position: i + 1,
    token: tokens[i + 1]!,
    ...(tok ? { text: JSON.stringify(tok.decode([tokens[i + 1]!])) } : {}),
    logprob: lp.toFixed(4),
  }));
  console.log(renderTable(rows));
  const sum = logprobs.reduce((a, x) => a + x, 0);
  console.log(chalk.bold(`sum ${sum.toFixed(4)}  mean ${(sum / logprobs.length).toFixed(4)}  perplexity ${Math.exp(-sum / logprobs.length).toFixed(3)}`));
}
