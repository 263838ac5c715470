/**
 * Group commit for the embedded SQLite file, off the event loop.
 *
 * The connection commits with `synchronous = NORMAL`: a commit is written to the WAL (the OS page cache)
 * and survives a process crash at once, but not yet a power loss. Every write of the store then waits for
 * `sync()`: an fdatasync of the WAL, which gives it the guarantee of `synchronous = FULL`. The fsync runs
 * on libuv's threadpool, so the event loop never waits on the disk (with FULL, each commit blocked it for
 * the disk's whole flush, and every socket of the process waited with it), and one fsync covers every
 * commit made before it started: writes that arrive while one runs share the next.
 *
 * A caller with nothing new to cover (no row changed on the connection since the commits the last fsync
 * covered) does not wait for one: the dispatcher's empty polls and events nobody subscribed to cost no fsync.
 *
 * SQLite's WAL is append-only between checkpoints and recovery replays it up to the last complete commit,
 * so what survives a power loss is always a prefix of the acknowledged commits plus possibly later ones.
 */
import { open } from 'node:fs/promises';

export class WalSync {
  /** The fsync running now: it may have started before the caller's commit. */
  private inFlight: Promise<void> | null = null;
  /** The connection's change count when the running fsync started: it covers the commits up to there. */
  private inFlightCovers = 0;
  /** The change count covered by the last fsync that succeeded. */
  private durableCovers = 0;
  /** The fsync that starts when `inFlight` ends: it covers every commit made before then. */
  private queued: Promise<void> | null = null;
  /** fsyncs run, and those that failed (for /metrics). */
  count = 0;
  failures = 0;

  constructor(
    private readonly walPath: string,
    /** Rows changed on the connection so far (SQLite's total_changes()): a count every commit moves. */
    readonly changes: () => number,
  ) {}

  /** Resolves once every commit made before this call is on disk. */
  sync(): Promise<void> {
    const covers = this.changes();
    if (covers <= this.durableCovers) return Promise.resolve();
    if (!this.inFlight) return this.start();
    if (covers <= this.inFlightCovers) return this.inFlight;
    this.queued ??= this.inFlight.then(
      () => this.next(),
      () => this.next(),
    );
    return this.queued;
  }

  private next(): Promise<void> {
    this.queued = null;
    return this.start();
  }

  private start(): Promise<void> {
    const covers = this.changes();
    const run = this.fsync()
      .then(() => {
        this.durableCovers = Math.max(this.durableCovers, covers);
      })
      .finally(() => {
        if (this.inFlight === run) this.inFlight = null;
      });
    this.inFlight = run;
    this.inFlightCovers = covers;
    return run;
  }

  private async fsync(): Promise<void> {
    this.count++;
    try {
      await this.fsyncWal();
    } catch (err) {
      this.failures++;
      throw err;
    }
  }

  private async fsyncWal(): Promise<void> {
    let file;
    try {
      file = await open(this.walPath, 'r');
    } catch (err) {
      // No WAL: the last connection checkpointed it into the database file (synced) and removed it.
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    try {
      await file.datasync();
    } finally {
      await file.close();
    }
  }
}
