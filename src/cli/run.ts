/** `resonance run CONFIG.json`: run to completion with a progress bar, then a table or JSON. */
import { createWriteStream } from 'node:fs';
import cliProgress from 'cli-progress';
import { ConfigError, type HqeRunResult, type RunProgress, runHqe } from '../sim/run.js';
import type { BackendChoice, Precision } from '../engine/types.js';
import { exitCodeFor, parseCommand, UsageError } from './args.js';
import { printFieldErrors, readJsonFile } from './input.js';
import { formatRun } from './format.js';

export const RUN_USAGE = `usage: resonance run CONFIG.json [options]

Runs an HQE config to completion and prints the result: a table, or JSON with --json. On a terminal a
progress bar is shown on stderr once the run takes longer than a second.

options:
  --backend auto|cpu|webgpu   engine (default: RESONANCE_BACKEND, else auto: WebGPU on a GPU, else CPU)
  --precision f64|f32         CPU engine precision (default f64)
  --json                      print the full result as JSON on stdout
  --snapshots FILE.jsonl      write every snapshot as one JSON line
  -h, --help                  this text

exit codes: 0 done, 1 the simulation failed (a value went non-finite) or an internal error,
            2 invalid input (each bad field of the config is listed)`;

export interface ProgressReporter {
  update(p: RunProgress): void;
  /** The run ended: the bar shows its last step as the end (100%), also when it converged early. */
  finish(): void;
  /** The run was abandoned: the bar stays where it was. */
  stop(): void;
}

/**
 * A bar on `stream` (stderr), shown only once a run has taken longer than a second; without a terminal, a
 * line every 2 s instead. `now` is the clock (a parameter for the tests).
 */
export function progressReporter(stream: NodeJS.WritableStream & { isTTY?: boolean } = process.stderr, now: () => number = Date.now): ProgressReporter {
  const started = now();
  let bar: cliProgress.SingleBar | null = null;
  let lastLine = -Infinity;
  let last: RunProgress | null = null;
  return {
    update(p) {
      last = p;
      if (now() - started < 1000) return;
      if (stream.isTTY) {
        if (!bar) {
          bar = new cliProgress.SingleBar(
            { stream, format: 'running [{bar}] {percentage}% | step {value}/{total} | restart {restart} | {eta}s left', hideCursor: true },
            cliProgress.Presets.shades_classic,
          );
          bar.start(p.maxSteps, p.step, { restart: p.restart });
        }
        bar.update(p.step, { restart: p.restart });
      } else if (now() - lastLine > 2000) {
        lastLine = now();
        stream.write(`step ${p.step}/${p.maxSteps} (restart ${p.restart})\n`);
      }
    },
    finish() {
      // maxSteps is an upper bound: a run that converges or plateaus ends before it, and its last step is the end.
      if (bar && last) {
        bar.setTotal(last.step);
        bar.update(last.step, { restart: last.restart });
      }
      bar?.stop();
      bar = null;
    },
    stop() {
      bar?.stop();
      bar = null;
    },
  };
}

interface RunArgs {
  path: string | undefined;
  backend: BackendChoice | undefined;
  precision: Precision;
  json: boolean;
  snapshots: string | undefined;
}

function parse(args: string[]): RunArgs {
  const { values, positionals } = parseCommand({ name: 'run', usage: RUN_USAGE, positionals: 1 }, args, {
    backend: { type: 'string' },
    precision: { type: 'string', default: 'f64' },
    json: { type: 'boolean', default: false },
    snapshots: { type: 'string' },
  });
  const backend = values.backend;
  if (backend !== undefined && backend !== 'auto' && backend !== 'cpu' && backend !== 'webgpu') {
    throw new UsageError(`--backend must be auto, cpu or webgpu (got "${backend}")`, 'run');
  }
  if (values.precision !== 'f64' && values.precision !== 'f32') throw new UsageError(`--precision must be f64 or f32 (got "${values.precision}")`, 'run');
  return { path: positionals[0], backend, precision: values.precision, json: values.json, snapshots: values.snapshots };
}

async function writeSnapshots(path: string, result: HqeRunResult): Promise<void> {
  const out = createWriteStream(path);
  for (const s of result.snapshots) out.write(JSON.stringify(s) + '\n');
  await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
}

export async function runCommand(args: string[]): Promise<number> {
  let progress: ProgressReporter | null = null;
  let path = 'config';
  try {
    const opts = parse(args);
    path = opts.path ?? path;
    const config = await readJsonFile(opts.path, 'run');
    progress = progressReporter();
    const result = await runHqe(config, {
      backend: opts.backend,
      precision: opts.precision,
      onProgress: progress.update,
      // auto on a machine without a GPU: one line saying so (select.ts), not Dawn's warnings.
      onCpuFallback: (reason) => process.stderr.write(`resonance: ${reason}; using the CPU engine\n`),
    });
    progress.finish();
    if (opts.snapshots) await writeSnapshots(opts.snapshots, result);
    process.stdout.write(opts.json ? JSON.stringify(result, null, 2) + '\n' : formatRun(result));
    return result.status === 'failed' ? 1 : 0;
  } catch (err) {
    progress?.stop();
    if (err instanceof ConfigError) {
      printFieldErrors(path, err.errors);
      return 2;
    }
    return exitCodeFor(err);
  }
}
