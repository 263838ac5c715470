/** Runs the independent Python implementation of docs/model.md (test/reference/hqe_reference.py). */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { NormalizedConfig } from '../../src/model/config.js';

const script = fileURLToPath(new URL('../reference/hqe_reference.py', import.meta.url));

export interface ReferenceRecord {
  step: number;
  restart: number;
  n: number;
  flags: number;
  metrics: Record<string, number | boolean>;
  gamma: number;
  lnNu: number;
  R: number;
  phases?: number[];
  amplitudes?: number[];
}

export interface ReferenceResult {
  status: string;
  step: number;
  restart: number;
  finalMetrics: Record<string, number | boolean>;
  records: ReferenceRecord[];
}

export function runReference(config: NormalizedConfig & { semantic?: boolean }): ReferenceResult {
  const out = execFileSync('python3', [script], { input: JSON.stringify(config), maxBuffer: 1 << 28 });
  return JSON.parse(out.toString()) as ReferenceResult;
}
