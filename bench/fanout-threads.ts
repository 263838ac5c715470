/**
 * The subscriber threads of the fan-out benchmarks (fanout.ts, cluster.ts): one fanout-worker.ts thread per
 * group of sessions. A thread answers its questions in order, so `ask` pairs each answer with its question.
 */
import { Worker } from 'node:worker_threads';
import type { FromWorker, ToWorker, WorkerInput } from './fanout-worker.js';

export interface SubscriberThreads {
  ask(w: number, msg: ToWorker): Promise<FromWorker>;
  tell(msg: ToWorker): void;
}

/** Starts a thread per group into `workers` (the caller terminates them, whatever happens). */
export function startSubscriberThreads(
  groups: Array<WorkerInput['sessions']>, maxVersion: number, workers: Worker[], onError: (message: string) => void,
): SubscriberThreads {
  const inbox: Array<Array<(m: FromWorker) => void>> = [];
  for (const [w, sessions] of groups.entries()) {
    const input: WorkerInput = { sessions, maxVersion, openConcurrency: 32 };
    const worker = new Worker(new URL('./fanout-worker.js', import.meta.url), { workerData: input });
    const waiting: Array<(m: FromWorker) => void> = [];
    inbox.push(waiting);
    worker.on('message', (m: FromWorker) => waiting.shift()?.(m));
    worker.on('error', (err) => onError(`worker ${w}: ${err.stack}`));
    workers.push(worker);
  }
  return {
    ask: (w, msg) =>
      new Promise((resolve) => {
        inbox[w]!.push(resolve);
        workers[w]!.postMessage(msg);
      }),
    tell: (msg) => workers.forEach((w) => w.postMessage(msg)),
  };
}
