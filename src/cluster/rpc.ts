/**
 * Calls from one node to another over the broker: how a node that does not own a space or session hands a
 * write to the node that does (docs/scaling.md, "Sequencing"). Each node listens on `node:<id>`; a call
 * carries its caller's id and a number, and the answer comes back on the caller's channel. A call that gets
 * no answer in time fails with RpcTimeout (the owner died or is partitioned): the caller answers 503 and
 * the client retries, by when the lease has moved.
 */
import type { Broker, Unsubscribe } from './broker.js';

/** What a handler threw, carried back to the caller (SpaceError and the like keep status and code). */
export interface RemoteError {
  status?: number;
  code?: string;
  message: string;
  errors?: unknown;
  meta?: unknown;
}

export class RpcTimeout extends Error {
  constructor(readonly nodeId: string, readonly method: string) {
    super(`node ${nodeId} did not answer ${method} in time`);
  }
}

export class RpcRemoteError extends Error {
  constructor(readonly remote: RemoteError) {
    super(remote.message);
  }
}

type Message =
  | { kind: 'call'; id: number; from: string; method: string; args: unknown }
  | { kind: 'reply'; id: number; ok: true; result: unknown }
  | { kind: 'reply'; id: number; ok: false; error: RemoteError };

export type RpcHandler = (args: unknown, from: string) => Promise<unknown>;

const channelOf = (nodeId: string): string => `node:${nodeId}`;

export class Rpc {
  private readonly handlers = new Map<string, RpcHandler>();
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  private seq = 0;
  private unsubscribe: Unsubscribe | null = null;

  constructor(
    private readonly broker: Broker,
    private readonly timeoutMs = 2000,
    private readonly toError: (err: unknown) => RemoteError = (err) => ({ message: err instanceof Error ? err.message : String(err) }),
  ) {}

  async start(): Promise<void> {
    this.unsubscribe = await this.broker.subscribe(channelOf(this.broker.nodeId), (payload) => this.receive(payload));
  }

  /** Serve `method` to the other nodes. */
  handle(method: string, handler: RpcHandler): void {
    this.handlers.set(method, handler);
  }

  call<T>(nodeId: string, method: string, args: unknown): Promise<T> {
    const id = ++this.seq;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new RpcTimeout(nodeId, method));
      }, this.timeoutMs);
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, timer });
      const message: Message = { kind: 'call', id, from: this.broker.nodeId, method, args };
      this.broker.publish(channelOf(nodeId), JSON.stringify(message)).catch((err: unknown) => {
        clearTimeout(timer);
        this.pending.delete(id);
        reject(err instanceof Error ? err : new Error(String(err)));
      });
    });
  }

  async stop(): Promise<void> {
    await this.unsubscribe?.();
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new Error('this node is stopping'));
      this.pending.delete(id);
    }
  }

  private receive(payload: string): void {
    let m: Message;
    try {
      m = JSON.parse(payload) as Message;
    } catch {
      return;
    }
    if (m.kind === 'reply') {
      const p = this.pending.get(m.id);
      if (!p) return;
      clearTimeout(p.timer);
      this.pending.delete(m.id);
      if (m.ok) p.resolve(m.result);
      else p.reject(new RpcRemoteError(m.error));
      return;
    }
    const handler = this.handlers.get(m.method);
    const answer = (reply: Message): void => void this.broker.publish(channelOf(m.from), JSON.stringify(reply)).catch(() => undefined);
    if (!handler) {
      answer({ kind: 'reply', id: m.id, ok: false, error: { status: 503, code: 'unknown_method', message: `no handler for ${m.method}` } });
      return;
    }
    handler(m.args, m.from).then(
      (result) => answer({ kind: 'reply', id: m.id, ok: true, result: result ?? null }),
      (err: unknown) => answer({ kind: 'reply', id: m.id, ok: false, error: this.toError(err) }),
    );
  }
}
