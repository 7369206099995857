// The built-in task's grammar: word lists and story templates for multi-step arithmetic word problems in the style
// of GSM-Symbolic (a story with names, objects and quantities; each sentence after the first changes one quantity).
//
// A template says how a story starts (which may already take an operation, e.g. "3 boxes with 4 in each" = 3 * 4),
// which one-operation sentences ("steps") may follow, and which question ends it (which may take a final operation,
// e.g. "together" adds the first person's count). The generator (generator.ts) draws the numbers so that every
// intermediate value is a whole number in [1, maxValue].

export type Op = '+' | '-' | '*' | '/';

/** The words a problem is written with; drawn once per problem. */
export interface Cast {
  name: string; // the main person
  friend: string; // a second person
  other: string; // a third person, only used by irrelevant ("no-op") clauses
  obj: string; // the counted things (plural noun) for templates that count objects
  thing: string; // something bought (money template)
  color: string; // an adjective for no-op clauses
}

/** One sentence of the story that applies `op` with operand `b` to the running quantity. */
export interface StepKind {
  op: Op;
  text: (c: Cast, b: number) => string;
}

/** What the story's opening sentence(s) produce: the clause, the equations it implies, the starting quantity. */
export interface Opening {
  clause: string;
  /** Equations of the opening (empty when the story starts from a plain count). */
  eqs: Equation[];
  value: number;
  /** The quantity the final operation refers back to (the compare template's first count). */
  memo?: number;
}

export interface Equation {
  a: number;
  op: Op;
  b: number;
  result: number;
}

/** Kinds of number a problem draws: opening counts, added/subtracted amounts, multipliers/divisors. */
export type Slot = 'count' | 'delta' | 'factor';

/** Operand ranges for one problem; see generator.ts for the train and "symbolic" ranges. */
export interface NumberRanges {
  count: [number, number];
  delta: [number, number];
  factor: [number, number]; // also the boxes/trays count of an opening
  maxValue: number; // every intermediate value lies in [1, maxValue]
}

/** An irrelevant sentence. `part`: its number counts a part of the current quantity, so it must be smaller. */
export interface NoopClause {
  text: (c: Cast, n: number) => string;
  part?: boolean;
}

export interface Template {
  id: string;
  /** Plural nouns this template counts (Cast.obj is drawn from them). */
  objects: readonly string[];
  /** Draws the opening; returns undefined when the draw is not valid for these ranges (the caller redraws). */
  opening: (c: Cast, draw: (slot: Slot) => number, maxValue: number) => Opening | undefined;
  /** Number of operations the opening takes (0 or 1). */
  openingOps: number;
  steps: readonly StepKind[];
  /** Optional closing operation, applied after all steps: `value op operand(memo)`. */
  final?: { op: Op; operand: (o: Opening) => number };
  question: (c: Cast) => string;
  /** Irrelevant clauses specific to the story (their number changes nothing); generic ones are in NOOP_CLAUSES. */
  noop: readonly NoopClause[];
}

// Names are single tokens of the task tokenizer. TRAIN_NAMES appear in train/test/p1/p2/noop; HELDOUT_NAMES only in
// the symbolic split (new names and numbers, as GSM-Symbolic re-draws both).
export const TRAIN_NAMES = [
  'Ava', 'Ben', 'Cara', 'Dan', 'Eli', 'Finn', 'Gina', 'Hugo', 'Ivy', 'Jack',
  'Kate', 'Leo', 'Mia', 'Nina', 'Owen', 'Paul', 'Rosa', 'Sam', 'Tom', 'Zoe',
] as const;
export const HELDOUT_NAMES = ['Omar', 'Lily', 'Max', 'Ruth', 'Yuki', 'Nora', 'Ivan', 'Wes'] as const;
export const THINGS = ['book', 'toy', 'hat', 'game', 'kite', 'cake'] as const;
export const COLORS = ['red', 'blue', 'green', 'small', 'old', 'new'] as const;

const COLLECT_OBJECTS = ['apples', 'pencils', 'stickers', 'marbles', 'shells', 'cards', 'stamps', 'beads'] as const;
const FOODS = ['muffins', 'cookies', 'rolls', 'pies', 'buns'] as const;
const ANIMALS = ['cows', 'goats', 'sheep', 'hens', 'ducks', 'pigs'] as const;

const plain = (draw: (slot: Slot) => number, maxValue: number, text: (a: number) => string): Opening | undefined => {
  const a = draw('count');
  return a <= maxValue ? { clause: text(a), eqs: [], value: a } : undefined;
};

/** An opening "a groups of b": one multiplication. */
const product = (draw: (slot: Slot) => number, maxValue: number, text: (a: number, b: number) => string): Opening | undefined => {
  const a = draw('factor');
  const b = draw('count');
  return a * b <= maxValue ? { clause: text(a, b), eqs: [{ a, op: '*', b, result: a * b }], value: a * b } : undefined;
};

export const TEMPLATES: readonly Template[] = [
  {
    id: 'collect',
    objects: COLLECT_OBJECTS,
    openingOps: 0,
    opening: (c, draw, max) => plain(draw, max, (a) => `${c.name} has ${a} ${c.obj}.`),
    steps: [
      { op: '+', text: (c, b) => `${c.name} finds ${b} more ${c.obj}.` },
      { op: '+', text: (c, b) => `${c.friend} gives ${c.name} ${b} more ${c.obj}.` },
      { op: '-', text: (c, b) => `${c.name} gives ${b} ${c.obj} to ${c.friend}.` },
      { op: '-', text: (c, b) => `${c.name} loses ${b} ${c.obj}.` },
      { op: '*', text: (c, b) => `${c.name} then gets ${b} times as many ${c.obj} as before.` },
      { op: '/', text: (c, b) => `${c.name} splits the ${c.obj} into ${b} equal groups and keeps one group.` },
    ],
    question: (c) => `How many ${c.obj} does ${c.name} have now?`,
    noop: [{ text: (c, n) => `${n} of the ${c.obj} are ${c.color}.`, part: true }],
  },
  {
    id: 'money',
    objects: ['dollars'],
    openingOps: 0,
    opening: (c, draw, max) => plain(draw, max, (a) => `${c.name} has ${a} dollars.`),
    steps: [
      { op: '+', text: (c, b) => `${c.name} earns ${b} dollars.` },
      { op: '+', text: (c, b) => `${c.friend} gives ${c.name} ${b} dollars.` },
      { op: '-', text: (c, b) => `${c.name} spends ${b} dollars on a ${c.thing}.` },
      { op: '-', text: (c, b) => `${c.name} pays ${c.friend} ${b} dollars.` },
      { op: '*', text: (c, b) => `${c.name} then has ${b} times as much money as before.` },
      { op: '/', text: (c, b) => `${c.name} splits the money into ${b} equal parts and keeps one part.` },
    ],
    question: (c) => `How many dollars does ${c.name} have now?`,
    noop: [{ text: (c, n) => `The ${c.thing} was ${n} dollars cheaper last year.` }],
  },
  {
    id: 'boxes',
    objects: COLLECT_OBJECTS,
    openingOps: 1,
    opening: (c, draw, max) => product(draw, max, (a, b) => `There are ${a} boxes with ${b} ${c.obj} in each box.`),
    steps: [
      { op: '+', text: (c, b) => `${c.name} puts ${b} more ${c.obj} into the boxes.` },
      { op: '-', text: (c, b) => `${c.name} takes ${b} ${c.obj} out of the boxes.` },
      { op: '-', text: (c, b) => `${c.friend} takes ${b} ${c.obj} out of the boxes.` },
    ],
    question: (c) => `How many ${c.obj} are in the boxes now?`,
    noop: [{ text: (c, n) => `Each box is ${n} inches tall.` }],
  },
  {
    id: 'baking',
    objects: FOODS,
    openingOps: 1,
    opening: (c, draw, max) => product(draw, max, (a, b) => `${c.name} bakes ${a} trays of ${c.obj} with ${b} ${c.obj} on each tray.`),
    steps: [
      { op: '+', text: (c, b) => `${c.name} bakes ${b} more ${c.obj}.` },
      { op: '-', text: (c, b) => `${c.friend} eats ${b} of the ${c.obj}.` },
      { op: '-', text: (c, b) => `${c.name} sells ${b} ${c.obj}.` },
      { op: '/', text: (c, b) => `${c.name} packs the ${c.obj} into ${b} equal bags and keeps one bag.` },
    ],
    question: (c) => `How many ${c.obj} does ${c.name} have now?`,
    noop: [{ text: (c, n) => `Each tray is ${n} inches wide.` }],
  },
  {
    id: 'compare',
    objects: COLLECT_OBJECTS,
    openingOps: 1,
    opening: (c, draw, max) => {
      const a = draw('count');
      const b = draw('delta');
      if (a + b > max) return undefined;
      return {
        clause: `${c.name} has ${a} ${c.obj}. ${c.friend} has ${b} more ${c.obj} than ${c.name}.`,
        eqs: [{ a, op: '+', b, result: a + b }],
        value: a + b,
        memo: a,
      };
    },
    // The steps change the friend's count; the question adds the first person's count back.
    steps: [
      { op: '+', text: (c, b) => `${c.friend} then finds ${b} more ${c.obj}.` },
      { op: '-', text: (c, b) => `${c.friend} then loses ${b} ${c.obj}.` },
      { op: '*', text: (c, b) => `${c.friend} then gets ${b} times as many ${c.obj} as before.` },
    ],
    final: { op: '+', operand: (o) => o.memo! },
    question: (c) => `How many ${c.obj} do ${c.name} and ${c.friend} have together?`,
    noop: [{ text: (c, n) => `${c.name} is ${n} years younger than ${c.friend}.` }],
  },
  {
    id: 'farm',
    objects: ANIMALS,
    openingOps: 0,
    opening: (c, draw, max) => plain(draw, max, (a) => `A farm has ${a} ${c.obj}.`),
    steps: [
      { op: '+', text: (c, b) => `${b} more ${c.obj} are born.` },
      { op: '+', text: (c, b) => `The farmer buys ${b} more ${c.obj}.` },
      { op: '-', text: (c, b) => `The farmer sells ${b} ${c.obj}.` },
      { op: '*', text: (c, b) => `The number of ${c.obj} then grows to ${b} times as many.` },
    ],
    question: (c) => `How many ${c.obj} are on the farm now?`,
    noop: [{ text: (c, n) => `The farm is ${n} miles from town.` }],
  },
];

/** Irrelevant clauses any story may take (the GSM-NoOp idea): a number that must not enter the solution. */
export const NOOP_CLAUSES: readonly NoopClause[] = [
  { text: (c, n) => `${c.other} is ${n} years old.` },
  { text: (c, n) => `${c.name} lives ${n} miles from school.` },
  { text: (_c, n) => `It rains for ${n} days that month.` },
];

/** The instruction appended to every problem, exactly as in the paper's benchmark files. */
export const INSTRUCTION = "Let's think step by step and output the final answer within \\boxed{}.";

export function applyOp(a: number, op: Op, b: number): number {
  switch (op) {
    case '+':
      return a + b;
    case '-':
      return a - b;
    case '*':
      return a * b;
    case '/':
      return a / b;
  }
}
