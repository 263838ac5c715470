/**
 * Whether an error means a service the node depends on (Postgres, Redis) cannot be reached right now, as
 * opposed to a bug: such a request is answered 503 with Retry-After while the driver reconnects
 * (docs/scaling.md, "When Postgres or Redis is down").
 */

/** Node's socket errors, and Postgres's connection classes (08: connection exception; 57P0x: shutting down). */
const CONNECTION_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENOTFOUND', '57P01', '57P02', '57P03']);

/** What pg and ioredis say when the connection is gone (they carry no code). */
const CONNECTION_MESSAGES = [
  'Connection terminated',
  'timeout exceeded when trying to connect',
  'Client has encountered a connection error',
  'Connection is closed',
  "Stream isn't writeable",
  'Reached the max retries per request limit',
];

export function isUnavailable(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string' && (CONNECTION_CODES.has(code) || code.startsWith('08'))) return true;
  if (CONNECTION_MESSAGES.some((m) => err.message.includes(m))) return true;
  // AggregateError of every address tried (a refused connection to localhost tries ::1 and 127.0.0.1).
  if (err instanceof AggregateError) return err.errors.some(isUnavailable);
  const cause = (err as { cause?: unknown }).cause;
  return cause !== undefined && cause !== err && isUnavailable(cause);
}
