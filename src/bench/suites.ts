// Every benchmark suite `clipo bench` knows. Add a suite by importing it and appending it to the list.
import { bandwidthSuite } from './bandwidth.js';
import { contrastiveSuite } from './contrastive.js';
import { engineSuite } from './engine.js';
import { backendsSuite } from './backends.js';
import { gpuLibsSuite } from './gpulibs.js';
import { surrogateSuite } from './surrogate.js';
import { trainSuite } from './train.js';
import type { BenchSuite } from './types.js';
import { verifySuite } from './verify.js';

export const benchSuites: BenchSuite[] = [
  bandwidthSuite,
  contrastiveSuite,
  engineSuite,
  surrogateSuite,
  backendsSuite,
  gpuLibsSuite,
  trainSuite,
  verifySuite,
];

export const defaultBenchGroup = 'kernels';
