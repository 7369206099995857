// Pre-parse screening of a normalised answer (and ground truth) against LaTeX the compute engine's parser takes
// exponential time on. Measured on @cortex-js/compute-engine 0.27: a run of 24 `-` signs takes ~15 s to parse, 30
// over 60 s; each extra sign roughly doubles it (so do runs of `+`); 12 `\|` take ~18 s, and three norms
// `\|x\|+\|y\|+\|z\|` already ~1 s; `\lvert` runs grow the same way. So:
//   - runs of signs collapse to one sign by parity (`--1` -> `+1`, `+-+x` -> `-x`): the same number, parsed at once;
//   - `\lvert \rvert \vert` become `|`, and `\lVert \rVert \Vert` become `\|` (normalize.ts does that), then more
//     than MAX_NORM_BARS `\|` or MAX_ABS_BARS `|` are refused: no answer needs them;
//   - three or more binary operators in a row (`1\cdot\cdot\cdot2`, `\mp\mp\mp`) are refused: not mathematics;
//   - so is one command four or more times in a row (`\sin\sin\sin\sin x`, `\partial` or `\nabla` runs; found by
//     fuzzing token soups, each of which took seconds).
//   - unbalanced brackets are refused before parsing (unclosed `(`, `[` or `\{` make the parser search
//     exponentially); compare.ts checks that where an answer reaches the parser, so `B) text` still names option B;
// This bounds the common cases cheaply; the hard bound for whatever slips through is the worker pool (pool.ts).

export const MAX_NORM_BARS = 4;
export const MAX_ABS_BARS = 12;

export type Screened = { ok: true; text: string } | { ok: false; reason: string };

const SIGN_RUN = /[+-](?:\s*[+-])+/g;
const OP = String.raw`(?:\\(?:cdot|times|div|ast|star|pm|mp)(?![a-zA-Z])|[*/+-])`;
const OP_RUN = new RegExp(String.raw`${OP}(?:\s*${OP}){2,}`);
// the same command four times in a row (`\sin\sin\sin\sin`, `\partial` x 11, `\int` x 7 each take seconds)
const COMMAND_RUN = /(\\[a-zA-Z]+)(?![a-zA-Z])(?:\s*\1(?![a-zA-Z])){3,}/;

/** `--` -> `+`, `-+-` -> `+`, `+-` -> `-`. */
export function collapseSigns(s: string): string {
  return s.replace(SIGN_RUN, (run) => ((run.match(/-/g)?.length ?? 0) % 2 === 1 ? '-' : '+'));
}

export function screenLatex(s: string): Screened {
  // nothing to screen without signs, bars, operators or commands (most numeric answers)
  if (!/[-+|\\*/]/.test(s)) return { ok: true, text: s };
  const text = collapseSigns(s);
  const norms = text.match(/\\\|/g)?.length ?? 0;
  if (norms > MAX_NORM_BARS) return { ok: false, reason: `more than ${MAX_NORM_BARS} \\| delimiters` };
  const bars = text.replace(/\\\|/g, '').match(/\|/g)?.length ?? 0;
  if (bars > MAX_ABS_BARS) return { ok: false, reason: `more than ${MAX_ABS_BARS} | delimiters` };
  if (OP_RUN.test(text.replace(/\*\*/g, '^'))) return { ok: false, reason: 'a run of three or more operators' };
  const cmd = COMMAND_RUN.exec(text);
  if (cmd) return { ok: false, reason: `${cmd[1]} four or more times in a row` };
  return { ok: true, text };
}

/**
 * Round and square brackets balance as one kind (half-open intervals mix them), escaped braces `\{ \}` as another;
 * the depth never goes below zero. Unclosed openers send the parser into a search exponential in their number
 * (ten `[` take over 20 s).
 */
export function balanced(s: string): boolean {
  let round = 0;
  let brace = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === '\\') {
      const n = s[i + 1];
      if (n === '{') brace++;
      else if (n === '}' && --brace < 0) return false;
      i++;
    } else if (c === '(' || c === '[') round++;
    else if ((c === ')' || c === ']') && --round < 0) return false;
  }
  return round === 0 && brace === 0;
}
