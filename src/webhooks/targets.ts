/**
 * The private-address guard for webhook targets (SSRF defence). A target URL must be http(s), carry no
 * credentials, and every address its host resolves to must be publicly routable: private, loopback,
 * link-local, unique-local, CGNAT, unspecified, multicast, reserved and documentation ranges are refused,
 * for IPv4 and IPv6 alike, including IPv4 embedded in IPv6 (mapped, compatible, NAT64, 6to4).
 * Checked at registration and again before every delivery attempt (DNS can change); an attempt then
 * connects to the addresses that check vetted (`pinnedLookup`), never to a second resolution of the name,
 * so a name that rebinds to a private address between the check and the connection cannot be reached.
 * Target ports are limited to a list (RESONANCE_WEBHOOK_PORTS) unless private targets are allowed.
 */
import type { LookupAddress, LookupOptions } from 'node:dns';
import { lookup as dnsLookup } from 'node:dns/promises';
import { isIP, isIPv4 } from 'node:net';

/** Resolves a host name to every address it has (A and AAAA). */
export type LookupAll = (hostname: string) => Promise<string[]>;

export const defaultLookup: LookupAll = async (hostname) => {
  const results = await dnsLookup(hostname, { all: true, verbatim: true });
  return results.map((r) => r.address);
};

type V4Range = readonly [prefix: string, bits: number, reason: string];

const V4_RANGES: readonly V4Range[] = [
  ['0.0.0.0', 8, 'unspecified'],
  ['10.0.0.0', 8, 'private'],
  ['100.64.0.0', 10, 'cgnat'],
  ['127.0.0.0', 8, 'loopback'],
  ['169.254.0.0', 16, 'link-local'],
  ['172.16.0.0', 12, 'private'],
  ['192.0.0.0', 24, 'reserved'],
  ['192.0.2.0', 24, 'documentation'],
  ['192.88.99.0', 24, 'reserved'],
  ['192.168.0.0', 16, 'private'],
  ['198.18.0.0', 15, 'benchmarking'],
  ['198.51.100.0', 24, 'documentation'],
  ['203.0.113.0', 24, 'documentation'],
  ['224.0.0.0', 4, 'multicast'],
  ['240.0.0.0', 4, 'reserved'],
];

function v4ToInt(ip: string): number {
  const parts = ip.split('.').map(Number);
  return (((parts[0] ?? 0) << 24) | ((parts[1] ?? 0) << 16) | ((parts[2] ?? 0) << 8) | (parts[3] ?? 0)) >>> 0;
}

const V4_TABLE = V4_RANGES.map(([prefix, bits, reason]) => {
  const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
  return { base: (v4ToInt(prefix) & mask) >>> 0, mask, reason };
});

function v4Reason(value: number): string | null {
  for (const r of V4_TABLE) if (((value & r.mask) >>> 0) === r.base) return r.reason;
  return null;
}

/** Eight 16-bit groups of an IPv6 address (zone id dropped, dotted IPv4 tail expanded), or null. */
export function parseIPv6(input: string): number[] | null {
  const addr = input.replace(/^\[|\]$/g, '').replace(/%.*$/, '');
  if (isIP(addr) !== 6) return null;
  let head = addr;
  const tail: number[] = [];
  const lastColon = addr.lastIndexOf(':');
  const last = addr.slice(lastColon + 1);
  if (last.includes('.')) {
    if (!isIPv4(last)) return null;
    const v = v4ToInt(last);
    tail.push(v >>> 16, v & 0xffff);
    head = addr.slice(0, lastColon + 1);
    if (head.endsWith(':') && !head.endsWith('::')) head = head.slice(0, -1);
  }
  const groups = (s: string): number[] => (s === '' ? [] : s.split(':').map((g) => parseInt(g, 16)));
  let words: number[];
  const dbl = head.indexOf('::');
  if (dbl >= 0) {
    const left = groups(head.slice(0, dbl));
    const right = [...groups(head.slice(dbl + 2)), ...tail];
    const fill = 8 - left.length - right.length;
    if (fill < 0) return null;
    words = [...left, ...new Array<number>(fill).fill(0), ...right];
  } else {
    words = [...groups(head), ...tail];
  }
  if (words.length !== 8 || words.some((w) => !Number.isInteger(w) || w < 0 || w > 0xffff)) return null;
  return words;
}

function v6Reason(w: number[]): string | null {
  const [w0 = 0, w1 = 0, w2 = 0, w3 = 0, w4 = 0, w5 = 0, w6 = 0, w7 = 0] = w;
  const embedded = ((w6 << 16) | w7) >>> 0;
  const first96Zero = w0 === 0 && w1 === 0 && w2 === 0 && w3 === 0 && w4 === 0;
  if (first96Zero && w5 === 0 && w6 === 0 && w7 === 0) return 'unspecified';
  if (first96Zero && w5 === 0 && w6 === 0 && w7 === 1) return 'loopback';
  // ::ffff:a.b.c.d (IPv4-mapped) and ::a.b.c.d (IPv4-compatible, deprecated): judge the IPv4 address.
  if (first96Zero && (w5 === 0xffff || w5 === 0)) return v4Reason(embedded) ?? (w5 === 0 ? 'reserved' : null);
  // ::ffff:0:a.b.c.d (SIIT translated)
  if (w0 === 0 && w1 === 0 && w2 === 0 && w3 === 0 && w4 === 0xffff && w5 === 0) return v4Reason(embedded);
  // 64:ff9b::/96 well-known NAT64 prefix embeds an IPv4 address; 64:ff9b:1::/48 is for local use.
  if (w0 === 0x64 && w1 === 0xff9b && w2 === 0 && w3 === 0 && w4 === 0 && w5 === 0) return v4Reason(embedded);
  if (w0 === 0x64 && w1 === 0xff9b && w2 === 1) return 'private';
  // 2002::/16 6to4 embeds an IPv4 address in the next 32 bits.
  if (w0 === 0x2002) return v4Reason(((w1 << 16) | w2) >>> 0);
  if (w0 === 0x2001 && w1 === 0) return 'teredo';
  if (w0 === 0x2001 && w1 === 0xdb8) return 'documentation';
  if (w0 === 0x100 && w1 === 0 && w2 === 0 && w3 === 0) return 'discard';
  if ((w0 & 0xffc0) === 0xfe80) return 'link-local';
  if ((w0 & 0xffc0) === 0xfec0) return 'site-local';
  if ((w0 & 0xfe00) === 0xfc00) return 'unique-local';
  if ((w0 & 0xff00) === 0xff00) return 'multicast';
  return null;
}

/** Why an IP address literal is not an acceptable webhook target, or null when it is public. */
export function forbiddenAddressReason(ip: string): string | null {
  const addr = ip.replace(/^\[|\]$/g, '');
  if (isIPv4(addr)) return v4Reason(v4ToInt(addr));
  const words = parseIPv6(addr);
  if (!words) return 'invalid';
  return v6Reason(words);
}

export const isForbiddenAddress = (ip: string): boolean => forbiddenAddressReason(ip) !== null;

export type TargetCheck =
  | { ok: true; url: URL; addresses: string[] }
  | { ok: false; code: 'invalid_url' | 'webhook_target_forbidden' | 'webhook_target_unresolvable'; message: string };

/** Ports a webhook may target when private targets are not allowed, unless the server configures others. */
export const DEFAULT_WEBHOOK_PORTS: readonly number[] = Object.freeze([80, 443, 8080, 8443]);

/** A comma-separated port list (e.g. "80,443,8080,8443"); unset or empty gives the default. Errors name `variable`. */
export function parseWebhookPorts(value: string | undefined, variable: string): number[] {
  if (value === undefined || value.trim() === '') return [...DEFAULT_WEBHOOK_PORTS];
  return value.split(',').map((part) => {
    const port = Number(part.trim());
    if (!/^\d+$/.test(part.trim()) || port < 1 || port > 65535) throw new Error(`${variable} must be a comma-separated list of ports 1..65535 (got "${value}")`);
    return port;
  });
}

/** The URL's port, or the scheme's default (80 for http, 443 for https). */
export const targetPort = (url: URL): number => (url.port ? Number(url.port) : url.protocol === 'https:' ? 443 : 80);

/** The URL's host without IPv6 brackets or a trailing dot, lower-cased: what DNS is asked and the guard judges. */
export const targetHost = (url: URL): string => url.hostname.replace(/^\[|\]$/g, '').replace(/\.$/, '').toLowerCase();

/** Shape of the URL only (no DNS): http(s), a host, no credentials. */
export function parseTargetUrl(raw: string): { ok: true; url: URL } | { ok: false; message: string } {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return { ok: false, message: 'must be an absolute URL' };
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return { ok: false, message: 'must use http or https' };
  if (url.username || url.password) return { ok: false, message: 'must not contain credentials' };
  if (!url.hostname) return { ok: false, message: 'must have a host' };
  return { ok: true, url };
}

export interface TargetCheckOptions {
  /** Private, loopback and other non-public addresses pass, and so does any port (tests, closed networks). */
  allowPrivate: boolean;
  lookup?: LookupAll | undefined;
  /** Ports allowed when private targets are not; undefined allows every port. */
  ports?: readonly number[] | undefined;
  /**
   * Resolve the host even when private targets are allowed (a delivery attempt does, to connect to what it
   * resolved); registration with allowPrivate only checks the URL's shape.
   */
  resolve?: boolean;
}

/**
 * Whether a URL may receive webhooks. With allowPrivate every well-formed http(s) URL passes (resolved only
 * with `resolve`); otherwise its port must be in `ports` and the host (an IP literal, or every address DNS
 * gives for the name) must be public. `addresses` are the vetted addresses (empty when nothing was resolved).
 */
export async function checkTarget(raw: string, opts: TargetCheckOptions): Promise<TargetCheck> {
  const parsed = parseTargetUrl(raw);
  if (!parsed.ok) return { ok: false, code: 'invalid_url', message: `url ${parsed.message}` };
  const { url } = parsed;
  if (!opts.allowPrivate && opts.ports && !opts.ports.includes(targetPort(url))) {
    return {
      ok: false,
      code: 'webhook_target_forbidden',
      message: `the target port ${targetPort(url)} is not allowed (allowed: ${opts.ports.join(', ')})`,
    };
  }
  if (opts.allowPrivate && !opts.resolve) return { ok: true, url, addresses: [] };
  // WHATWG URL already canonicalises IPv4 shorthand (0x7f.1, 2130706433) and brackets IPv6 literals.
  const host = targetHost(url);
  if (!opts.allowPrivate && (host === 'localhost' || host.endsWith('.localhost'))) {
    return { ok: false, code: 'webhook_target_forbidden', message: `the target host ${host} is a loopback name` };
  }
  let addresses: string[];
  if (isIP(host)) addresses = [host];
  else {
    try {
      addresses = await (opts.lookup ?? defaultLookup)(host);
    } catch (err) {
      const code = (err as { code?: string }).code ?? 'lookup failed';
      return { ok: false, code: 'webhook_target_unresolvable', message: `the target host ${host} does not resolve (${code})` };
    }
    if (addresses.length === 0) return { ok: false, code: 'webhook_target_unresolvable', message: `the target host ${host} has no addresses` };
  }
  if (!opts.allowPrivate) {
    for (const address of addresses) {
      const reason = forbiddenAddressReason(address);
      if (reason) {
        return { ok: false, code: 'webhook_target_forbidden', message: `the target ${host} resolves to ${address}, a ${reason} address` };
      }
    }
  }
  return { ok: true, url, addresses };
}

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;

/**
 * A `lookup` for node:net / node:http(s) that answers with the already vetted `addresses` and never asks DNS:
 * the connection goes where the guard looked. Both call shapes are served (`all: true` is what Node's
 * happy-eyeballs connect asks for).
 */
export function pinnedLookup(addresses: readonly string[]): (hostname: string, options: LookupOptions, callback: LookupCallback) => void {
  const entries: LookupAddress[] = addresses.map((address) => ({ address: address.replace(/^\[|\]$/g, ''), family: isIP(address.replace(/^\[|\]$/g, '')) === 6 ? 6 : 4 }));
  return (hostname, options, callback) => {
    const wanted = options.family === 4 || options.family === 6 ? entries.filter((e) => e.family === options.family) : entries;
    const first = wanted[0];
    if (!first) {
      const err: NodeJS.ErrnoException = new Error(`no vetted address of ${hostname} for family ${String(options.family)}`);
      err.code = 'ENOTFOUND';
      process.nextTick(callback, err, '', 0);
      return;
    }
    if (options.all) process.nextTick(callback, null, wanted);
    else process.nextTick(callback, null, first.address, first.family);
  };
}
