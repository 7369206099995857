// Answer extraction: the content of the LAST \boxed{...} or \fbox{...} of a completion, with balanced braces.
// Escaped braces (\{ and \}) are literal characters, not grouping, so `\boxed{\{1,2\}}` yields `\{1,2\}`.
// `\boxed 5` (no braces) takes the token up to the next space or `$`.

export interface Extracted {
  /** the box content, or null when there is no complete box */
  content: string | null;
  reason?: string;
}

const COMMANDS = ['\\boxed', '\\fbox'];

/** Position of the last `\boxed` / `\fbox` command (not a longer command name such as \boxedfoo), or -1. */
function lastCommand(text: string): { at: number; len: number } {
  let best = { at: -1, len: 0 };
  for (const cmd of COMMANDS) {
    let from = text.length;
    while (from >= 0) {
      const i = text.lastIndexOf(cmd, from);
      if (i < 0) break;
      const next = text.charCodeAt(i + cmd.length);
      const isLetter = (next >= 65 && next <= 90) || (next >= 97 && next <= 122);
      if (!isLetter) {
        if (i > best.at) best = { at: i, len: cmd.length };
        break;
      }
      from = i - 1;
    }
  }
  return best;
}

export function lastBoxed(text: string): Extracted {
  const { at, len } = lastCommand(text);
  if (at < 0) return { content: null, reason: 'no \\boxed{} answer' };
  let i = at + len;
  while (i < text.length && (text[i] === ' ' || text[i] === '\t')) i++;
  if (i >= text.length) return { content: null, reason: 'empty \\boxed answer' };
  if (text[i] !== '{') {
    // `\boxed 5`: the following token
    let j = i;
    while (j < text.length && !/[\s$]/.test(text[j])) j++;
    const tok = text.slice(i, j);
    return tok ? { content: tok } : { content: null, reason: 'empty \\boxed answer' };
  }
  let depth = 0;
  for (let j = i; j < text.length; j++) {
    const c = text[j];
    if (c === '\\') {
      j++; // skip the escaped character (\{, \}, \\)
      continue;
    }
    if (c === '{') depth++;
    else if (c === '}') {
      depth--;
      if (depth === 0) {
        const content = text.slice(i + 1, j).trim();
        return content ? { content } : { content: null, reason: 'empty \\boxed{}' };
      }
    }
  }
  return { content: null, reason: 'unbalanced braces in the last \\boxed{' };
}

/** A ground truth: a MATH training row holds the whole worked solution, whose last box is the answer. */
export function groundTruthAnswer(gt: string): string {
  if (gt.includes('\\boxed') || gt.includes('\\fbox')) {
    const e = lastBoxed(gt);
    if (e.content !== null) return e.content;
  }
  return gt.trim();
}

/** The contents of every complete `\boxed{...}` / `\fbox{...}` in order (at most 50; used by `boxes: 'all'`). */
export function allBoxed(text: string): string[] {
  const out: string[] = [];
  let rest = text;
  // from the end: the last box of what is left, then cut the text before it
  while (out.length < 50) {
    const { at } = lastCommand(rest);
    if (at < 0) break;
    const e = lastBoxed(rest);
    if (e.content !== null) out.push(e.content);
    rest = rest.slice(0, at);
  }
  return out.reverse();
}
