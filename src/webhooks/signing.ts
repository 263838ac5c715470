/**
 * Webhook signatures: `X-RS-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>` with
 * `X-RS-Timestamp: <unix seconds>`. Receivers verify with `verifySignature` (constant-time, with a
 * timestamp tolerance against replays). docs/webhooks.md shows the same check in plain Node.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

export const SIGNATURE_SCHEME = 'sha256';
/** Default accepted clock skew / replay window for `verifySignature`, in seconds. */
export const DEFAULT_TOLERANCE_SECONDS = 300;

/** A fresh webhook secret (256 bits, base64url) for registrations that did not bring one. */
export function generateSecret(): string {
  return 'whsec_' + randomBytes(32).toString('base64url');
}

function hmac(secret: string, timestamp: string | number, body: string | Uint8Array): Buffer {
  const mac = createHmac('sha256', secret);
  mac.update(`${timestamp}.`);
  mac.update(body);
  return mac.digest();
}

/** The `X-RS-Signature` header value for a body sent at `timestamp` (unix seconds). */
export function sign(secret: string, timestamp: string | number, body: string | Uint8Array): string {
  return `${SIGNATURE_SCHEME}=${hmac(secret, timestamp, body).toString('hex')}`;
}

/**
 * True when `header` (`sha256=<hex>`; several comma-separated values are accepted, e.g. during secret
 * rotation) is the HMAC of `"<timestamp>.<body>"` under `secret` and `timestamp` is within
 * `toleranceSeconds` of now. Pass the raw request body exactly as received (string or bytes).
 */
export function verifySignature(
  secret: string,
  timestamp: string | number | undefined | null,
  body: string | Uint8Array,
  header: string | undefined | null,
  toleranceSeconds: number = DEFAULT_TOLERANCE_SECONDS,
  nowSeconds: number = Math.floor(Date.now() / 1000),
): boolean {
  if (header == null || timestamp == null) return false;
  const ts = String(timestamp).trim();
  if (!/^\d{1,15}$/.test(ts)) return false;
  if (Math.abs(nowSeconds - Number(ts)) > toleranceSeconds) return false;
  const expected = hmac(secret, ts, body);
  let ok = false;
  for (const part of header.split(',')) {
    const [scheme, hex] = part.trim().split('=', 2);
    if (scheme !== SIGNATURE_SCHEME || hex === undefined || !/^[0-9a-f]{64}$/i.test(hex)) continue;
    // Compare every candidate (no early exit) so timing does not reveal which one matched.
    if (timingSafeEqual(Buffer.from(hex, 'hex'), expected)) ok = true;
  }
  return ok;
}
