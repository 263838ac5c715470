/** The scheduler's loop: its lifecycle around the engine lock. */
import { describe, expect, it } from 'vitest';
import { CpuEngine } from '../src/engine/cpu/engine.js';
import { Scheduler } from '../src/sim/scheduler.js';
import { openDb } from '../src/store/db.js';
import { SqliteSessionStore } from '../src/store/sessions.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('Scheduler', () => {
  it('stops when stop() comes while the loop waits for the engine lock (no sleep to wake then)', async () => {
    const engine = new CpuEngine({ precision: 'f64', threads: 0 });
    const scheduler = new Scheduler({ engine, sessions: new SqliteSessionStore(openDb(':memory:')) });
    await scheduler.start();
    await sleep(20); // the loop found nothing to do and sleeps
    const held = scheduler.exclusive(() => sleep(100));
    scheduler.kick(); // the loop wakes and queues its next advance behind `held`
    await sleep(10);
    const stopped = scheduler.stop();
    const outcome = await Promise.race([stopped.then(() => 'stopped'), sleep(3000).then(() => 'still running')]);
    await held;
    expect(outcome).toBe('stopped');
    await engine.destroy();
  });
});
