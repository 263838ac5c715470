/**
 * Worker thread of the Checkpointer (checkpointer.ts): its own connection to the server's SQLite file runs
 * a passive WAL checkpoint every `everyMs` and reports what it did. A passive checkpoint copies committed
 * WAL frames into the database file (fsyncing the WAL before and the file after) without blocking the
 * server's writer.
 */
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';

export interface CheckpointWorkerData {
  path: string;
  everyMs: number;
}

/** One checkpoint: frames in the WAL, and frames copied into the database file. */
export interface CheckpointReport {
  type: 'checkpoint';
  log: number;
  checkpointed: number;
}

const { path, everyMs } = workerData as CheckpointWorkerData;
const db = new Database(path);
const port = parentPort!;

const timer = setInterval(() => {
  try {
    const [r] = db.pragma('wal_checkpoint(PASSIVE)') as Array<{ log: number; checkpointed: number }>;
    if (r && r.log > 0) port.postMessage({ type: 'checkpoint', log: r.log, checkpointed: r.checkpointed } satisfies CheckpointReport);
  } catch (err) {
    port.postMessage({ type: 'error', message: err instanceof Error ? err.message : String(err) });
  }
}, everyMs);

port.on('message', (m: unknown) => {
  if (m !== 'stop') return;
  clearInterval(timer);
  db.close();
  port.close();
});
