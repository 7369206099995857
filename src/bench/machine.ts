// A description of the machine a benchmark ran on, stored with every result.
import os from 'node:os';
import { loadNative } from '../native.js';

export function machineInfo(): Record<string, unknown> {
  const cpus = os.cpus();
  let build: unknown = null;
  try {
    build = loadNative().buildInfo();
  } catch (e) {
    build = { error: (e as Error).message };
  }
  return {
    cpu: cpus[0]?.model ?? 'unknown',
    cores: cpus.length,
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    platform: `${os.platform()} ${os.arch()}`,
    node: process.version,
    addon: build,
    date: new Date().toISOString(),
  };
}
