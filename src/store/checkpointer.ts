/**
 * SQLite's WAL checkpoints, off the event loop. By default SQLite checkpoints inside the commit that
 * takes the WAL past 1000 pages: two fsyncs and the copy into the database file on the event loop, every
 * few seconds under a steady stream of deltas. With the checkpointer the server's connection never
 * checkpoints (`wal_autocheckpoint = 0`); a worker thread with its own connection does, passively, every
 * `everyMs`, and the writer reuses the WAL from its start once all of it is in the database file. If the
 * worker fails, the server's connection checkpoints for itself again.
 */
import { Worker } from 'node:worker_threads';
import type { CheckpointReport, CheckpointWorkerData } from './checkpoint-worker.js';
import type { Db } from './db.js';

/** SQLite's default, restored when the worker is gone. */
const AUTOCHECKPOINT_PAGES = 1000;

export interface CheckpointStats {
  checkpoints: number;
  /** The last checkpoint: frames in the WAL and frames in the database file. */
  last: { log: number; checkpointed: number } | null;
  failures: number;
  /** TRUNCATE checkpoints that cut the WAL file back to zero bytes. */
  truncations: number;
}

/** A WAL file larger than this is cut back once fully checkpointed (see checkpoint-worker.ts). */
export const WAL_TRUNCATE_ABOVE_BYTES = 16 * 2 ** 20;

export class Checkpointer {
  private readonly worker: Worker;
  private readonly counts: CheckpointStats = { checkpoints: 0, last: null, failures: 0, truncations: 0 };
  private stopped = false;
  private readonly exited: Promise<void>;

  constructor(
    private readonly db: Db,
    path: string,
    everyMs = 1000,
    private readonly onError: (message: string) => void = () => undefined,
    truncateAboveBytes = WAL_TRUNCATE_ABOVE_BYTES,
  ) {
    db.pragma('wal_autocheckpoint = 0');
    const data: CheckpointWorkerData = { path, everyMs, truncateAboveBytes };
    this.worker = new Worker(workerUrl(), { workerData: data });
    this.worker.unref();
    this.worker.on('message', (m: CheckpointReport | { type: 'error'; message: string }) => {
      if (m.type === 'checkpoint') {
        this.counts.checkpoints++;
        this.counts.last = { log: m.log, checkpointed: m.checkpointed };
        if (m.truncated) this.counts.truncations++;
      } else {
        this.counts.failures++;
        this.onError(m.message);
      }
    });
    this.worker.on('error', (err) => {
      this.counts.failures++;
      this.onError(err.message);
    });
    this.exited = new Promise<void>((resolve) =>
      this.worker.once('exit', () => {
        if (!this.stopped && db.open) db.pragma(`wal_autocheckpoint = ${AUTOCHECKPOINT_PAGES}`);
        resolve();
      }),
    );
  }

  stats(): CheckpointStats {
    return { ...this.counts, last: this.counts.last && { ...this.counts.last } };
  }

  /** Stop the worker (before the server's connection closes, so that the close checkpoints the rest). */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    // Referenced again: an unreferenced worker's exit would not keep the process alive to see it.
    this.worker.ref();
    this.worker.postMessage('stop');
    await this.exited;
    if (this.db.open) this.db.pragma(`wal_autocheckpoint = ${AUTOCHECKPOINT_PAGES}`);
  }
}

function workerUrl(): URL {
  // Tests import the TypeScript sources; workers always run the compiled JavaScript.
  return import.meta.url.endsWith('.ts')
    ? new URL('../../dist/src/store/checkpoint-worker.js', import.meta.url)
    : new URL('./checkpoint-worker.js', import.meta.url);
}
