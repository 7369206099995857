// A small complex float64 evaluator over MathJSON (the compute engine's parse output), for the numeric fallback:
// two expressions the engine cannot decide are compared at a few deterministic random points. Pure arithmetic on
// a tree walk — bounded by the tree size, overflow goes to Infinity, never loops, never executes text.

export type C = [re: number, im: number];

export class Unsupported extends Error {}

const MAX_DEPTH = 64;

type Json = unknown;

const CONSTANTS: Record<string, C> = {
  Pi: [Math.PI, 0],
  ExponentialE: [Math.E, 0],
  ImaginaryUnit: [0, 1],
  PositiveInfinity: [Infinity, 0],
  NegativeInfinity: [-Infinity, 0],
  Half: [0.5, 0],
  GoldenRatio: [(1 + Math.sqrt(5)) / 2, 0],
};

/** The free symbols of a MathJSON expression (not the known constants). */
export function unknownsOf(j: Json, out: Set<string> = new Set(), depth = 0): Set<string> {
  if (depth > MAX_DEPTH) throw new Unsupported('too deep');
  if (typeof j === 'string') {
    if (!(j in CONSTANTS)) out.add(j);
  } else if (Array.isArray(j)) {
    for (let k = 1; k < j.length; k++) unknownsOf(j[k], out, depth + 1);
  } else if (j && typeof j === 'object') {
    const o = j as Record<string, unknown>;
    if (typeof o.sym === 'string') unknownsOf(o.sym, out, depth + 1);
    else if (Array.isArray(o.fn)) unknownsOf(o.fn, out, depth + 1);
  }
  return out;
}

const re = (x: number): C => [x, 0];
const add = (a: C, b: C): C => [a[0] + b[0], a[1] + b[1]];
const mul = (a: C, b: C): C => (a[1] === 0 && b[1] === 0 ? [a[0] * b[0], 0] : [a[0] * b[0] - a[1] * b[1], a[0] * b[1] + a[1] * b[0]]);
function div(a: C, b: C): C {
  if (b[1] === 0) return [a[0] / b[0], a[1] / b[0]];
  const d = b[0] * b[0] + b[1] * b[1];
  return [(a[0] * b[0] + a[1] * b[1]) / d, (a[1] * b[0] - a[0] * b[1]) / d];
}
function log(a: C): C {
  if (a[1] === 0 && a[0] >= 0) return [Math.log(a[0]), 0];
  return [Math.log(Math.hypot(a[0], a[1])), Math.atan2(a[1], a[0])];
}
function exp(a: C): C {
  const m = Math.exp(a[0]);
  return a[1] === 0 ? [m, 0] : [m * Math.cos(a[1]), m * Math.sin(a[1])];
}
function pow(a: C, b: C): C {
  if (a[1] === 0 && b[1] === 0 && (a[0] >= 0 || Number.isInteger(b[0]))) return [Math.pow(a[0], b[0]), 0];
  if (a[0] === 0 && a[1] === 0) return b[0] > 0 ? [0, 0] : [NaN, NaN];
  return exp(mul(b, log(a)));
}
/** n-th root; the real root of a negative real for odd n (as written in answers: \sqrt[3]{-8} = -2). */
function root(a: C, n: C): C {
  if (a[1] === 0 && n[1] === 0 && a[0] < 0 && Number.isInteger(n[0]) && Math.abs(n[0]) % 2 === 1) return [-Math.pow(-a[0], 1 / n[0]), 0];
  return pow(a, div(re(1), n));
}
function real(fn: (x: number) => number, a: C): C {
  if (a[1] !== 0) throw new Unsupported('complex argument');
  return [fn(a[0]), 0];
}
function factorial(a: C): C {
  if (a[1] !== 0 || !Number.isInteger(a[0]) || a[0] < 0) return [NaN, 0];
  if (a[0] > 170) return [Infinity, 0];
  let f = 1;
  for (let k = 2; k <= a[0]; k++) f *= k;
  return [f, 0];
}

function numberOf(j: Json): C | null {
  if (typeof j === 'number') return re(j);
  if (j && typeof j === 'object' && !Array.isArray(j)) {
    const o = j as Record<string, unknown>;
    if (typeof o.num === 'string') {
      const t = o.num.replace(/n$/, '');
      if (t === 'NaN') return re(NaN);
      if (t === '+Infinity' || t === 'Infinity') return re(Infinity);
      if (t === '-Infinity') return re(-Infinity);
      // repeating decimals "0.(3)" -> approximate
      const rep = /^([+-]?\d*\.\d*)\((\d+)\)$/.exec(t);
      if (rep) return re(Number(rep[1] + rep[2].repeat(Math.ceil(20 / rep[2].length))));
      const v = Number(t);
      if (!Number.isNaN(v)) return re(v);
      throw new Unsupported(`number ${t}`);
    }
  }
  return null;
}

/** Evaluates `j` with the given values for free symbols. Throws Unsupported for anything it does not know. */
export function evaluate(j: Json, env: Record<string, C>, depth = 0): C {
  if (depth > MAX_DEPTH) throw new Unsupported('too deep');
  const n = numberOf(j);
  if (n) return n;
  if (typeof j === 'string') {
    if (j in CONSTANTS) return CONSTANTS[j];
    if (j in env) return env[j];
    throw new Unsupported(`symbol ${j}`);
  }
  if (j && typeof j === 'object' && !Array.isArray(j)) {
    const o = j as Record<string, unknown>;
    if (typeof o.sym === 'string') return evaluate(o.sym, env, depth + 1);
    if (Array.isArray(o.fn)) return evaluate(o.fn, env, depth + 1);
    throw new Unsupported('object');
  }
  if (!Array.isArray(j) || typeof j[0] !== 'string') throw new Unsupported('expression');
  const head = j[0];
  const args = j.slice(1);
  const ev = (k: number): C => {
    if (k >= args.length) throw new Unsupported(`${head}: missing argument`);
    return evaluate(args[k], env, depth + 1);
  };
  const arity = (lo: number, hi = lo) => {
    if (args.length < lo || args.length > hi) throw new Unsupported(`${head}/${args.length}`);
  };
  switch (head) {
    case 'Add': {
      let s: C = [0, 0];
      for (let k = 0; k < args.length; k++) s = add(s, ev(k));
      return s;
    }
    case 'Multiply': {
      let p: C = [1, 0];
      for (let k = 0; k < args.length; k++) p = mul(p, ev(k));
      return p;
    }
    case 'Subtract':
      arity(2);
      return add(ev(0), mul(re(-1), ev(1)));
    case 'Negate':
      arity(1);
      return mul(re(-1), ev(0));
    case 'Divide':
    case 'Rational':
      arity(2);
      return div(ev(0), ev(1));
    case 'Power':
      arity(2);
      return pow(ev(0), ev(1));
    case 'Square':
      arity(1);
      return pow(ev(0), re(2));
    case 'Sqrt':
      arity(1);
      return pow(ev(0), re(0.5));
    case 'Root':
      arity(2);
      return root(ev(0), ev(1));
    case 'Exp':
      arity(1);
      return exp(ev(0));
    case 'Ln':
      arity(1);
      return log(ev(0));
    case 'Log': {
      arity(1, 2);
      const base = args.length === 2 ? ev(1) : re(10);
      return div(log(ev(0)), log(base));
    }
    case 'Lb':
      arity(1);
      return div(log(ev(0)), re(Math.LN2));
    case 'Lg':
      arity(1);
      return div(log(ev(0)), re(Math.LN10));
    case 'Complex':
      arity(2);
      return [ev(0)[0], ev(1)[0]];
    case 'Abs': {
      arity(1);
      const a = ev(0);
      return re(Math.hypot(a[0], a[1]));
    }
    case 'Delimiter':
      if (args.length !== 1) throw new Unsupported('Delimiter');
      return ev(0);
    case 'Factorial':
      arity(1);
      return factorial(ev(0));
    case 'Floor':
      arity(1);
      return real(Math.floor, ev(0));
    case 'Ceil':
      arity(1);
      return real(Math.ceil, ev(0));
    case 'Sin':
      arity(1);
      return real(Math.sin, ev(0));
    case 'Cos':
      arity(1);
      return real(Math.cos, ev(0));
    case 'Tan':
      arity(1);
      return real(Math.tan, ev(0));
    case 'Cot':
      arity(1);
      return real((x) => 1 / Math.tan(x), ev(0));
    case 'Sec':
      arity(1);
      return real((x) => 1 / Math.cos(x), ev(0));
    case 'Csc':
      arity(1);
      return real((x) => 1 / Math.sin(x), ev(0));
    case 'Arcsin':
      arity(1);
      return real(Math.asin, ev(0));
    case 'Arccos':
      arity(1);
      return real(Math.acos, ev(0));
    case 'Arctan':
      arity(1, 2);
      if (args.length === 2) return re(Math.atan2(ev(0)[0], ev(1)[0]));
      return real(Math.atan, ev(0));
    case 'Arccot':
      arity(1);
      return real((x) => Math.atan(1 / x), ev(0));
    case 'Sinh':
      arity(1);
      return real(Math.sinh, ev(0));
    case 'Cosh':
      arity(1);
      return real(Math.cosh, ev(0));
    case 'Tanh':
      arity(1);
      return real(Math.tanh, ev(0));
    case 'Degrees':
      arity(1);
      return mul(ev(0), re(Math.PI / 180));
    default:
      throw new Unsupported(head);
  }
}

/** Relative closeness of two complex values (both parts), exact for zeros and equal infinities. */
export function close(a: C, b: C, rel = 1e-9): boolean {
  return closeReal(a[0], b[0], rel) && closeReal(a[1], b[1], rel, Math.max(Math.abs(a[0]), Math.abs(b[0])));
}

function closeReal(x: number, y: number, rel: number, scale = 0): boolean {
  if (x === y) return true;
  if (!Number.isFinite(x) || !Number.isFinite(y)) return false;
  return Math.abs(x - y) <= rel * Math.max(Math.abs(x), Math.abs(y), scale);
}

/**
 * Deterministic points (mulberry32) for the free symbols, magnitudes in [0.5, 2.5) (away from 0 and 1 where
 * different expressions meet); with `signed`, every other point negative (so |x| and x differ).
 */
export function samplePoints(names: readonly string[], count: number, signed = false, seed = 0x5eed): Record<string, C>[] {
  let s = seed >>> 0;
  const next = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const pts: Record<string, C>[] = [];
  for (let k = 0; k < count; k++) {
    const p: Record<string, C> = {};
    for (const name of names) p[name] = re((signed && k % 2 === 1 ? -1 : 1) * (0.5 + 2 * next()));
    pts.push(p);
  }
  return pts;
}

/** Bits an exact integer may have (a ground truth of 10^{400} needs ~1330; 2^{100000} is refused). */
const MAX_EXACT_BITS = 20000;

function bits(x: bigint): number {
  return (x < 0n ? -x : x).toString(16).length * 4;
}

/**
 * The exact value of an integer expression (integers, +, −, ×, integer powers with a non-negative exponent,
 * exact divisions, factorials up to 1000), as a big integer; null for anything else or anything too large.
 * float64 cannot tell 2^{100} from 2^{100}+1; this can.
 */
export function exactInteger(j: Json, depth = 0): bigint | null {
  if (depth > MAX_DEPTH) return null;
  if (typeof j === 'number') return Number.isSafeInteger(j) ? BigInt(j) : null;
  if (j && typeof j === 'object' && !Array.isArray(j)) {
    const o = j as Record<string, unknown>;
    if (typeof o.num === 'string') {
      const m = /^([+-]?\d+)n?$/.exec(o.num);
      return m && m[1]!.length <= 6000 ? BigInt(m[1]!) : null;
    }
    if (Array.isArray(o.fn)) return exactInteger(o.fn, depth + 1);
    return null;
  }
  if (!Array.isArray(j) || typeof j[0] !== 'string') return null;
  const args: bigint[] = [];
  for (let k = 1; k < j.length; k++) {
    const v = exactInteger(j[k], depth + 1);
    if (v === null) return null;
    args.push(v);
  }
  const one = (): bigint | null => (args.length === 1 ? args[0]! : null);
  let out: bigint | null;
  switch (j[0]) {
    case 'Add':
      out = args.reduce((s, x) => s + x, 0n);
      break;
    case 'Multiply':
      out = args.reduce((s, x) => s * x, 1n);
      break;
    case 'Subtract':
      out = args.length === 2 ? args[0]! - args[1]! : null;
      break;
    case 'Negate':
      out = args.length === 1 ? -args[0]! : null;
      break;
    case 'Delimiter':
      out = one();
      break;
    case 'Square':
      out = args.length === 1 ? args[0]! * args[0]! : null;
      break;
    case 'Divide':
    case 'Rational':
      out = args.length === 2 && args[1] !== 0n && args[0]! % args[1]! === 0n ? args[0]! / args[1]! : null;
      break;
    case 'Power': {
      if (args.length !== 2 || args[1]! < 0n) return null;
      const [b, e] = args as [bigint, bigint];
      if (e === 0n) out = 1n;
      else if (b === 0n || b === 1n) out = b;
      else if (b === -1n) out = e % 2n === 0n ? 1n : -1n;
      else if (Number(e) * bits(b) > MAX_EXACT_BITS) return null;
      else out = b ** e;
      break;
    }
    case 'Factorial': {
      const n = one();
      if (n === null || n < 0n || n > 1000n) return null;
      let f = 1n;
      for (let k = 2n; k <= n; k++) f *= k;
      out = f;
      break;
    }
    default:
      return null;
  }
  return out !== null && bits(out) <= MAX_EXACT_BITS ? out : null;
}
