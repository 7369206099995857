// A progress bar per benchmark (cli-progress, on stderr): samples done, samples/s over this run, running accuracy.
// Without a TTY (or with --json) it prints nothing; the runner logs one summary line per benchmark instead.
import cliProgress from 'cli-progress';

export interface BenchProgress {
  tick(correct: boolean | null): void;
  stop(): void;
}

export function startProgress(enabled: boolean, label: string, total: number, done: number, correct: number): BenchProgress {
  if (!enabled || total === 0) return { tick() {}, stop() {} };
  const bar = new cliProgress.SingleBar(
    {
      format: `${label.padEnd(20)} {bar} {value}/{total} | {rate} samples/s | acc {acc} | err {errors} | eta {eta_formatted}`,
      stream: process.stderr,
      hideCursor: true,
      barsize: 24,
      etaBuffer: 50,
      fps: 5,
    },
    cliProgress.Presets.shades_classic,
  );
  const t0 = Date.now();
  let n = done;
  let ok = correct;
  let errors = 0;
  let newSamples = 0;
  const payload = () => ({
    rate: newSamples === 0 ? '-' : (newSamples / Math.max(1e-3, (Date.now() - t0) / 1000)).toFixed(2),
    acc: n - errors === 0 ? '-' : `${((100 * ok) / (n - errors)).toFixed(1)}%`,
    errors,
  });
  bar.start(total, done, payload());
  return {
    tick(c) {
      n++;
      newSamples++;
      if (c === null) errors++;
      else if (c) ok++;
      bar.update(n, payload());
    },
    stop() {
      bar.stop();
    },
  };
}
