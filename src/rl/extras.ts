// What a run does around each step besides training: TensorBoard, rollout logs, guards and validation (with the
// keep-best checkpoint). The loop (loop.ts) calls `start` before the first step, `afterStep` after each step (its
// figures join that step's metrics row) and `close` at the end; each feature lives in its own module.
import { existsSync, readFileSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import type { TrainConfig } from '../config/load.js';
import type { GenerateEngine } from '../eval/localmodel.js';
import type { ModelTokenizer } from '../model/tokenizer.js';
import { appendText, writeFileAtomic, writeJsonAtomic } from '../util/atomic.js';
import { Guards, type GuardWarning } from './guards.js';
import { writeRolloutLog } from './rollout-log.js';
import { EventWriter } from './tensorboard.js';
import type { StepDetail, StepMetrics } from './trainer.js';
import { planValidation, runValidation, validationDue, type ValidationPlan, type ValidationResult } from './validation.js';

export interface ExtrasOptions {
  config: TrainConfig;
  outputDir: string;
  totalSteps: number;
  /** the policy engine (validation samples from it) and the tokenizer (chat template) */
  engine: GenerateEngine;
  tokenizer: ModelTokenizer;
  /** writes the current policy as an HF directory into `dir` (keep-best) */
  savePolicy: (dir: string) => void;
  onWarning?: (w: GuardWarning, step: number) => void;
  onValidation?: (r: ValidationResult) => void;
}

export interface AfterStep {
  /** figures to add to the step's metrics row (validation) */
  row: Record<string, number>;
  warnings: GuardWarning[];
}

export const validationLogPath = (outputDir: string) => path.join(outputDir, 'validation.jsonl');
/** every guard warning, one JSON line each: step, guard, message */
export const warningsLogPath = (outputDir: string) => path.join(outputDir, 'warnings.jsonl');

export class TrainExtras {
  readonly tb: EventWriter | null;
  private readonly guards: Guards;
  private readonly plan: ValidationPlan | null;
  private best: { value: number; step: number } | null = null;

  constructor(private readonly o: ExtrasOptions) {
    const c = o.config;
    this.plan = c.validation ? planValidation(c.validation, c.data.max_response_tokens) : null;
    if (c.validation?.keep_best && !this.plan) throw new Error('validation.keep_best needs validation');
    this.tb = c.output.tensorboard ? new EventWriter(path.join(o.outputDir, 'tensorboard')) : null;
    this.guards = new Guards(c.guards);
    const bestFile = path.join(o.outputDir, 'best', 'best.json');
    if (existsSync(bestFile)) this.best = JSON.parse(readFileSync(bestFile, 'utf8')) as { value: number; step: number };
  }

  /** Keeps the rows of validation.jsonl up to `step` (resume). */
  static truncateValidationLog(outputDir: string, step: number): void {
    const f = validationLogPath(outputDir);
    if (!existsSync(f)) return;
    const keep = readFileSync(f, 'utf8').split('\n').filter((l) => l.trim() && (JSON.parse(l) as { step: number }).step <= step);
    writeFileAtomic(f, keep.map((l) => l + '\n').join(''));
  }

  /** Before the first step of a fresh run: the step-0 validation. */
  async start(step: number): Promise<void> {
    if (step === 0 && this.plan && validationDue(this.o.config.validation!, 0, this.o.totalSteps)) await this.validate(0);
  }

  async afterStep(m: StepMetrics, d: StepDetail): Promise<AfterStep> {
    const c = this.o.config;
    const row: Record<string, number> = {};
    if (this.plan && validationDue(c.validation!, m.step, this.o.totalSteps)) {
      const r = await this.validate(m.step);
      for (const [k, v] of Object.entries(r.figures)) row[`val/${k}`] = v;
    }
    if (this.tb) {
      const { reward_parts, ...flat } = m;
      this.tb.scalars(m.step, flat as unknown as Record<string, number | boolean | null>, 'train/');
      if (reward_parts) this.tb.scalars(m.step, reward_parts, 'train/reward_part/');
    }
    writeRolloutLog(this.o.outputDir, d, c.output.rollouts_every, c.output.rollouts_text, this.tb);
    const warnings = this.guards.observe({ step: m.step, truncated_frac: m.truncated_frac, no_spread_group_frac: m.no_spread_group_frac, reward_error_frac: m.reward_error_frac, entropy: m.entropy });
    for (const w of warnings) {
      appendText(warningsLogPath(this.o.outputDir), JSON.stringify({ step: m.step, ...w }) + '\n');
      this.o.onWarning?.(w, m.step);
    }
    return { row, warnings };
  }

  private async validate(step: number): Promise<ValidationResult> {
    const dir = path.join(this.o.outputDir, 'validation', `step-${String(step).padStart(8, '0')}`);
    rmSync(dir, { recursive: true, force: true }); // a resumed run redoes a validation it had begun
    const r = await runValidation({ plan: this.plan!, engine: this.o.engine, tokenizer: this.o.tokenizer, dir, step, modelName: path.basename(this.o.config.model.path) });
    appendText(validationLogPath(this.o.outputDir), JSON.stringify({ step, ...r.figures, seconds: r.seconds }) + '\n');
    this.tb?.scalars(step, r.figures, 'val/');
    this.o.onValidation?.(r);
    const key = this.o.config.validation!.keep_best;
    if (key) {
      const v = r.figures[key];
      if (v === undefined) throw new Error(`validation.keep_best: no figure '${key}' (figures: ${Object.keys(r.figures).join(', ')})`);
      if (!this.best || v > this.best.value) {
        const best = path.join(this.o.outputDir, 'best');
        const tmp = path.join(this.o.outputDir, `.best-${process.pid}`);
        rmSync(tmp, { recursive: true, force: true });
        this.o.savePolicy(path.join(tmp, 'policy'));
        writeJsonAtomic(path.join(tmp, 'best.json'), { step, figure: key, value: v });
        rmSync(best, { recursive: true, force: true });
        renameSync(tmp, best);
        this.best = { value: v, step };
      }
    }
    return r;
  }

  close(): void {
    this.tb?.close();
  }
}
