// Rebuilds assets/task/tokenizer.json and tokenizer_config.json from the built-in task generator's vocabulary.
// Run after changing the task's templates or word lists:  npm run build:ts && node dist/scripts/build-task-tokenizer.js
// (a test fails while the committed files differ from what this script would write).
import path from 'node:path';
import { writeFileAtomic } from '../src/util/atomic.js';
import { buildTaskTokenizer, taskTokenizerDir } from '../src/task/tokenizer.js';

const dir = process.argv[2] ? path.resolve(process.argv[2]) : taskTokenizerDir();
const { tokenizer, config } = buildTaskTokenizer();
writeFileAtomic(path.join(dir, 'tokenizer.json'), JSON.stringify(tokenizer, null, 2) + '\n');
writeFileAtomic(path.join(dir, 'tokenizer_config.json'), JSON.stringify(config, null, 2) + '\n');
const size = Object.keys((tokenizer.model as { vocab: Record<string, number> }).vocab).length;
console.log(`wrote ${path.join(dir, 'tokenizer.json')} and tokenizer_config.json (vocabulary: ${size} tokens)`);
