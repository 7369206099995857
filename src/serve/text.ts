// Text as tokens arrive: incremental detokenization and stop-string search.

interface Decoder {
  decode(ids: ArrayLike<number>, opts?: { skipSpecialTokens?: boolean }): string;
}

/**
 * Turns a token stream into text pieces whose concatenation is the decoding of the whole stream. A piece is held
 * back while it ends in an incomplete UTF-8 character ("\uFFFD"); each piece is the difference between decoding a
 * short window with and without the newest tokens, so tokenizers whose decoding depends on the previous token
 * (leading-space rules) come out as decoding the whole sequence would.
 */
export class Detokenizer {
  private readonly ids: number[] = [];
  private prefix = 0;
  private read = 0;

  constructor(private readonly tok: Decoder) {}

  private decode(from: number, to: number): string {
    // (the tokenizers library refuses an empty list)
    return to > from ? this.tok.decode(this.ids.slice(from, to), { skipSpecialTokens: true }) : '';
  }

  push(id: number): string {
    this.ids.push(id);
    const before = this.decode(this.prefix, this.read);
    const now = this.decode(this.prefix, this.ids.length);
    if (now.length > before.length && !now.endsWith('\uFFFD')) {
      this.prefix = this.read;
      this.read = this.ids.length;
      return now.slice(before.length);
    }
    return '';
  }

  /** Whatever is still held back (an incomplete character at the end of the stream decodes as "\uFFFD"). */
  flush(): string {
    const before = this.decode(this.prefix, this.read);
    const now = this.decode(this.prefix, this.ids.length);
    this.prefix = this.read = this.ids.length;
    return now.length > before.length ? now.slice(before.length) : '';
  }
}

/** Where the earliest of the stop strings starts at or after `from`, or -1. */
export function findStop(text: string, stops: readonly string[], from: number): number {
  let cut = -1;
  for (const s of stops) {
    const at = text.indexOf(s, Math.max(0, from));
    if (at >= 0 && (cut < 0 || at < cut)) cut = at;
  }
  return cut;
}
