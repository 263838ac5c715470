/** The broker of a single process: there is no other node to publish to, and presence is a counter per member. */
import { FixedWindows } from './fixed-windows.js';
import type { Broker, BrokerHealth, Presence, Unsubscribe } from './broker.js';

class MemoryPresence implements Presence {
  /** Open connections per member (key: spaceId + NUL + memberId); absent when none. */
  private readonly open = new Map<string, number>();

  async enter(spaceId: string, memberId: string): Promise<() => Promise<void>> {
    const key = `${spaceId}\0${memberId}`;
    this.open.set(key, (this.open.get(key) ?? 0) + 1);
    let left = false;
    return async () => {
      if (left) return;
      left = true;
      const n = (this.open.get(key) ?? 1) - 1;
      if (n > 0) this.open.set(key, n);
      else this.open.delete(key);
    };
  }

  async has(spaceId: string, memberId: string): Promise<boolean> {
    return this.open.has(`${spaceId}\0${memberId}`);
  }
}

export class MemoryBroker implements Broker {
  readonly presence = new MemoryPresence();
  readonly windows = new FixedWindows();

  constructor(readonly nodeId: string) {}

  async publish(): Promise<void> {
    // No other node.
  }

  async subscribe(): Promise<Unsubscribe> {
    return async () => undefined;
  }

  health(): BrokerHealth {
    return { kind: 'memory', ok: true };
  }

  async close(): Promise<void> {}
}
