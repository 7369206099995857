// Every benchmark suite `clipo bench` knows. Add a suite by importing it and appending it to the list.
import { bandwidthSuite } from './bandwidth.js';
import { contrastiveSuite } from './contrastive.js';
import { engineSuite } from './engine.js';
import type { BenchSuite } from './types.js';

export const benchSuites: BenchSuite[] = [
  bandwidthSuite,
  contrastiveSuite,
  engineSuite,
];

export const defaultBenchGroup = 'kernels';
