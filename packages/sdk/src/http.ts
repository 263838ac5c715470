/** REST over fetch with X-Api-Key (or a bearer token), problem+json errors, and SSE read from a fetch stream. */
import { type Problem, ResonanceError, UnreachableError } from './errors.js';
import type { StreamEvent } from './types.js';

export interface HttpOptions {
  baseUrl: string;
  apiKey?: string;
  accessToken?: string;
  fetch: typeof fetch;
}

export class Http {
  constructor(private readonly options: HttpOptions) {}

  get baseUrl(): string {
    return this.options.baseUrl;
  }

  headers(extra: Record<string, string> = {}): Record<string, string> {
    const h: Record<string, string> = { Accept: 'application/json', ...extra };
    if (this.options.apiKey) h['X-Api-Key'] = this.options.apiKey;
    else if (this.options.accessToken) h['Authorization'] = `Bearer ${this.options.accessToken}`;
    return h;
  }

  async request<T>(method: string, path: string, body?: unknown, extra: { idempotencyKey?: string; bearer?: string } = {}): Promise<T> {
    const headers = this.headers(body === undefined ? {} : { 'Content-Type': 'application/json' });
    if (extra.idempotencyKey) headers['Idempotency-Key'] = extra.idempotencyKey;
    if (extra.bearer) {
      delete headers['X-Api-Key'];
      headers['Authorization'] = `Bearer ${extra.bearer}`;
    }
    const res = await this.send(path, { method, headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
    if (res.status === 204) return undefined as T;
    const text = await this.read(res.text(), undefined);
    if (!res.ok) throw errorFrom(res.status, text);
    return (text ? JSON.parse(text) : undefined) as T;
  }

  /**
   * An SSE stream as an async iterator; ends when the server ends it, after an event `isLast` accepts, or
   * when `signal` aborts. Leaving it early (break, return, a throw in the loop) aborts the request.
   */
  async *stream<T>(
    path: string,
    opts: { lastEventId?: string; signal?: AbortSignal; isLast?: (e: StreamEvent<T>) => boolean } = {},
  ): AsyncGenerator<StreamEvent<T>> {
    const headers = this.headers({ Accept: 'text/event-stream' });
    if (opts.lastEventId !== undefined) headers['Last-Event-ID'] = opts.lastEventId;
    // Our own controller: the response must be released when the consumer stops, whether or not it gave a signal.
    const controller = new AbortController();
    const forward = (): void => controller.abort(opts.signal?.reason);
    if (opts.signal?.aborted) forward();
    else opts.signal?.addEventListener('abort', forward, { once: true });
    let buffer = '';
    let event = '';
    let id: string | undefined;
    let data: string[] = [];
    try {
      const res = await this.send(path, { headers, signal: controller.signal });
      if (!res.ok || !res.body) throw errorFrom(res.status, await this.read(res.text(), controller.signal));
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { value, done } = await this.read(reader.read(), controller.signal);
        if (done) return;
        buffer += value;
        let nl: number;
        while ((nl = buffer.search(/\r\n|\r|\n/)) >= 0) {
          const line = buffer.slice(0, nl);
          buffer = buffer.slice(nl + (buffer.startsWith('\r\n', nl) ? 2 : 1));
          if (line === '') {
            if (data.length > 0) {
              const e: StreamEvent<T> = { event: event || 'message', id, data: JSON.parse(data.join('\n')) as T };
              yield e;
              if (opts.isLast?.(e)) return;
            }
            event = '';
            data = [];
            continue;
          }
          if (line.startsWith(':')) continue;
          const colon = line.indexOf(':');
          const field = colon < 0 ? line : line.slice(0, colon);
          const v = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
          if (field === 'data') data.push(v);
          else if (field === 'event') event = v;
          else if (field === 'id') id = v;
        }
      }
    } finally {
      opts.signal?.removeEventListener('abort', forward);
      // An open response keeps its socket, and with it a Node process, alive.
      controller.abort();
    }
  }

  /** fetch, with a failure to reach the server as UnreachableError (an abort stays an abort). */
  private async send(path: string, init: RequestInit): Promise<Response> {
    try {
      return await this.options.fetch(this.options.baseUrl + path, init);
    } catch (err) {
      if (init.signal?.aborted) throw err;
      throw new UnreachableError(this.options.baseUrl, err);
    }
  }

  /** A read of a response body: a connection lost meanwhile is UnreachableError too. */
  private async read<R>(reading: Promise<R>, signal: AbortSignal | undefined): Promise<R> {
    try {
      return await reading;
    } catch (err) {
      if (signal?.aborted) throw err;
      throw new UnreachableError(this.options.baseUrl, err);
    }
  }
}

/** POST `body` as JSON to `url` (any URL, not the API's: an auth endpoint) and read its JSON answer. */
export async function postJson<T>(fetchFn: typeof fetch, url: string, body: unknown): Promise<T> {
  let res: Response;
  try {
    res = await fetchFn(url, { method: 'POST', headers: { 'Content-Type': 'application/json', Accept: 'application/json' }, body: JSON.stringify(body) });
  } catch (err) {
    throw new UnreachableError(url, err);
  }
  const text = await res.text();
  if (!res.ok) throw errorFrom(res.status, text);
  return JSON.parse(text) as T;
}

export function errorFrom(status: number, text: string): ResonanceError {
  let problem: Problem | null = null;
  try {
    problem = JSON.parse(text) as Problem;
  } catch {
    // not problem+json (a proxy's error page): keep the status
  }
  return new ResonanceError(status, problem?.code ?? 'http_error', problem?.detail ?? problem?.title ?? `HTTP ${status}`, problem);
}
