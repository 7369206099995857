// `clipo model init ...`: a fresh random model as a Hugging Face directory; `clipo model info DIR`: what a model
// directory holds.
import chalk from 'chalk';
import type { Command } from 'commander';
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { saveModelDir, loadModelDir } from '../../model/hfdir.js';
import { initModel, type InitShape } from '../../model/init.js';
import { parameterCount } from '../../model/tensors.js';
import { BYTE_TOKENIZER_VOCAB, byteTokenizerDir, ModelTokenizer } from '../../model/tokenizer.js';
import type { Architecture } from '../../model/types.js';
import { UsageError, parseNumberOption } from '../errors.js';

interface InitOptions {
  arch: string;
  layers: string;
  hidden: string;
  heads: string;
  kvHeads?: string;
  intermediate: string;
  vocab: string;
  out: string;
  seed: string;
  tokenizer?: string;
  tieEmbeddings?: boolean;
  dtype: string;
  ropeTheta: string;
  maxPositions: string;
  force?: boolean;
  json?: boolean;
}

export function registerModel(program: Command): void {
  const model = program.command('model').description('create and inspect Hugging Face model directories (Qwen2, Llama)');

  model
    .command('init')
    .description('write a randomly initialized model (config.json + model.safetensors [+ tokenizer]) to a directory')
    .requiredOption('--arch <name>', 'qwen2 or llama')
    .requiredOption('--layers <n>', 'number of decoder layers')
    .requiredOption('--hidden <n>', 'hidden size')
    .requiredOption('--heads <n>', 'attention heads')
    .option('--kv-heads <n>', 'key/value heads (grouped-query attention; default: --heads)')
    .requiredOption('--intermediate <n>', 'MLP intermediate size')
    .requiredOption('--vocab <n>', 'vocabulary size')
    .requiredOption('--out <dir>', 'output directory')
    .option('--seed <n>', 'random seed', '0')
    .option('--tokenizer <file|byte>', "a tokenizer.json (its tokenizer_config.json etc. are copied too) or 'byte' for the built-in byte-level tokenizer")
    .option('--tie-embeddings', 'share the input embedding with the output layer')
    .option('--dtype <dtype>', 'storage dtype: f32 or bf16', 'f32')
    .option('--rope-theta <x>', 'RoPE base', '10000')
    .option('--max-positions <n>', 'max_position_embeddings', '4096')
    .option('--force', 'overwrite a non-empty output directory')
    .option('--json', 'print a JSON summary')
    .action((opts: InitOptions) => runInit(opts));

  model
    .command('info')
    .description('validate a model directory and print its architecture, parameter count and tokenizer')
    .argument('<dir>', 'model directory')
    .option('--json', 'print JSON')
    .action((dir: string, opts: { json?: boolean }) => {
      const m = loadModelDir(dir);
      const c = m.config;
      const info = {
        dir,
        architecture: c.hfArchitecture,
        parameters: parameterCount(c),
        layers: c.numLayers,
        hidden: c.hiddenSize,
        heads: c.numHeads,
        kvHeads: c.numKvHeads,
        headDim: c.headDim,
        intermediate: c.intermediateSize,
        vocab: c.vocabSize,
        tiedEmbeddings: c.tieWordEmbeddings,
        ropeTheta: c.ropeTheta,
        ropeScaling: c.ropeScaling?.type ?? 'default',
        storedDtypes: [...new Set(m.dtypes.values())],
        eosTokenIds: c.eosTokenIds,
        tokenizer: m.tokenizer ? { vocab: m.tokenizer.vocabSize, chatTemplate: m.tokenizer.chatTemplate !== null, eos: m.tokenizer.eosToken } : null,
      };
      if (opts.json) console.log(JSON.stringify(info, null, 2));
      else for (const [k, v] of Object.entries(info)) console.log(`${chalk.bold(k.padEnd(15))} ${typeof v === 'object' ? JSON.stringify(v) : v}`);
    });

  // Flag errors in subcommands throw (and main() reports them) instead of calling process.exit directly.
  for (const c of model.commands) c.exitOverride();
}

function runInit(opts: InitOptions): void {
  if (opts.arch !== 'qwen2' && opts.arch !== 'llama') throw new UsageError(`--arch: expected qwen2 or llama, got '${opts.arch}'`);
  const int = (name: string, raw: string, min = 1, max = 1 << 24) => parseNumberOption(name, raw, { integer: true, min, max });
  const shape: InitShape = {
    architecture: opts.arch as Architecture,
    numLayers: int('--layers', opts.layers, 1, 1024),
    hiddenSize: int('--hidden', opts.hidden),
    numHeads: int('--heads', opts.heads, 1, 4096),
    numKvHeads: 0,
    intermediateSize: int('--intermediate', opts.intermediate),
    vocabSize: int('--vocab', opts.vocab, 1, 1 << 22),
    tieWordEmbeddings: !!opts.tieEmbeddings,
    ropeTheta: parseNumberOption('--rope-theta', opts.ropeTheta, { min: 1 }),
    maxPositionEmbeddings: int('--max-positions', opts.maxPositions, 1, 1 << 24),
  };
  shape.numKvHeads = opts.kvHeads === undefined ? shape.numHeads : int('--kv-heads', opts.kvHeads, 1, 4096);
  const seed = parseNumberOption('--seed', opts.seed, { integer: true, min: 0, max: Number.MAX_SAFE_INTEGER });
  if (shape.hiddenSize % shape.numHeads !== 0) throw new UsageError(`--heads: ${shape.numHeads} does not divide --hidden ${shape.hiddenSize}`);
  if ((shape.hiddenSize / shape.numHeads) % 2 !== 0) {
    throw new UsageError(`--hidden / --heads = ${shape.hiddenSize / shape.numHeads} must be even (rotary embeddings rotate pairs)`);
  }
  if (shape.numHeads % shape.numKvHeads !== 0) throw new UsageError(`--kv-heads: ${shape.numKvHeads} does not divide --heads ${shape.numHeads}`);
  if (opts.dtype !== 'f32' && opts.dtype !== 'bf16') throw new UsageError(`--dtype: expected f32 or bf16, got '${opts.dtype}'`);

  const out = path.resolve(opts.out);
  if (existsSync(out) && (!statSync(out).isDirectory() || readdirSync(out).length > 0) && !opts.force) {
    throw new UsageError(`--out: ${opts.out} exists and is not empty (use --force to overwrite)`);
  }

  // The tokenizer decides the special token ids the config records.
  let tokDir: string | undefined;
  let tokenizer: ModelTokenizer | undefined;
  if (opts.tokenizer === 'byte') {
    if (shape.vocabSize < BYTE_TOKENIZER_VOCAB) {
      throw new UsageError(`--vocab: the byte tokenizer needs at least ${BYTE_TOKENIZER_VOCAB} (256 bytes + 3 special tokens), got ${shape.vocabSize}`);
    }
    tokDir = byteTokenizerDir;
  } else if (opts.tokenizer !== undefined) {
    const p = path.resolve(opts.tokenizer);
    if (!existsSync(p)) throw new UsageError(`--tokenizer: ${opts.tokenizer} does not exist`);
    tokDir = statSync(p).isDirectory() ? p : path.dirname(p);
    if (!statSync(p).isDirectory() && path.basename(p) !== 'tokenizer.json') {
      throw new UsageError(`--tokenizer: expected a tokenizer.json file (or a directory holding one), got ${opts.tokenizer}`);
    }
  }
  if (tokDir) {
    try {
      tokenizer = ModelTokenizer.fromDir(tokDir);
    } catch (e) {
      throw new UsageError(`--tokenizer: ${(e as Error).message}`);
    }
    if (tokenizer.vocabSize > shape.vocabSize) {
      throw new UsageError(`--vocab: the tokenizer uses ids up to ${tokenizer.vocabSize - 1}, so --vocab must be at least ${tokenizer.vocabSize}, got ${shape.vocabSize}`);
    }
    shape.bosTokenId = tokenizer.bosTokenId;
    const eos = tokenizer.eosTokenId;
    shape.eosTokenIds = eos === null ? [] : [eos];
    shape.padTokenId = tokenizer.padTokenId;
  }

  const { config, weights } = initModel(shape, seed);
  const files = saveModelDir(out, config, weights, { dtype: opts.dtype as 'f32' | 'bf16', copyFrom: tokDir, copyGenerationConfig: false, force: !!opts.force });
  const summary = { out, architecture: config.hfArchitecture, parameters: parameterCount(config), dtype: opts.dtype, seed, files };
  if (opts.json) console.log(JSON.stringify(summary, null, 2));
  else console.log(`${chalk.green('wrote')} ${out}: ${config.hfArchitecture}, ${summary.parameters.toLocaleString('en-US')} parameters (${opts.dtype}), ${files.join(', ')}`);
}
