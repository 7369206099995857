// What eval takes from the data and verifier modules, in one place.
export { loadDataset, datasetName, type DataRow } from '../data/load.js';
export { suites, suiteSummary, isSuiteName, defaultDataRoot, type SuiteName } from '../data/suites.js';
export { verify, type VerifyResult } from '../verify/index.js';
export { VerifierPool } from '../verify/pool.js';
