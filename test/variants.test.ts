// One vocabulary per variant: the TypeScript lists (src/kernels/variants.ts) and the native ones
// (native/common/variants.h) are the same names in the same order, and the config schema takes its enums from them.
import { nativeFunction } from '../src/native.js';
import * as v from '../src/kernels/variants.js';
import { algorithmSchema, clipoSchema } from '../src/config/schema.js';

interface NativeVariants {
  surrogateModes: string[];
  surrogateAggs: string[];
  klTypes: string[];
  contrastiveLossTypes: string[];
  contrastiveLevels: string[];
  contrastiveDistances: string[];
  contrastiveHeadKinds: string[];
  tokenDtypes: string[];
  policyLossModes: Record<string, { clipLowBelow: number; clipHighMax: number; dualClip: boolean }>;
}

describe('variant vocabulary', () => {
  const native = nativeFunction<() => NativeVariants>('kernelVariants')();

  test('the native parser knows the same names, in the same order', () => {
    for (const key of ['surrogateModes', 'surrogateAggs', 'klTypes', 'contrastiveLossTypes', 'contrastiveLevels', 'contrastiveDistances', 'contrastiveHeadKinds', 'tokenDtypes'] as const) {
      expect([key, native[key]]).toEqual([key, [...v[key]]]);
    }
  });

  test('the policy-loss mode table has the limits the native boundary enforces', () => {
    expect(Object.keys(native.policyLossModes)).toEqual([...v.surrogateModes]);
    for (const m of v.surrogateModes) {
      const { clipLowBelow, clipHighMax, dualClip } = v.policyLossModes[m];
      expect([m, native.policyLossModes[m]]).toEqual([m, { clipLowBelow, clipHighMax, dualClip }]);
    }
  });

  test('the config schema accepts exactly the vocabulary', () => {
    for (const mode of v.surrogateModes) expect(algorithmSchema.safeParse({ mode }).success).toBe(true);
    for (const agg of v.surrogateAggs) expect(algorithmSchema.safeParse({ agg }).success).toBe(true);
    for (const loss_type of v.contrastiveLossTypes) expect(clipoSchema.safeParse({ loss_type }).success).toBe(true);
    for (const level of v.contrastiveLevels) expect(clipoSchema.safeParse({ level }).success).toBe(true);
    for (const distance of v.contrastiveDistances) expect(clipoSchema.safeParse({ distance }).success).toBe(true);
    for (const head of v.contrastiveHeadKinds) expect(clipoSchema.safeParse({ head }).success).toBe(true);
    expect(algorithmSchema.safeParse({ mode: 'ppo' }).success).toBe(false);
    expect(clipoSchema.safeParse({ level: 'global' }).success).toBe(false);
  });
});
