// ScoreBatch (prompt + response per sequence) to the flat layout the native engine reads, with the checks that
// give a clear error naming the sequence and position.

/** prompt+response sequences; log-probs are of response tokens given everything before them. */
export interface ScoreBatch {
  sequences: Array<{ prompt: Int32Array; response: Int32Array }>;
}

export interface FlatBatch {
  tokens: Int32Array;
  promptLengths: Int32Array;
  responseLengths: Int32Array;
}

/** typed-array kind check that also holds across realms (arrays made by the addon, test sandboxes) */
export function isTyped(x: unknown, kind: 'Int32Array' | 'Float32Array' | 'Uint8Array'): boolean {
  return ArrayBuffer.isView(x) && Object.prototype.toString.call(x) === `[object ${kind}]`;
}

function checkIds(ids: Int32Array, vocab: number, where: string): void {
  for (let i = 0; i < ids.length; i++) {
    const t = ids[i];
    if (t < 0 || t >= vocab) throw new Error(`${where}[${i}]: token id ${t} is out of range [0, ${vocab})`);
  }
}

export function flattenBatch(batch: ScoreBatch, vocab: number): FlatBatch {
  if (!batch || !Array.isArray(batch.sequences) || batch.sequences.length === 0) {
    throw new Error('batch.sequences must be a non-empty array');
  }
  const B = batch.sequences.length;
  const promptLengths = new Int32Array(B);
  const responseLengths = new Int32Array(B);
  let total = 0;
  batch.sequences.forEach((s, b) => {
    if (!isTyped(s.prompt, 'Int32Array')) throw new Error(`sequences[${b}].prompt must be an Int32Array`);
    if (!isTyped(s.response, 'Int32Array')) throw new Error(`sequences[${b}].response must be an Int32Array`);
    if (s.prompt.length === 0) throw new Error(`sequences[${b}].prompt is empty`);
    checkIds(s.prompt, vocab, `sequences[${b}].prompt`);
    checkIds(s.response, vocab, `sequences[${b}].response`);
    promptLengths[b] = s.prompt.length;
    responseLengths[b] = s.response.length;
    total += s.prompt.length + s.response.length;
  });
  const tokens = new Int32Array(total);
  let at = 0;
  for (const s of batch.sequences) {
    tokens.set(s.prompt, at);
    tokens.set(s.response, at + s.prompt.length);
    at += s.prompt.length + s.response.length;
  }
  return { tokens, promptLengths, responseLengths };
}
