// The evaluation API: runEval over a Generator (local engine or OpenAI-compatible endpoint).
export { runEval, type RunEvalOptions, type EvalResults, type BenchmarkPlan, type BenchmarkResult } from './run.js';
export { EndpointGenerator, type EndpointOptions } from './endpoint.js';
export { LocalGenerator, loadLocalModel } from './local.js';
export { LocalModel } from './localmodel.js';
export { GenerationStore } from './store.js';
export type { Generator, GenRequest, Completion, SampleRecord, SamplingParams } from './types.js';
