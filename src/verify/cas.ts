// The compute engine (@cortex-js/compute-engine 0.27, the last release that runs on Node 20): LaTeX -> canonical
// MathJSON, structural sameness and symbolic equality. Its evaluation can run away on inputs such as
// `2^{2^{30}}` or `(10^{100})!` (no time limit applies there), so an expression reaches isEqual only after a screen
// of its tree (size, depth, exponents, factorials, no sums/integrals/limits).
import { ComputeEngine } from '@cortex-js/compute-engine';
import { evaluate, samplePoints, Unsupported, unknownsOf, type C } from './numeric.js';

type Boxed = ReturnType<ComputeEngine['parse']>;

export interface Parsed {
  latex: string;
  /** the engine's expression, parsed in the current scope on first use */
  expr(): Boxed;
  json: unknown;
  valid: boolean;
  /** free symbols */
  unknowns: string[];
  /** safe to hand to the engine's isEqual (see screen()) */
  safe: boolean;
}

/** Runs an engine call with console.error/warn/info muted: on malformed input the engine logs its internal errors. */
function quiet<T>(fn: () => T): T {
  const saved = [console.error, console.warn, console.info, console.group, console.groupEnd] as const;
  const mute = () => undefined;
  console.error = console.warn = console.info = console.group = console.groupEnd = mute;
  try {
    return fn();
  } finally {
    [console.error, console.warn, console.info, console.group, console.groupEnd] = saved;
  }
}

let engine: ComputeEngine | null = null;
let parsesSinceNew = 0;
// A fresh engine now and then bounds whatever state the engine keeps beyond the scopes below.
const RENEW_EVERY = 20000;

function ce(): ComputeEngine {
  if (!engine || parsesSinceNew >= RENEW_EVERY) {
    engine = new ComputeEngine();
    parsesSinceNew = 0;
  }
  return engine;
}

/**
 * Runs one comparison in its own scope of the engine. The engine declares every new symbol it meets, with a type
 * inferred from that use (`a_i` makes `a` indexable, after which `9a` no longer parses): without a scope per
 * comparison, a verdict would depend on the answers verified before it.
 */
export function inScope<T>(fn: () => T): T {
  const eng = ce();
  eng.pushScope();
  try {
    return fn();
  } finally {
    eng.popScope();
  }
}

/** LaTeX fixes the engine's parser needs: \frac9{19}, \frac{270}7, \sqrt2 -> braced arguments; * -> \times. */
export function latexForEngine(s: string): string {
  return s
    .replace(/\\frac\s*(\d)\s*(\d)/g, '\\frac{$1}{$2}')
    .replace(/\\frac\s*(\d)\s*\{/g, '\\frac{$1}{')
    .replace(/\\frac\s*\{([^{}]*)\}\s*(\d)/g, '\\frac{$1}{$2}')
    .replace(/\\sqrt\s*(\d)/g, '\\sqrt{$1}')
    .replace(/\*\*/g, '^')
    .replace(/\*/g, '\\times ');
}

// Ground truths repeat (k samples per problem, every epoch): their parse is cached as plain data (tree, validity,
// free symbols, screen). Each is parsed alone in a scope of its own, so the cached tree does not depend on what
// was parsed before; the engine's expression object is re-created in the comparison's scope when it is needed.
const gtCache = new Map<string, Omit<Parsed, 'expr'>>();
const GT_CACHE_MAX = 20000;

function parseData(eng: ComputeEngine, latex: string): { data: Omit<Parsed, 'expr'>; expr: Boxed } {
  parsesSinceNew++;
  const { expr, json, valid } = quiet(() => {
    const e = eng.parse(latexForEngine(latex));
    return { expr: e, json: e.json as unknown, valid: e.isValid };
  });
  let unknowns: string[] = [];
  let safe = false;
  if (valid) {
    try {
      unknowns = [...unknownsOf(json)];
      safe = screen(json);
    } catch {
      safe = false;
    }
  }
  return { data: { latex, json, valid, unknowns, safe }, expr };
}

function lazyExpr(latex: string): () => Boxed {
  let e: Boxed | undefined;
  return () => (e ??= quiet(() => ce().parse(latexForEngine(latex))));
}

/** Parses `latex` in the current scope (an answer). */
export function parse(latex: string): Parsed {
  const { data, expr } = parseData(ce(), latex);
  return { ...data, expr: () => expr };
}

/** Parses a ground truth: cached, each parsed in a fresh scope. */
export function parseGroundTruth(latex: string): Parsed {
  let data = gtCache.get(latex);
  if (!data) {
    const eng = ce();
    eng.pushScope();
    try {
      data = parseData(eng, latex).data;
    } finally {
      eng.popScope();
    }
    if (gtCache.size >= GT_CACHE_MAX) gtCache.clear();
    gtCache.set(latex, data);
  }
  return { ...data, expr: lazyExpr(latex) };
}

const UNSAFE_HEADS = new Set(['Sum', 'Product', 'Integrate', 'Limit', 'D', 'Derivative', 'Gamma', 'Factorial2', 'Loop', 'Function', 'Assign', 'Declare', 'Error', 'Tuple', 'List', 'Set', 'Matrix', 'Sequence', 'Interval', 'Union', 'Intersection', 'Equal', 'Less', 'Greater', 'LessEqual', 'GreaterEqual', 'NotEqual', 'Element', 'Subscript', 'At', 'LatexString', 'PlusMinus']);
const MAX_NODES = 400;

/** True when the engine can evaluate the tree in bounded time: small, no big exponents or factorials. */
function screen(json: unknown): boolean {
  let nodes = 0;
  const env: Record<string, C> = {};
  const visit = (j: unknown, depth: number): boolean => {
    if (++nodes > MAX_NODES || depth > 40) return false;
    if (typeof j === 'number') return Number.isFinite(j) ? Math.abs(j) < 1e15 : true;
    if (j && typeof j === 'object' && !Array.isArray(j)) {
      const num = (j as Record<string, unknown>).num;
      return typeof num === 'string' ? num.length <= 30 : true;
    }
    if (!Array.isArray(j)) return true;
    const head = j[0];
    if (typeof head !== 'string' || UNSAFE_HEADS.has(head)) return false;
    if (head === 'Power' || head === 'Root' || head === 'Factorial') {
      // exponent (or factorial argument) must be a modest number wherever the free symbols are
      const arg = head === 'Factorial' ? j[1] : j[2];
      const vars = [...unknownsOf(arg)];
      const pts = vars.length ? samplePoints(vars, 2) : [env];
      for (const p of pts) {
        let v: C;
        try {
          v = evaluate(arg, p);
        } catch (e) {
          if (e instanceof Unsupported) return false;
          throw e;
        }
        const lim = head === 'Factorial' ? 170 : 1000;
        if (!(Math.abs(v[0]) <= lim && Math.abs(v[1]) <= lim)) return false;
      }
      if (head === 'Power' && typeof j[1] !== 'string') {
        // a big integer base to a big power: 12345678901234567890^{987}
        try {
          const b = evaluate(j[1], vars.length ? samplePoints([...unknownsOf(j[1])], 1)[0] : env);
          const e = evaluate(j[2], vars.length ? pts[0] : env);
          if (Math.abs(e[0]) * Math.log10(Math.abs(b[0]) + 1) > 2000) return false;
        } catch {
          // symbols only known to the engine: fine for the engine, the exponent is small
        }
      }
    }
    for (let k = 1; k < j.length; k++) if (!visit(j[k], depth + 1)) return false;
    return true;
  };
  return visit(json, 0);
}

/** The engine's verdict: true, false, or undefined when it cannot decide (or the input did not pass the screen). */
export function engineEqual(a: Parsed, b: Parsed): boolean | undefined {
  if (!a.valid || !b.valid) return undefined;
  return quiet(() => {
    const ea = a.expr();
    const eb = b.expr();
    if (ea.isSame(eb)) return true;
    if (!a.safe || !b.safe) return undefined;
    return ea.isEqual(eb);
  });
}

/**
 * Numeric equality at deterministic random points of the free symbols (the union of both sides'), with a relative
 * tolerance. undefined when either side cannot be evaluated or fewer than two points give finite values.
 */
export function numericEqual(a: Parsed, b: Parsed, rel = 1e-9): boolean | undefined {
  if (!a.valid || !b.valid) return undefined;
  const vars = [...new Set([...a.unknowns, ...b.unknowns])].sort();
  if (vars.length > 8) return undefined;
  const pts = samplePoints(vars, vars.length ? 6 : 1, true);
  let usable = 0;
  try {
    for (const p of pts) {
      const x = evaluate(a.json, p);
      const y = evaluate(b.json, p);
      const finite = Number.isFinite(x[0]) && Number.isFinite(x[1]) && Number.isFinite(y[0]) && Number.isFinite(y[1]);
      if (!finite) {
        // equal infinities count (\infty vs \infty); NaN points are skipped
        if (x[0] === y[0] && x[1] === y[1] && !Number.isNaN(x[0])) {
          usable++;
          continue;
        }
        if (Number.isNaN(x[0]) || Number.isNaN(y[0]) || Number.isNaN(x[1]) || Number.isNaN(y[1])) continue;
        return false;
      }
      const scale = Math.max(Math.abs(x[0]), Math.abs(x[1]), Math.abs(y[0]), Math.abs(y[1]));
      if (Math.abs(x[0] - y[0]) > rel * scale || Math.abs(x[1] - y[1]) > rel * scale) return false;
      usable++;
    }
  } catch (e) {
    if (e instanceof Unsupported) return undefined;
    throw e;
  }
  const need = vars.length ? 2 : 1;
  return usable >= need ? true : undefined;
}

/** The value of a constant expression (no free symbols), or null. */
export function constantValue(p: Parsed): C | null {
  if (!p.valid || p.unknowns.length) return null;
  try {
    return evaluate(p.json, {});
  } catch {
    return null;
  }
}
