// Light normalisation of an answer string, applied the same way to the model's answer and to the ground truth.
// Only presentation is removed (math delimiters, \text{} wrappers, spacing commands, \left/\right, degree and
// percent signs, dollar signs, thousands separators, trailing dots, unit words after a number); the mathematics is
// left to the comparison (compare.ts), which parses it with the compute engine.

const TEXT_UNIT_TAIL = /([0-9}])\s*(?:\\[,;: ]\s*)*\\(?:text|mbox|mathrm|textrm|rm)\s*\{\s*(?![eid]\s*\})[a-zA-Z][a-zA-Z .\/]*\}(?:\s*\^\s*\{?[23]\}?)?\s*\.?\s*$/;
const TEXT_WRAPPERS = /\\(?:text|textbf|textit|textrm|textsf|texttt|textnormal|mathrm|mathbf|mathit|mathsf|mathtt|mathnormal|mbox|hbox|operatorname\*?|boldsymbol|bm)\s*\{([^{}]*)\}/g;

// Unit words that may follow a number ("5.4 cents", "864 inches^2", "\frac{270}{7} degrees"). Only stripped after
// something numeric, so a word answer ("east") or a variable ("2k") is never touched; no one-letter units (m, s, g,
// h, l), which would turn the product "4 m" into 4.
const UNITS = [
  'degrees?', 'deg', 'radians?', 'rad', 'percent', 'cents?', 'dollars?', 'euros?', 'pounds?', 'lbs?', 'ounces?', 'oz',
  'inch(?:es)?', 'feet', 'foot', 'ft', 'yards?', 'yd', 'miles?', 'meters?', 'metres?', 'cm', 'mm', 'km',
  'square', 'sq', 'cubic', 'units?', 'grams?', 'kg', 'mg', 'liters?', 'litres?', 'ml', 'mL', 'gallons?',
  'seconds?', 'secs?', 'minutes?', 'mins?', 'hours?', 'hrs?', 'days?', 'weeks?', 'months?', 'years?',
  'mph', 'kmh', 'kph', 'pct', 'percentage', 'per', 'people', 'persons?', 'students?', 'times', 'ways', 'points?', 'marbles?', 'apples?', 'books?',
];
const UNIT = `(?:${UNITS.join('|')})(?:\\s*\\^\\s*\\{?[23]\\}?)?`;
// a run of unit words at the end ("miles per hour", "sq ft"), separated by spaces or a slash
const UNIT_TAIL = new RegExp(`(?:\\s|^)${UNIT}(?:\\s*[\\s/]\\s*${UNIT})*\\s*$`);

/** Replaces a LaTeX command with its single braced argument's content, innermost first, bounded. */
function unwrapText(s: string): string {
  for (let k = 0; k < 8; k++) {
    const t = s.replace(TEXT_WRAPPERS, (_m, inner: string) => inner);
    if (t === s) break;
    s = t;
  }
  return s;
}

export function normalizeAnswer(input: string): string {
  let s = input.trim();
  // math-mode delimiters
  s = s.replace(/\\\$/g, ' ').replace(/\$/g, ' ');
  s = s.replace(/\\\(|\\\)/g, ' ').replace(/\\\[|\\\]/g, ' ');
  s = s.replace(/\\(?:displaystyle|textstyle|scriptstyle)\b/g, ' ');
  // a unit written as text after a number: `5 \text{ m}`, `15\,\mathrm{cm}^2`, `125 \text{ miles per hour}` (as text
  // it is a unit even with one letter; a bare `4 m` stays a product)
  if (s.includes('\\')) s = s.replace(TEXT_UNIT_TAIL, '$1');
  // \text{...} and friends -> their content (before unit stripping, so `15\mbox{ cm}^2` becomes `15 cm^2`)
  s = unwrapText(s);
  // \left( ... \right] -> ( ... ]; \left. and \right. are invisible
  // bars: \lvert \rvert \vert -> |, \lVert \rVert \Vert -> \| (one spelling each, for guard.ts and the engine)
  s = s.replace(/\\[lr]?vert(?![a-zA-Z])/g, '|').replace(/\\[lr]?Vert(?![a-zA-Z])/g, '\\|');
  s = s.replace(/\\(?:left|right)\s*\./g, ' ').replace(/\\(?:left|right|bigl|bigr|Bigl|Bigr|biggl|biggr|big|Big|bigg|Bigg)(?![a-zA-Z])/g, '');
  // spacing commands; `10,\!080` -> `10,080`
  s = s.replace(/,\s*\\!\s*/g, ',').replace(/(?<!\\)\\!/g, '');
  s = s.replace(/(?<!\\)\\[,;: ]/g, ' ').replace(/\\q?quad\b/g, ' ').replace(/~/g, ' ');
  s = s.replace(/\{,\}/g, ',');
  // fractions: \dfrac, \tfrac, \cfrac -> \frac (the compute engine knows only \frac)
  s = s.replace(/\\[dtc]frac(?![a-zA-Z])/g, '\\frac');
  // degrees and percent
  s = s.replace(/\^\s*\{?\s*\\circ\s*\}?/g, ' ').replace(/\\circ\b/g, ' ').replace(/°/g, ' ').replace(/\\degree\b/g, ' ');
  s = s.replace(/\\%/g, ' ').replace(/%/g, ' ');
  // unicode look-alikes
  s = s.replace(/−/g, '-').replace(/π/g, '\\pi ').replace(/∞/g, '\\infty ').replace(/×/g, '\\times ').replace(/·/g, '\\cdot ').replace(/√/g, '\\sqrt');
  // relations, one spelling each: <= \leq \leqslant ≤ -> \le; >= ... -> \ge; != \neq ≠ -> \ne
  if (/[<>=!≤≥≠]|\\[lgn]e/.test(s)) {
    s = s.replace(/<=|≤|\\leq(?:slant)?(?![a-zA-Z])|\\leqq(?![a-zA-Z])/g, '\\le ').replace(/>=|≥|\\geq(?:slant)?(?![a-zA-Z])|\\geqq(?![a-zA-Z])/g, '\\ge ');
    s = s.replace(/!=|≠|\\neq(?![a-zA-Z])/g, '\\ne ');
  }
  s = s.replace(/\\varnothing\b|∅|\\\{\s*\\\}/g, '\\emptyset');
  s = s.replace(/\\infin\b|\\infinity\b/g, '\\infty');
  s = s.replace(/\\(?:dots|ldots|cdots)\b/g, '...');
  s = collapse(s);
  // unit words after something numeric
  const unit = /[a-zA-Z]/.test(s) ? UNIT_TAIL.exec(s) : null;
  if (unit && unit.index > 0) {
    const rest = s.slice(0, unit.index).trim();
    if (/[0-9})]$|\\pi$/.test(rest)) s = rest;
  }
  // trailing full stops (not "..."), commas and semicolons
  s = s.replace(/(?<!\.)\.\s*$/, '').replace(/[,;]\s*$/, '').trim();
  // thousands separators: the whole answer (after a name and `=`, as in `x = 2,125`) is a number like 11,111,100
  // or 32,348.50 ...
  const lhs = /^[a-zA-Z](?:_\{?[a-zA-Z0-9]+\}?)?\s*=\s*/.exec(s)?.[0] ?? '';
  let num = s.slice(lhs.length);
  if (/^[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?$/.test(num)) num = num.replace(/,/g, '');
  // ... or thin spaces: 2\,000 (now "2 000")
  if (/^[+-]?\d{1,3}(?: \d{3})+(?:\.\d+)?$/.test(num)) num = num.replace(/ /g, '');
  s = lhs + num;
  // base subscripts: 52_8, 4210_{5} -> the digits
  const base = /^(\d+)\s*_\s*\{?\s*(\d+)\s*\}?$/.exec(s);
  if (base) s = base[1];
  // +\infty -> \infty
  s = s.replace(/^\+\s*\\infty$/, '\\infty');
  return collapse(s);
}

function collapse(s: string): string {
  return s.replace(/\s+/g, ' ').trim();
}

/** Whitespace-free key for exact comparison after normalisation. */
export function compactKey(s: string): string {
  return s.replace(/\s+/g, '').replace(/\\frac(\d)(\d)/g, '\\frac{$1}{$2}').replace(/\\sqrt(\d)/g, '\\sqrt{$1}');
}

/** Maximum bracket nesting depth (any of (), [], {}). */
export function nestingDepth(s: string): number {
  let d = 0;
  let max = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 40 || c === 91 || c === 123) {
      d++;
      if (d > max) max = d;
    } else if (c === 41 || c === 93 || c === 125) d--;
  }
  return max;
}
