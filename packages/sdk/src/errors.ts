/** Typed errors of the SDK: every failed request carries the server's problem+json body. */

/** RFC 9457 problem details as the server sends them (docs/errors.md). */
export interface Problem {
  type: string;
  title: string;
  status: number;
  code: string;
  detail?: string;
  errors?: Array<{ pointer: string; code: string; message: string }>;
  meta?: Record<string, unknown>;
  requestId?: string;
}

export class ResonanceError extends Error {
  override readonly name: string = 'ResonanceError';
  constructor(
    /** The HTTP status (of the response, or of the refused WebSocket's problem); 0 when none applies. */
    readonly status: number,
    readonly code: string,
    message: string,
    readonly problem: Problem | null = null,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * The server could not be reached at all (refused, reset, DNS, TLS, or the connection dropped while the
 * response was read): `cause` holds what fetch threw. Nothing says whether the server acted on a request
 * that was sent.
 */
export class UnreachableError extends ResonanceError {
  override readonly name = 'UnreachableError';
  constructor(
    /** The URL that could not be reached. */
    readonly url: string,
    cause: unknown,
  ) {
    super(0, 'unreachable', `could not reach the server at ${url}: ${describe(cause)}`, null, { cause });
  }
}

/** fetch's own message ("fetch failed") says little; Node puts the reason (ECONNREFUSED …) in its cause. */
function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const inner = err.cause;
  if (inner instanceof Error) {
    const code = (inner as Error & { code?: unknown }).code;
    return `${err.message} (${typeof code === 'string' ? `${code}: ` : ''}${inner.message})`;
  }
  return err.message;
}

/**
 * A delta the server refused because the space moved on (codes conflict, stale_version, stale_epoch,
 * version_ahead). By the time it is thrown the session holds a fresh snapshot: rebuild and retry.
 */
export class ConflictError extends ResonanceError {
  override readonly name = 'ConflictError';
  constructor(
    code: string,
    message: string,
    /** The space's version when the delta was refused. */
    readonly currentVersion: number,
    /** The version the delta was based on. */
    readonly expectedFrom: number,
  ) {
    super(409, code, message);
  }
}

/** The realtime connection dropped before the server answered; the outcome of the request is unknown. */
export class ConnectionLostError extends ResonanceError {
  override readonly name = 'ConnectionLostError';
  constructor(message = 'the realtime connection was lost before the server answered') {
    super(0, 'connection_lost', message);
  }
}
