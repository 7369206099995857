// clipo_gpulibs.so (cuBLASLt + NCCL, opened by the addon at run time): what the build found, that it loads where it
// was built, that a missing GPU is a clear Error (never a crash), and on a GPU that both probes check their results.
// CLIPO_EXPECT_GPULIBS=1 (set by .ci/run after building against the NVIDIA wheels) turns "not built" into a failure.
import { availableBackends } from '../src/kernels/backend.js';
import { allReduceProbe, engineGemmInfo, gemmProbe, gpuLibUnusable, gpuLibsInfo } from '../src/kernels/gpulibs.js';
import { gemmShapes, gemmTolerance } from '../src/bench/gpulibs.js';
import { spawnSync } from 'node:child_process';
import { addonPath, loadNative } from '../src/native.js';
import { runClipo } from './helpers/cli.js';

const info = gpuLibsInfo();
const expectBuilt = process.env.CLIPO_EXPECT_GPULIBS === '1';
const gpu = info.loaded && (info.runtime?.deviceCount ?? 0) > 0;
const builtTest = info.built ? test : test.skip;
const gpuTest = gpu ? test : test.skip;
// tests that only make sense without a GPU are not registered on one, so a GPU run reports 0 skipped
if (!info.built) console.log(`gpulibs tests: clipo_gpulibs not built (${info.build.why}); load and probe tests skip`);
if (info.built && !gpu) console.log('gpulibs tests: no GPU here; GPU probe tests skip');

describe('clipo_gpulibs: build report and loading', () => {
  test('the build says what it found or why not, for each library', () => {
    for (const lib of ['cublasLt', 'nccl'] as const) {
      const f = info.build[lib];
      if (f.found) {
        expect(f.library).toMatch(lib === 'nccl' ? /libnccl\.so/ : /libcublasLt\.so/);
        expect(f.include).toBeTruthy();
      } else expect(f.why).toBeTruthy();
    }
    if (!info.built) expect(info.build.why).toBeTruthy();
    if (expectBuilt) {
      expect({ built: info.built, loaded: info.loaded, error: info.error }).toEqual({ built: true, loaded: true, error: undefined });
      expect(info.build.cublasLt.found && info.build.nccl.found).toBe(true);
    }
  });

  test('the addon itself links neither library (it opens clipo_gpulibs.so at run time)', () => {
    expect(loadNative().buildInfo().modules).toContain('gpulibs');
    const r = spawnSync('readelf', ['-d', addonPath()], { encoding: 'utf8' });
    if (r.status !== 0) return;  // no binutils: the module check above is all there is
    const needed = [...r.stdout.matchAll(/\(NEEDED\).*\[(.*)\]/g)].map((m) => m[1]);
    expect(needed.length).toBeGreaterThan(0);
    expect(needed.filter((n) => /cublas|nccl|cudart/.test(n!))).toEqual([]);
  });

  builtTest('where it was built, it loads and reports the versions it linked', () => {
    expect(info.error).toBeUndefined();
    expect(info.loaded).toBe(true);
    const rt = info.runtime!;
    expect(rt.cublasLt).toBe(info.build.cublasLt.found);
    expect(rt.nccl).toBe(info.build.nccl.found);
    if (rt.cublasLt) expect(rt.cublasLtVersion).toBeGreaterThan(10000);
    if (rt.nccl) expect(rt.ncclVersion).toBeGreaterThan(20000);
    expect(rt.cudaRuntimeVersion).toBeGreaterThan(10000);
  });

  if (info.built && !gpu) test('without a GPU the probes are clear Errors, not crashes', () => {
    expect(gpuLibUnusable('cublasLt')).toMatch(/no usable GPU|not found|not compiled/);
    expect(() => gemmProbe({ m: 64, n: 64, k: 64 })).toThrow(/gpuLibsGemmBf16: .*(no CUDA device|without cuBLASLt)/);
    expect(() => allReduceProbe({ megabytes: 1 })).toThrow(/gpuLibsAllReduce: .*(no CUDA device|without NCCL)/);
  });

  test('bad probe arguments are clear Errors', () => {
    expect(() => gemmProbe({ m: 0, n: 8, k: 8 })).toThrow(/m: expected an integer/);
    expect(() => gemmProbe({ m: 8, n: 8.5, k: 8 })).toThrow(/n: expected an integer/);
    expect(() => gemmProbe({ m: 8, n: 8 } as never)).toThrow(/k: expected a number/);
    expect(() => allReduceProbe({ megabytes: -1 })).toThrow(/megabytes: expected an integer/);
  });

  test('the GEMM shapes are the Qwen2.5 projections (qkv of 7B: 3584 + 2*4*128 = 4608)', () => {
    const s = gemmShapes(4096);
    expect(s).toHaveLength(15);
    expect(s.find((x) => x.model === 'Qwen2.5-7B' && x.proj === 'qkv')).toEqual({ model: 'Qwen2.5-7B', proj: 'qkv', M: 4096, N: 4608, K: 3584 });
    expect(s.find((x) => x.model === 'Qwen2.5-0.5B' && x.proj === 'down')).toEqual({ model: 'Qwen2.5-0.5B', proj: 'down', M: 4096, N: 896, K: 4864 });
  });

  test('`clipo bench backends --json` has a row for each library that matches gpuLibsInfo', () => {
    const r = runClipo('bench', 'backends', '--json');
    expect(r.code).toBe(0);
    const rows = JSON.parse(r.out).reports[0].rows as Array<{ backend: string; compiled: boolean; usable: boolean; detail: string }>;
    const blas = rows.find((x) => x.backend === 'cublaslt')!;
    expect(blas.compiled).toBe(info.built && info.build.cublasLt.found);
    expect(blas.usable).toBe(gpuLibUnusable('cublasLt') === null);
    expect(blas.detail).toMatch(info.build.cublasLt.found ? /built against .*libcublasLt/ : /not found at build time/);
    // the CUDA engine's GEMM: cuBLASLt exactly where the library can run it (unless CLIPO_CUDA_GEMM says otherwise)
    const gemm = rows.find((x) => x.backend === 'engine gemm')!;
    const g = engineGemmInfo();
    expect(gemm.compiled).toBe(g.impl !== 'none');
    if (g.impl !== 'none' && g.mode === 'auto') expect(g.impl).toBe(gpuLibUnusable('cublasLt') === null ? 'cublaslt' : 'builtin');
    expect(gemm.detail).toContain(g.impl === 'none' ? g.why : `${g.impl} (CLIPO_CUDA_GEMM=${g.mode}`);
  });

  if (!gpu) test('`clipo bench gpulibs --backend cuda` without a GPU exits 1 saying why', () => {
    const r = runClipo('bench', 'gpulibs', '--backend', 'cuda', '--json');
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/gpulibs: --backend cuda: cuBLASLt: /);
  });
});

describe('clipo_gpulibs on a GPU', () => {
  gpuTest('bf16 GEMM matches the fp32 reference on partial-tile and engine shapes', () => {
    // multiples of 8 (bf16 rows 16-byte aligned, as the engine's are) but not of the tile sizes
    for (const [m, n, k] of [[24, 40, 72], [136, 264, 520], [512, 1152, 896]] as const) {
      const r = gemmProbe({ m, n, k, repeats: 2, warmup: 1, checkSamples: 512, seed: m });
      expect(r.checked).toBe(512);
      expect(r.maxScaledError).toBeLessThanOrEqual(gemmTolerance);
      expect(r.msMedian).toBeGreaterThan(0);
    }
  });

  gpuTest('one-rank all-reduce returns its input exactly', () => {
    const r = allReduceProbe({ megabytes: 8, repeats: 2 });
    expect(r.nranks).toBe(1);
    expect(r.maxAbsError).toBe(0);
    expect(availableBackends().cuda).toBe(true);
  });
});
