// The clipo library API. Everything a script or another tool needs is exported from here.
export { loadNative, type BuildInfo } from './native.js';
export { measureBandwidth } from './bench/bandwidth.js';
export { Rng } from './util/rng.js';
export { verify, reward, type VerifyResult, type VerifyOptions } from './verify/index.js';
export { loadDataset, type DataRow, type LoadOptions, type LoadedDataset, DataRowError } from './data/load.js';
export { suites, suiteSummary, defaultDataRoot, type SuiteName, type SuiteDef, type SuiteBenchmark } from './data/suites.js';
export { buildMessages, buildPrompt, MATH_INSTRUCTION, choiceInstruction, type ChatMessage } from './data/prompt.js';
export { contrastiveLoss, contrastiveLossUnfused, contrastiveReward, type ContrastiveLossOptions, type ContrastiveLossResult, type ContrastiveRewardOptions } from './kernels/contrastive.js';
export { surrogateLoss, type SurrogateInput, type SurrogateOutput, type SurrogateMode, type SurrogateAgg } from './kernels/surrogate.js';
export { availableBackends, resolveBackend, type Backend, type BackendRequest } from './kernels/backend.js';
export { Engine, type EngineOptions, type GenerateRequest, type GeneratedSequence, type ScoreResult, type ScoreBatch, type AdamWOptions, type OptimizerState } from './engine/engine.js';
export { parameterShapes, countParameters, randomWeights } from './engine/params.js';
export { runEval, type RunEvalOptions, type EvalResults, EndpointGenerator, LocalGenerator, loadLocalModel, type Generator, type SampleRecord } from './eval/index.js';
export { startServer, createServeHandler } from './serve/server.js';
