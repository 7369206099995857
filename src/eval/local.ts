// TEMPORARY: the local-model backend needs the native engine and the model-directory loader (in progress).
import type { Generator } from './types.js';

export async function createLocalGenerator(opts: { dir: string; concurrency: number; log: (m: string) => void }): Promise<Generator> {
  throw new Error(`--model ${opts.dir}: the local engine backend is not available in this build yet; use --endpoint`);
}
