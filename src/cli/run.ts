/** `resonance run CONFIG.json`: run to completion with a progress bar, then a table or JSON. */
import { createWriteStream } from 'node:fs';
import { parseArgs } from 'node:util';
import cliProgress from 'cli-progress';
import { ConfigError, type HqeRunResult, type RunProgress, runHqe } from '../sim/run.js';
import type { BackendChoice, Precision } from '../engine/types.js';
import { exitCodeFor, printFieldErrors, readJsonFile, UsageError } from './input.js';
import { formatRun } from './format.js';

/** A bar on stderr, shown only once a run has taken longer than a second. */
function progressReporter(): { update: (p: RunProgress) => void; stop: () => void } {
  const started = Date.now();
  let bar: cliProgress.SingleBar | null = null;
  let lastLine = 0;
  return {
    update(p) {
      if (Date.now() - started < 1000) return;
      if (process.stderr.isTTY) {
        if (!bar) {
          bar = new cliProgress.SingleBar(
            { stream: process.stderr, format: 'running [{bar}] {percentage}% | step {value}/{total} | restart {restart} | {eta}s left', hideCursor: true },
            cliProgress.Presets.shades_classic,
          );
          bar.start(p.maxSteps, p.step, { restart: p.restart });
        }
        bar.update(p.step, { restart: p.restart });
      } else if (Date.now() - lastLine > 2000) {
        lastLine = Date.now();
        process.stderr.write(`step ${p.step}/${p.maxSteps} (restart ${p.restart})\n`);
      }
    },
    stop() {
      bar?.stop();
    },
  };
}

function parse(args: string[]): { path: string | undefined; backend: BackendChoice | undefined; precision: Precision; json: boolean; snapshots?: string } {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      backend: { type: 'string' },
      precision: { type: 'string', default: 'f64' },
      json: { type: 'boolean', default: false },
      snapshots: { type: 'string' },
    },
  });
  const backend = values.backend;
  if (backend !== undefined && backend !== 'auto' && backend !== 'cpu' && backend !== 'webgpu') {
    throw new UsageError(`--backend must be auto, cpu or webgpu (got "${backend}")`);
  }
  if (values.precision !== 'f64' && values.precision !== 'f32') throw new UsageError('--precision must be f64 or f32');
  return { path: positionals[0], backend, precision: values.precision, json: values.json, snapshots: values.snapshots };
}

async function writeSnapshots(path: string, result: HqeRunResult): Promise<void> {
  const out = createWriteStream(path);
  for (const s of result.snapshots) out.write(JSON.stringify(s) + '\n');
  await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
}

export async function runCommand(args: string[]): Promise<number> {
  let progress: ReturnType<typeof progressReporter> | null = null;
  try {
    const opts = parse(args);
    const config = await readJsonFile(opts.path);
    progress = progressReporter();
    const result = await runHqe(config, { backend: opts.backend, precision: opts.precision, onProgress: progress.update });
    progress.stop();
    if (opts.snapshots) await writeSnapshots(opts.snapshots, result);
    process.stdout.write(opts.json ? JSON.stringify(result, null, 2) + '\n' : formatRun(result));
    return result.status === 'failed' ? 1 : 0;
  } catch (err) {
    progress?.stop();
    if (err instanceof ConfigError) {
      printFieldErrors(args.find((a) => !a.startsWith('--')) ?? 'config', err.errors);
      return 2;
    }
    if (err instanceof TypeError && 'code' in err && String(err.code).startsWith('ERR_PARSE_ARGS')) {
      return exitCodeFor(new UsageError(err.message));
    }
    return exitCodeFor(err);
  }
}
