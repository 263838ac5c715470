/**
 * Run an HQE config to completion (docs/model.md sections 4–6): the response of POST /v1/hqe/run and of
 * `resonance run`.
 */
import type { Metrics, NormalizedConfig } from '../model/config.js';
import { type FieldError, normalize, type NormalizeOptions } from '../model/normalize.js';
import { specFromConfig } from '../model/spec.js';
import { createEngine, type EngineOptions } from '../engine/select.js';
import { type Engine, type EngineInfo, Flag, type Precision, type SimStatus, statusOfFlags, type TickRecord } from '../engine/types.js';

export class ConfigError extends Error {
  constructor(readonly errors: FieldError[]) {
    super(`invalid HQE config: ${errors.map((e) => `${e.pointer || '/'}: ${e.message}`).join('; ')}`);
  }
}

export interface Snapshot {
  step: number;
  restart: number;
  metrics: Metrics;
  amplitudes?: number[];
  phases?: number[];
}

export interface MetricsSample extends Metrics {
  step: number;
  restart: number;
}

export type RunEventType = 'plateau' | 'converged' | 'failed' | 'restart';

export interface RunEvent {
  type: RunEventType;
  step: number;
  restart: number;
}

export interface HqeRunResult {
  runId: string;
  status: Exclude<SimStatus, 'running'>;
  seed: number;
  /** Global step of the final state. */
  steps: number;
  /** Restarts begun. */
  restarts: number;
  /** The engine that ran it: an f32 server engine runs a band f32 cannot resolve on CPU f64 (docs/model.md section 9). */
  backend: string;
  adapter: string;
  precision: Precision;
  finalMetrics: Metrics;
  snapshots: Snapshot[];
  metrics: MetricsSample[];
  events: RunEvent[];
  warnings: string[];
  elapsedMs: number;
}

export interface RunProgress {
  step: number;
  /** Upper bound of global steps: steps x (restarts + 1). */
  maxSteps: number;
  restart: number;
}

export interface RunOptions extends EngineOptions, NormalizeOptions {
  /** Use this engine instead of creating (and destroying) one. */
  engine?: Engine;
  onProgress?: (p: RunProgress) => void;
}

const EVENT_FLAGS: Array<[number, RunEventType]> = [
  [Flag.PLATEAU, 'plateau'],
  [Flag.CONVERGED, 'converged'],
  [Flag.FAILED, 'failed'],
  [Flag.RESTART, 'restart'],
];

/** Ticks per advance: about 2^22 kernel entries of work, so progress and cancellation stay responsive. */
export function ticksPerAdvance(k: number): number {
  return Math.max(1, Math.min(1024, Math.floor(2 ** 22 / (k * k))));
}

export async function runHqe(config: unknown, options: RunOptions = {}): Promise<HqeRunResult> {
  const started = performance.now();
  const result = normalize(config, options);
  if (!result.ok) throw new ConfigError(result.errors);
  const cfg = result.normalized;
  const spec = specFromConfig(cfg);
  const engine = options.engine ?? (await createEngine(options));
  const info = engine.infoFor(spec);
  const id = engine.add(spec);
  const maxSteps = spec.steps * (spec.restarts + 1);
  const records: TickRecord[] = [];
  let status: SimStatus = 'running';
  try {
    const ticks = ticksPerAdvance(spec.primes.length);
    while (status === 'running') {
      const report = (await engine.advance(ticks)).get(id);
      if (!report) throw new Error('engine lost the simulation');
      records.push(...report.records);
      status = report.status;
      options.onProgress?.({ step: report.step, maxSteps, restart: report.restart });
    }
  } finally {
    engine.remove(id);
    if (!options.engine) await engine.destroy();
  }

  return resultFromRecords(records, cfg, result.warnings, info, started);
}

/** A snapshot record as the API shows it: amplitudes and phases only where the observables record them. */
export function snapshotOf(r: TickRecord, rec: NormalizedConfig['observables']): Snapshot {
  const snap: Snapshot = { step: r.step, restart: r.restart, metrics: r.metrics };
  if (rec.recordAmplitudes && r.amplitudes) snap.amplitudes = Array.from(r.amplitudes);
  if (rec.recordPhases && r.phases) snap.phases = Array.from(r.phases);
  return snap;
}

export function eventsOf(r: TickRecord): RunEvent[] {
  return EVENT_FLAGS.filter(([bit]) => r.flags & bit).map(([, type]) => ({ type, step: r.step, restart: r.restart }));
}

/**
 * The run response from a run's records (docs/engine.md): snapshots, metrics samples, events, final state;
 * `info` is the engine that ran it (Engine.infoFor).
 */
export function resultFromRecords(records: TickRecord[], cfg: NormalizedConfig, warnings: string[], info: EngineInfo, started: number): HqeRunResult {
  const last = records[records.length - 1];
  if (!last || !(last.flags & Flag.TERMINAL)) throw new Error('run ended without a terminal record');
  const status = statusOfFlags(last.flags, 'running');
  const snapshots: Snapshot[] = [];
  const metrics: MetricsSample[] = [];
  const events: RunEvent[] = [];
  for (const r of records) {
    if (r.flags & Flag.METRICS) metrics.push({ step: r.step, restart: r.restart, ...r.metrics });
    if (r.flags & Flag.SNAPSHOT) snapshots.push(snapshotOf(r, cfg.observables));
    events.push(...eventsOf(r));
  }
  return {
    runId: crypto.randomUUID(),
    status: status as HqeRunResult['status'],
    seed: cfg.seed,
    steps: last.step,
    restarts: last.restart,
    backend: info.backend,
    adapter: info.adapter,
    precision: info.precision,
    finalMetrics: last.metrics,
    snapshots,
    metrics,
    events,
    warnings,
    elapsedMs: performance.now() - started,
  };
}
