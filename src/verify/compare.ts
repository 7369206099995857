// Equivalence of a normalised answer and a normalised ground truth.
//
// Order (cheapest first): exact text; multiple-choice letters; True/False; words; plain numbers (integers exactly,
// decimals with a tolerance and the ground truth's rounding); structures (tuples, intervals and lists in order,
// bare answer lists and \pm as unordered sets, unions, matrices) element by element; then each element with the
// compute engine (isSame, isEqual) and, where the engine cannot decide, numerically at random points.
import { splitWithOps } from './split.js';
import { compactKey } from './normalize.js';
import { evaluate, exactInteger, samplePoints, Unsupported } from './numeric.js';
import { constantValue, engineEqual, inScope, numericEqual, parse, parseGroundTruth, type Parsed } from './cas.js';
import { balanced } from './guard.js';
import { dropLabels, hasTopEquals, isLabel, relationInterval } from './relation.js';

export interface CompareResult {
  equal: boolean;
  reason?: string;
}

export interface CompareOptions {
  /** give up (unequal, with a reason) after this many milliseconds between steps */
  deadline: number;
}

export class Timeout extends Error {}

// ---------------------------------------------------------------------------------------------------------------
// Multiple choice and booleans

/** A ground truth that is one option letter: `B`, `(b)`, `B.` (theoremqa writes `(a)`). */
export function choiceLetter(gt: string): string | null {
  const m = /^(?:\(([A-Za-z])\)|([A-Z])\.?)$/.exec(gt);
  return m ? (m[1] ?? m[2]).toUpperCase() : null;
}

/** The letter an answer names: `B`, `(B)`, `B.`, `B)`, `B: text`, `B. text`, `(B) text`, `Option B`. */
export function answerLetter(ans: string): string | null {
  const s = ans.replace(/^(?:option|answer|choice)\s*:?\s*/i, '');
  const m = /^(?:\(([A-Za-z])\)|([A-Za-z])(?=$|[.):,\]]|\s))(.*)$/s.exec(s);
  if (!m) return null;
  // what follows the letter: a delimiter and the option's text, or nothing; "a + b" is algebra, not option A
  const rest = m[3].replace(/^[.):,\]]/, '').trim();
  if (/^[-+*/=^_<>]/.test(rest)) return null;
  // "B, C", "B and C", "B or C": more than one option is no answer
  if (/^\s*(?:[,;&/]|\b(?:and|or)\b)\s*\(?[A-Za-z]\)?(?:$|[\s,.;)])/i.test(m[3])) return null;
  return (m[1] ?? m[2]).toUpperCase();
}

function choiceLetters(s: string): string[] | null {
  const parts = s.split(/\s*,\s*|\s+and\s+|\s+/).filter(Boolean);
  if (parts.length < 2) return null;
  const out: string[] = [];
  for (const p of parts) {
    const m = /^\(?([A-Za-z])\)?$/.exec(p);
    if (!m) return null;
    out.push(m[1].toUpperCase());
  }
  return out;
}

const BOOL = /^(true|false)$/i;

// ---------------------------------------------------------------------------------------------------------------
// Plain numbers

const PLAIN_NUMBER = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/;

export function isPlainNumber(s: string): boolean {
  return PLAIN_NUMBER.test(s);
}

/** "025" -> 25n, "142.0" -> 142n, "1.5" -> null */
function integerOf(s: string): bigint | null {
  const m = /^([+-]?)(\d+)(?:\.0*)?$/.exec(s);
  if (!m) return null;
  const v = BigInt(m[2]);
  return m[1] === '-' ? -v : v;
}

/** Decimal places of a ground truth written with a non-zero fraction (32.5 -> 1, 0.333 -> 3), else 0. */
function decimals(s: string): number {
  const m = /^[+-]?\d*\.(\d+)$/.exec(s);
  if (!m || /^0+$/.test(m[1])) return 0;
  return m[1].length;
}

/**
 * A numeric answer `a` against a plain-number ground truth `gt` (text form `gtText`).
 * Integers compare exactly (leading zeros and ".0" ignored); otherwise a relative tolerance of 1e-9; and a ground
 * truth written with d decimals accepts a more precise answer that rounds to it (TheoremQA writes 0.333 for 1/3):
 * round(a, d) == gt, when the answer is not itself a plain decimal with d or fewer decimals and the ground truth
 * has at least 3 significant digits (so 0.45 does not pass for 0.5).
 */
export function numberMatches(a: number, aText: string | null, gtText: string): boolean {
  const gInt = integerOf(gtText);
  if (aText !== null) {
    const aInt = integerOf(aText);
    if (gInt !== null && aInt !== null) return gInt === aInt;
  }
  const g = Number(gtText);
  if (!Number.isFinite(a) || !Number.isFinite(g)) return a === g;
  // an integer ground truth: the value to within float64 rounding of a computation, never a unit off
  // (1e-9 relative would let 10^9 + 1 pass for 10^9)
  if (gInt !== null) return Math.abs(g) < 2 ** 53 && Math.abs(a - g) <= Math.max(1e-9, 1e-13 * Math.abs(g));
  if (a === g || Math.abs(a - g) <= 1e-9 * Math.max(Math.abs(a), Math.abs(g))) return true;
  const sci = /^[+-]?(\d*)\.?(\d*)[eE][+-]?\d+$/.exec(gtText);
  if (sci) {
    // 9.9e-05: the same number of significant digits
    const sig = (sci[1] + sci[2]).replace(/^0+/, '').length;
    if (sig >= 1 && sig <= 15 && (aText === null || !isPlainNumber(aText) || significant(aText) > sig)) return Number(a.toPrecision(sig)) === g;
    return false;
  }
  const d = decimals(gtText);
  if (d === 0 || d > 12 || significant(gtText) < 3) return false;
  if (aText !== null && isPlainNumber(aText) && !/[eE]/.test(aText) && decimals(aText) <= d) return false;
  const p = 10 ** d;
  const r = Math.round(Math.abs(a) * p + 1e-9) / p;
  return Math.abs(Math.sign(a) * r - g) <= 1e-12 * Math.max(1, Math.abs(g));
}

function significant(s: string): number {
  const m = /^[+-]?(\d*)\.?(\d*)/.exec(s);
  return m ? (m[1] + m[2]).replace(/^0+/, '').length : 0;
}

// ---------------------------------------------------------------------------------------------------------------
// Structures

type Node =
  | { kind: 'atom'; text: string }
  | { kind: 'seq'; open: string; close: string; items: Node[]; ordered: boolean }
  | { kind: 'union'; parts: Node[] }
  | { kind: 'matrix'; rows: Node[][] };

const OPENERS = ['\\{', '(', '['];
const CLOSERS = ['\\}', ')', ']'];

/** Splits at top-level occurrences of `sep` (a regex matched at each position), ignoring bracketed parts. */
function splitTop(s: string, sep: RegExp): string[] {
  return splitWithOps(s, sep).parts;
}

/** The outer bracket pair if it encloses the whole string (kinds may differ: half-open intervals). */
function outerBrackets(s: string): { open: string; close: string; inner: string } | null {
  const open = OPENERS.find((o) => s.startsWith(o));
  const close = CLOSERS.find((c) => s.endsWith(c));
  if (!open || !close || s.length < open.length + close.length) return null;
  const inner = s.slice(open.length, s.length - close.length);
  // the inner part must be balanced on its own, so "(1,2)+(3,4)" is not one bracketed structure
  let depth = 0;
  for (let i = 0; i < inner.length; i++) {
    const c = inner[i];
    if (c === '\\' && (inner[i + 1] === '{' || inner[i + 1] === '}')) {
      depth += inner[i + 1] === '{' ? 1 : -1;
      i++;
    } else if (c === '(' || c === '[' || c === '{') depth++;
    else if (c === ')' || c === ']' || c === '}') depth--;
    if (depth < 0) return null;
  }
  return depth === 0 ? { open, close, inner } : null;
}

const MATRIX = /^\\begin\{([pbBvV]?matrix|array)\}(?:\{[^{}]*\})?([\s\S]*)\\end\{\1\}$/;

/** In a set or a bare list, `1 \pm \sqrt5` stands for two elements. */
function flattenPm(nodes: Node[]): Node[] {
  return nodes.flatMap((n) => (n.kind === 'seq' && n.open === '' && !n.ordered ? n.items : [n]));
}

export function structure(s: string, depth = 0): Node {
  s = s.trim();
  if (depth > 6) return { kind: 'atom', text: s };
  const mat = MATRIX.exec(s);
  if (mat) {
    const rows = mat[2].split(/\\\\/).map((r) => r.trim()).filter((r) => r !== '');
    return { kind: 'matrix', rows: rows.map((r) => r.split('&').map((c) => structure(c, depth + 1))) };
  }
  const union = splitTop(s, /\\cup(?![a-zA-Z])|∪/y);
  if (union.length > 1) return { kind: 'union', parts: union.map((p) => structure(p, depth + 1)) };
  const br = outerBrackets(s);
  if (br) {
    // `\left[\begin{array}{cc} ... \end{array}\right]`: the brackets belong to the matrix
    if (MATRIX.test(br.inner.trim())) return structure(br.inner, depth + 1);
    let items = splitTop(br.inner, /,/y);
    // `(0;0;0)`: semicolons separate when there are no commas
    if (items.length === 1) items = splitTop(br.inner, /;/y);
    const isSet = br.open === '\\{';
    if (items.length > 1 || br.open !== '(' || br.close !== ')') {
      if (items.length === 1 && items[0] === '') return { kind: 'seq', open: br.open, close: br.close, items: [], ordered: true };
      const nodes = items.map((x) => structure(x, depth + 1));
      return { kind: 'seq', open: br.open, close: br.close, items: isSet ? flattenPm(nodes) : nodes, ordered: !isSet };
    }
    return structure(br.inner, depth + 1);
  }
  // bare lists: "1, -2", "0 or 4", "3; 5"
  const items = splitTop(s, /\s*(?:,|;|\bor\b|\band\b)\s*/y).filter((x) => x !== '');
  if (items.length > 1) return { kind: 'seq', open: '', close: '', items: flattenPm(items.map((x) => structure(x, depth + 1))), ordered: false };
  // one \pm anywhere stands for two values: `a \pm b` -> {a+b, a-b}, `\frac{-1\pm\sqrt5}{2}` -> both fractions
  const pms = s.match(/\\pm(?![a-zA-Z])|±/g);
  if (pms && pms.length === 1) {
    const at = s.search(/\\pm(?![a-zA-Z])|±/);
    const len = s[at] === '±' ? 1 : 3;
    const plus = (s.slice(0, at) + '+' + s.slice(at + len)).replace(/^\s*\+/, '');
    const minus = s.slice(0, at) + '-' + s.slice(at + len);
    if (s.slice(at + len).trim() !== '') return { kind: 'seq', open: '', close: '', items: [{ kind: 'atom', text: plus.trim() }, { kind: 'atom', text: minus.trim() }], ordered: false };
  }
  return { kind: 'atom', text: s };
}

// ---------------------------------------------------------------------------------------------------------------
// Comparison

export function compareNormalized(ans: string, gt: string, opts: CompareOptions): CompareResult {
  if (compactKey(ans) === compactKey(gt)) return { equal: true };
  // two plain numbers (most GSM8K-style answers): the number rules alone, without the engine's scope
  if (isPlainNumber(ans) && isPlainNumber(gt)) return { equal: numberMatches(Number(ans), ans, gt) };
  // a left-hand side that only names the answer (`x = 5`, `(p,q)=(3,2)`, `f(x)=1`, `AB=4, CD=5`) is dropped, unless
  // the other side is itself an equation (then `y = ...` is part of the answer: equations compare as equations)
  const ansEq = hasTopEquals(ans);
  const gtEq = hasTopEquals(gt);
  if (!gtEq || /\\in(?![a-zA-Z])/.test(ans)) ans = dropLabels(ans) ?? ans;
  if (!ansEq || /\\in(?![a-zA-Z])/.test(gt)) gt = dropLabels(gt) ?? gt;
  if (compactKey(ans) === compactKey(gt)) return { equal: true };

  const letter = choiceLetter(gt);
  if (letter) {
    const got = answerLetter(ans);
    if (got === null) return { equal: false, reason: 'the ground truth is an option letter; the answer names none' };
    return got === letter ? { equal: true } : { equal: false, reason: `option ${got}, expected ${letter}` };
  }
  const letters = choiceLetters(gt);
  if (letters) {
    // "A, D, E": options chosen; compared as sets
    const got = choiceLetters(ans) ?? (answerLetter(ans) ? [answerLetter(ans) as string] : null);
    if (!got) return { equal: false, reason: 'the ground truth is a list of options; the answer is not' };
    return { equal: [...got].sort().join() === [...letters].sort().join() };
  }
  if (BOOL.test(gt)) {
    const a = ans.replace(/[.!]$/, '').trim().toLowerCase();
    return { equal: a === gt.toLowerCase(), reason: BOOL.test(a) ? undefined : 'the ground truth is True/False' };
  }
  if (/^[A-Za-z][A-Za-z ]{2,}$/.test(gt) && !/^(?:NaN|Inf|inf)$/.test(gt)) {
    // a word answer ("Evelyn", "east", "not exist"): text only, never algebra (CAKE must not equal KCAE)
    return { equal: ans.replace(/\s+/g, ' ').trim().toLowerCase() === gt.toLowerCase() };
  }
  // "48/2 = 24" against a ground truth without "=": the last side is the answer
  if (!gt.includes('=') && ans.includes('=')) {
    const sides = splitTop(ans, /=/y);
    if (sides.length > 1 && sides[sides.length - 1] !== '') ans = sides[sides.length - 1];
  }
  // unclosed brackets send the engine's parser into an exponential search (guard.ts)
  if (!balanced(ans)) return { equal: false, reason: 'answer refused: unbalanced brackets' };
  if (!balanced(gt)) return { equal: false, reason: 'ground truth refused: unbalanced brackets' };
  return inScope(() => {
    // relations about one quantity compare as the intervals they state (`x \le 2` is `(-\infty,2]`)
    const ra = /[<>]|\\[lgn]e(?![a-zA-Z])/.test(ans) ? relationInterval(ans) : null;
    const rg = /[<>]|\\[lgn]e(?![a-zA-Z])/.test(gt) ? relationInterval(gt) : null;
    if (ra && rg && ra.subject !== rg.subject) return { equal: false, reason: `a relation about ${ra.subject}, expected one about ${rg.subject}` };
    if (ra) ans = ra.interval;
    if (rg) gt = rg.interval;
    if ((ra || rg) && compactKey(ans) === compactKey(gt)) return { equal: true };
    return compareNodes(structure(ans), structure(gt), opts);
  });
}

function compareNodes(a: Node, g: Node, opts: CompareOptions): CompareResult {
  if (Date.now() > opts.deadline) throw new Timeout();
  if (g.kind === 'atom' && a.kind === 'atom') return compareAtoms(a.text, g.text, opts);
  if (g.kind === 'union' || a.kind === 'union') {
    if (g.kind !== 'union' || a.kind !== 'union') return { equal: false, reason: 'a union against a non-union' };
    if (g.parts.length !== a.parts.length) return { equal: false, reason: 'unions of different sizes' };
    for (let k = 0; k < g.parts.length; k++) if (!compareNodes(a.parts[k], g.parts[k], opts).equal) return { equal: false };
    return { equal: true };
  }
  const aItems = itemsOf(a);
  const gItems = itemsOf(g);
  if (!aItems || !gItems) return { equal: false, reason: `${a.kind === 'atom' ? 'a single value' : 'a list'} against ${g.kind === 'atom' ? 'a single value' : 'a list'}` };
  if (aItems.items.length !== gItems.items.length) return { equal: false, reason: `${aItems.items.length} elements, expected ${gItems.items.length}` };
  if (aItems.open && gItems.open && (aItems.open !== gItems.open || aItems.close !== gItems.close)) {
    return { equal: false, reason: `brackets ${aItems.open}${aItems.close}, expected ${gItems.open}${gItems.close}` };
  }
  // in order when either side is a tuple, interval, list or vector; as sets only when both are sets or bare lists
  if (aItems.ordered || gItems.ordered) {
    for (let k = 0; k < gItems.items.length; k++) if (!compareNodes(aItems.items[k], gItems.items[k], opts).equal) return { equal: false };
    return { equal: true };
  }
  // unordered (sets, bare lists, \pm): a perfect matching, greedily (items are few)
  if (gItems.items.length > 50) return { equal: false, reason: 'list too long to match' };
  const used = new Array<boolean>(aItems.items.length).fill(false);
  for (const gi of gItems.items) {
    let found = false;
    for (let k = 0; k < aItems.items.length && !found; k++) {
      if (!used[k] && compareNodes(aItems.items[k], gi, opts).equal) {
        used[k] = true;
        found = true;
      }
    }
    if (!found) return { equal: false };
  }
  return { equal: true };
}

/** Sequence view of a node: seqs as they are; single-row/column matrices as vectors. */
function itemsOf(n: Node): { open: string; close: string; items: Node[]; ordered: boolean } | null {
  if (n.kind === 'seq') return n;
  if (n.kind === 'matrix') {
    if (n.rows.every((r) => r.length === 1)) return { open: '', close: '', items: n.rows.map((r) => r[0]), ordered: true };
    if (n.rows.length === 1) return { open: '', close: '', items: n.rows[0], ordered: true };
    // a full matrix: rows as ordered tuples
    return { open: '', close: '', items: n.rows.map((r) => ({ kind: 'seq', open: '', close: '', items: r, ordered: true }) as Node), ordered: true };
  }
  return null;
}

function compareAtoms(a: string, g: string, opts: CompareOptions): CompareResult {
  if (compactKey(a) === compactKey(g)) return { equal: true };
  if (a === '') return { equal: false, reason: 'empty element' };
  const gNum = isPlainNumber(g);
  if (gNum && isPlainNumber(a)) return { equal: numberMatches(Number(a), a, g) };
  // infinity and the empty set are symbols the text comparison already handled
  if (/^-?\\infty$|^\\emptyset$/.test(g)) return { equal: false };

  if (Date.now() > opts.deadline) throw new Timeout();
  const ge = splitTop(g, /=/y);
  const ae = splitTop(a, /=/y);
  if (ge.length === 2 && ae.length === 2) {
    const eq = equationEqual(ae, ge);
    // `f(x) = x^2` against `f(x) = x \cdot x`: the same name on the left, so the right sides decide
    if (!eq.equal && isLabel(ge[0]!) && compactKey(ae[0]!) === compactKey(ge[0]!)) return compareAtoms(ae[1]!, ge[1]!, opts);
    return eq;
  }
  const pg = parseGroundTruth(g);
  const pa = parse(a);
  if (!pa.valid) return { equal: false, reason: 'the answer does not parse as mathematics' };
  if (gNum) {
    // an integer ground truth against an integer expression: exactly, in big integers (10^{9}+1 is not 10^9)
    const gi = integerOf(g);
    const ai = gi === null || pa.unknowns.length ? null : exactInteger(pa.json);
    if (gi !== null && ai !== null) return { equal: ai === gi };
    // a numeric ground truth: the answer's value with the number rules (rounding included)
    const v = constantValue(pa);
    if (v && v[1] === 0) return { equal: numberMatches(v[0], null, g) };
    if (v) return { equal: false };
  }
  if (!pg.valid) return { equal: false, reason: 'the ground truth does not parse; the texts differ' };
  return casEqual(pa, pg, opts);
}

/**
 * Two equations are the same when lhs - rhs of one is a non-zero constant multiple of the other's
 * (5x - 7y + 11z + 4 = 0 and -5x + 7y = 11z + 4 ... scaled): the ratio is compared at random points.
 */
function equationEqual(a: string[], g: string[]): CompareResult {
  const pa = parse(`(${a[0]})-(${a[1]})`);
  const pg = parse(`(${g[0]})-(${g[1]})`);
  if (!pa.valid || !pg.valid) return { equal: false, reason: 'the equation does not parse' };
  const vars = [...new Set([...pa.unknowns, ...pg.unknowns])].sort();
  if (vars.length === 0 || vars.length > 8) return { equal: false };
  let ratio: number | null = null;
  let usable = 0;
  try {
    for (const p of samplePoints(vars, 6, true)) {
      const x = evaluate(pa.json, p);
      const y = evaluate(pg.json, p);
      if (x[1] !== 0 || y[1] !== 0 || !Number.isFinite(x[0]) || !Number.isFinite(y[0]) || y[0] === 0) continue;
      const r = x[0] / y[0];
      if (r === 0 || !Number.isFinite(r)) return { equal: false };
      if (ratio === null) ratio = r;
      else if (Math.abs(r - ratio) > 1e-9 * Math.abs(ratio)) return { equal: false };
      usable++;
    }
  } catch (e) {
    if (e instanceof Unsupported) return { equal: false, reason: 'could not decide the equivalence' };
    throw e;
  }
  return usable >= 2 ? { equal: true } : { equal: false, reason: 'could not decide the equivalence' };
}

function casEqual(a: Parsed, g: Parsed, opts: CompareOptions): CompareResult {
  // fast path for constants (no free symbols): float64 values that agree to 1e-12, or differ by more than 1e-6,
  // decide without the engine's exact evaluation (which runs in arbitrary precision and costs milliseconds)
  const va = constantValue(a);
  const vg = constantValue(g);
  if (va && vg) {
    // integers compare exactly (2^{100} is not 2^{100}+1, which float64 cannot tell apart)
    const ia = exactInteger(a.json);
    const ig = ia === null ? null : exactInteger(g.json);
    if (ia !== null && ig !== null) return { equal: ia === ig };
    // beyond float64 on either side (e^{1000}): nothing here can tell the two apart, so they are not taken as equal
    if (!Number.isFinite(va[0] + va[1] + vg[0] + vg[1])) return { equal: false, reason: 'values too large to compare' };
  }
  if (va && vg) {
    const scale = Math.max(Math.abs(va[0]), Math.abs(va[1]), Math.abs(vg[0]), Math.abs(vg[1]));
    const diff = Math.max(Math.abs(va[0] - vg[0]), Math.abs(va[1] - vg[1]));
    if (diff <= 1e-12 * scale) return { equal: true };
    if (diff > 1e-6 * scale) return { equal: false };
  }
  const e = engineEqual(a, g);
  if (e === true) return { equal: true };
  if (Date.now() > opts.deadline) throw new Timeout();
  // the engine answers undefined for identities it cannot prove (\cot x vs \cos x/\sin x): numbers at random
  // points decide. Its false is trusted when free symbols are involved (|x| and x agree at positive points).
  if (e === false && (a.unknowns.length || g.unknowns.length)) return { equal: false };
  const n = numericEqual(a, g);
  if (n === true) return { equal: true };
  if (n === false || e === false) return { equal: false };
  return { equal: false, reason: 'could not decide the equivalence' };
}
