/**
 * Worker thread of the Checkpointer (checkpointer.ts): its own connection to the server's SQLite file runs
 * a passive WAL checkpoint every `everyMs` and reports what it did. A passive checkpoint copies committed
 * WAL frames into the database file (fsyncing the WAL before and the file after) without blocking the
 * server's writer. The WAL file itself never shrinks by that: after a burst of writes it stays as large as
 * the burst made it. So when a passive checkpoint finds the whole WAL copied, no frame added since the last
 * tick (the writer is idle) and the file larger than `truncateAboveBytes`, a TRUNCATE checkpoint cuts it to
 * zero bytes; it gives up at once (busy) rather than wait for a writer, and is tried again a tick later.
 */
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';

export interface CheckpointWorkerData {
  path: string;
  everyMs: number;
  truncateAboveBytes: number;
}

/** One checkpoint: frames in the WAL, and frames copied into the database file. */
export interface CheckpointReport {
  type: 'checkpoint';
  log: number;
  checkpointed: number;
  /** The WAL was truncated to zero bytes. */
  truncated: boolean;
}

const { path, everyMs, truncateAboveBytes } = workerData as CheckpointWorkerData;
const db = new Database(path);
// Never wait for the server's writer: a busy TRUNCATE is simply retried at the next tick.
db.pragma('busy_timeout = 0');
const port = parentPort!;
const pageSize = db.pragma('page_size', { simple: true }) as number;
/** The WAL's frame count at the last tick: unchanged means the writer was idle for a whole tick. */
let lastLog = -1;

const timer = setInterval(() => {
  try {
    const [r] = db.pragma('wal_checkpoint(PASSIVE)') as Array<{ busy: number; log: number; checkpointed: number }>;
    if (!r || r.log <= 0) return;
    let truncated = false;
    const idle = r.log === lastLog;
    lastLog = r.log;
    if (idle && r.checkpointed === r.log && r.log * pageSize > truncateAboveBytes) {
      const [t] = db.pragma('wal_checkpoint(TRUNCATE)') as Array<{ busy: number }>;
      truncated = t?.busy === 0;
    }
    port.postMessage({ type: 'checkpoint', log: r.log, checkpointed: r.checkpointed, truncated } satisfies CheckpointReport);
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
