// Loads the native addon (built by `npm install` with cmake-js into build/Release/clipo.node) once, lazily.
// CLIPO_NATIVE_ADDON overrides the path (e.g. a CUDA build kept in another folder).
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export interface BuildInfo {
  modules: string[];
  cudaCompiled: boolean;
  openmp: boolean;
  compiler: string;
}

export type NativeAddon = { buildInfo(): BuildInfo } & Record<string, unknown>;

/** Repository/package root (two levels above dist/src/). */
export const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

let cached: NativeAddon | undefined;

export function addonPath(): string {
  return process.env.CLIPO_NATIVE_ADDON ?? path.join(packageRoot, 'build', 'Release', 'clipo.node');
}

export function loadNative(): NativeAddon {
  if (cached) return cached;
  const p = addonPath();
  if (!existsSync(p)) {
    throw new Error(`the native addon is not built (looked for ${p}); run \`npm run build:native\` in ${packageRoot}`);
  }
  const require = createRequire(import.meta.url);
  cached = require(p) as NativeAddon;
  return cached;
}

/** A function exported by a native module, with a clear error when that module was not compiled in. */
export function nativeFunction<F extends (...args: never[]) => unknown>(name: string): F {
  const addon = loadNative();
  const fn = addon[name];
  if (typeof fn !== 'function') {
    throw new Error(`native function ${name} is not in this build of the addon (modules: ${addon.buildInfo().modules.join(', ')})`);
  }
  return fn as F;
}
