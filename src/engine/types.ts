/**
 * The Engine interface shared by the CPU and WebGPU engines. An engine owns resident simulations and
 * advances all of them by ticks (docs/engine.md); it returns only what the caller needs to see: records of
 * the visited states that carry metrics, snapshots or events.
 */
import type { Metrics } from '../model/config.js';
import type { SimSpec } from '../model/spec.js';

export type BackendKind = 'cpu' | 'webgpu';
export type BackendChoice = 'auto' | BackendKind;
export type Precision = 'f32' | 'f64';

export type SimStatus = 'running' | 'plateau' | 'converged' | 'failed' | 'completed';

/** Bits of TickRecord.flags (docs/engine.md, "Records"). */
export const Flag = {
  METRICS: 1,
  SNAPSHOT: 2,
  TERMINAL: 4,
  PLATEAU: 8,
  CONVERGED: 16,
  FAILED: 32,
  RESTART: 64,
} as const;

export interface TickRecord {
  /** Global step (all restarts) of the visited state. */
  step: number;
  restart: number;
  /** Step within the restart. */
  n: number;
  flags: number;
  metrics: Metrics;
  gamma: number;
  lnNu: number;
  /** The controlled resonance R_n of resonanceTarget.operator (resonanceStrength when there is no target). */
  controlled: number;
  /** Present on SNAPSHOT records. */
  phases?: Float64Array;
  /** e^lnNu * a_i; present on SNAPSHOT records. */
  amplitudes?: Float64Array;
}

export interface SimReport {
  status: SimStatus;
  /** Global step of the current state. */
  step: number;
  restart: number;
  /** New records since the previous advance, in tick order. */
  records: TickRecord[];
}

export interface EngineInfo {
  backend: BackendKind;
  /** Human-readable: the adapter (WebGPU) or the CPU mode and threads. */
  adapter: string;
  precision: Precision;
}

export interface Engine {
  readonly info: EngineInfo;
  /** Make a simulation resident; returns its id. Throws on a spec the engine cannot hold. */
  add(spec: SimSpec): number;
  /** Drop a simulation (its slot is reused). */
  remove(id: number): void;
  /** Advance every running simulation by up to `ticks` ticks; terminal ones stay frozen. */
  advance(ticks: number): Promise<Map<number, SimReport>>;
  /** Release threads and devices. The engine is unusable afterwards. */
  destroy(): Promise<void>;
}

export function statusOfFlags(flags: number, fallback: SimStatus): SimStatus {
  if (!(flags & Flag.TERMINAL)) return fallback;
  if (flags & Flag.FAILED) return 'failed';
  if (flags & Flag.CONVERGED) return 'converged';
  if (flags & Flag.PLATEAU) return 'plateau';
  return 'completed';
}
