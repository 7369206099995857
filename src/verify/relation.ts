// Answers written as relations, and answers with a left-hand side, reduced to what they state:
//   - a relation about one quantity becomes an interval: `x \le 2` -> `(-\infty,2]`, `-2 \le x \le 7` -> `[-2,7]`,
//     `0<f(x)<1` -> `(0,1)`, `-x > -1` -> `(-\infty,1)` (a linear side is solved for its variable), `x \ne 3` ->
//     `(-\infty,3)\cup(3,\infty)`;
//   - a left-hand side that only names the answer is dropped when the other side has no equation:
//     `(p,q)=(3,2)` -> `(3,2)`, `f(x)=1` -> `1`, `AB=4, CD=5` -> `(4, 5)` (in order), `V_1:V_2=11:21` -> `11:21`,
//     `x \in [-2,7]` -> `[-2,7]`, `x = 1 or x = 2` -> `1, 2` (one name: a set of values).
// The relation operators arrive in one spelling each (normalize.ts: \le, \ge, \ne, <, >).
import { evaluate, samplePoints, Unsupported, type C } from './numeric.js';
import { constantValue, parse } from './cas.js';
import { splitWithOps } from './split.js';


// ---------------------------------------------------------------------------------------------------------------
// Left-hand sides that name the answer

const NAME = String.raw`(?:\\angle\s*)?(?:[A-Z]{1,3}|[a-zA-Z](?:_\{?[a-zA-Z0-9]+\}?)?)'*`;
const FN = String.raw`[a-zA-Z](?:_\{?[a-zA-Z0-9]+\}?)?\([^=()]*\)`;
const LABEL = new RegExp(String.raw`^(?:${NAME}|${FN}|\(\s*${NAME}(?:\s*,\s*${NAME})+\s*\)|${NAME}(?:\s*:\s*${NAME})+)$`);

export function isLabel(s: string): boolean {
  return LABEL.test(s.trim());
}

/** True when `s` has an `=` outside brackets. */
export function hasTopEquals(s: string): boolean {
  return splitWithOps(s, /=/y).parts.length > 1;
}

/**
 * `lhs = value` (or `lhs \in value`), or several such parts separated by commas, semicolons, `or`, `and`, with
 * every lhs a name: the values (several in order, as a tuple; several for one name, as a list). Else null.
 */
export function dropLabels(s: string): string | null {
  const pieces = splitWithOps(s, /\s*(?:,|;|\bor\b|\band\b)\s*/y).parts.filter((p) => p !== '');
  if (pieces.length === 0 || pieces.length > 50) return null;
  const names: string[] = [];
  const values: string[] = [];
  for (const p of pieces) {
    const { parts } = splitWithOps(p, /=|\\in(?![a-zA-Z])/y);
    if (parts.length !== 2 || parts[1] === '' || !isLabel(parts[0]!)) return null;
    names.push(parts[0]!.replace(/\s+/g, ''));
    values.push(parts[1]!);
  }
  if (values.length === 1) return values[0]!;
  return new Set(names).size === 1 ? values.join(', ') : `(${values.join(', ')})`;
}

// ---------------------------------------------------------------------------------------------------------------
// Relations as intervals

const REL = /\\le(?![a-zA-Z])|\\ge(?![a-zA-Z])|\\ne(?![a-zA-Z])|<|>/y;

export interface RelationInterval {
  /** what the relation is about (the variable, after solving a linear side) */
  subject: string;
  /** the interval (or union) it states, in LaTeX */
  interval: string;
}

type Op = '<' | '>' | '\\le' | '\\ge' | '\\ne';

function constantOf(s: string): number | null {
  if (/^\+?\\infty$/.test(s)) return Infinity;
  if (/^-\\infty$/.test(s)) return -Infinity;
  if (!/\d|\\pi|\\sqrt|\\frac|e/.test(s)) return null;
  const p = parse(s);
  const v = constantValue(p);
  return v && v[1] === 0 && Number.isFinite(v[0]) ? v[0] : null;
}

/** The subject as `a * v + b` in its single free variable v, when it is linear (checked at a third point). */
function linear(s: string): { v: string; a: number; b: number } | null {
  const p = parse(s);
  if (!p.valid || p.unknowns.length !== 1) return null;
  const v = p.unknowns[0]!;
  try {
    const at = (x: number): C => evaluate(p.json, { [v]: [x, 0] });
    const x2 = samplePoints([v], 1)[0]![v]![0];
    const [f0, f1, f2] = [at(0), at(1), at(x2)];
    if (f0[1] || f1[1] || f2[1]) return null;
    const a = f1[0] - f0[0];
    const b = f0[0];
    if (!Number.isFinite(a) || !Number.isFinite(b) || a === 0) return null;
    if (Math.abs(a * x2 + b - f2[0]) > 1e-9 * Math.max(1, Math.abs(f2[0]))) return null;
    return { v, a, b };
  } catch (e) {
    if (e instanceof Unsupported) return null;
    throw e;
  }
}

const flip = (op: Op): Op => (op === '<' ? '>' : op === '>' ? '<' : op === '\\le' ? '\\ge' : op === '\\ge' ? '\\le' : op);

function fmt(x: number, text: string | null): string {
  if (text !== null) return text;
  if (x === Infinity) return '\\infty';
  if (x === -Infinity) return '-\\infty';
  return String(Number(x.toPrecision(15)));
}

/**
 * `subject op c` or `c1 op subject op c2` with constant bounds: the interval it states. Null for anything else
 * (two free sides, mixed directions, equations).
 */
export function relationInterval(s: string): RelationInterval | null {
  const { parts, ops } = splitWithOps(s, REL);
  if (ops.length === 0 || ops.length > 2 || parts.some((p) => p === '')) return null;
  // bounds on the subject, each as (op with the subject on the left, constant, its text)
  let subject: string;
  let bounds: Array<{ op: Op; c: number; text: string | null }>;
  if (ops.length === 1) {
    const [l, r] = parts as [string, string];
    const cl = constantOf(l);
    const cr = constantOf(r);
    if ((cl === null) === (cr === null)) return null;
    if (cr !== null) {
      subject = l;
      bounds = [{ op: ops[0] as Op, c: cr, text: r }];
    } else {
      subject = r;
      bounds = [{ op: flip(ops[0] as Op), c: cl!, text: l }];
    }
  } else {
    const [l, m, r] = parts as [string, string, string];
    const cl = constantOf(l);
    const cr = constantOf(r);
    if (cl === null || cr === null || constantOf(m) !== null || ops.includes('\\ne')) return null;
    subject = m;
    bounds = [
      { op: flip(ops[0] as Op), c: cl, text: l },
      { op: ops[1] as Op, c: cr, text: r },
    ];
  }
  // solve a linear subject (`-x`, `2x+1`) for its variable; anything else (`f(x)`, `x^2`) stays as it is
  if (!isLabel(subject)) {
    const lin = linear(subject);
    if (lin) {
      subject = lin.v;
      bounds = bounds.map((b) => {
        const c = (b.c - lin.b) / lin.a;
        const exact = lin.a === 1 && lin.b === 0;
        return { op: lin.a < 0 ? flip(b.op) : b.op, c, text: exact ? b.text : null };
      });
    }
  }
  let lo: { c: number; text: string | null; closed: boolean } = { c: -Infinity, text: null, closed: false };
  let hi: { c: number; text: string | null; closed: boolean } = { c: Infinity, text: null, closed: false };
  for (const b of bounds) {
    if (b.op === '\\ne') {
      const t = fmt(b.c, b.text);
      return { subject, interval: `(-\\infty,${t})\\cup(${t},\\infty)` };
    }
    const closed = b.op === '\\le' || b.op === '\\ge';
    if (b.op === '<' || b.op === '\\le') {
      if (hi.c !== Infinity) return null;
      hi = { c: b.c, text: b.text, closed };
    } else {
      if (lo.c !== -Infinity) return null;
      lo = { c: b.c, text: b.text, closed };
    }
  }
  if (lo.c > hi.c) return null;
  const open = lo.closed && Number.isFinite(lo.c) ? '[' : '(';
  const close = hi.closed && Number.isFinite(hi.c) ? ']' : ')';
  return { subject: subject.replace(/\s+/g, ''), interval: `${open}${fmt(lo.c, lo.text)},${fmt(hi.c, hi.text)}${close}` };
}
