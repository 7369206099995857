// Tests are written in TypeScript under test/ and compiled by `tsc` to dist/test/ (ESM); jest runs the compiled
// files with Node's native ESM support, so the code under test is exactly what users run.
export default {
  testEnvironment: 'node',
  roots: ['<rootDir>/dist/test'],
  testMatch: ['**/*.test.js'],
  testTimeout: 120000,
};
