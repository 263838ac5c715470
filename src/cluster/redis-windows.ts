/**
 * Fixed-window counters in Redis (the shape of fixed-windows.ts), so that every node of a cluster charges
 * one rate limit per credential and one rate quota per org. One script per charge: the check and the
 * increment are atomic across nodes, and the window's expiry is the key's own (PX), set at its first charge.
 */
import type { Redis } from 'ioredis';
import type { WindowCharge, WindowCounter } from './fixed-windows.js';

/** KEYS[1]: the window; ARGV: units, limit, window ms. Returns {allowed 0/1, used (string), ms left}. */
const CONSUME = `
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local left = redis.call('PTTL', KEYS[1])
if left < 0 then used = 0 end
local units = tonumber(ARGV[1])
if used + units > tonumber(ARGV[2]) then
  if left < 0 then left = tonumber(ARGV[3]) end
  return {0, tostring(used), left}
end
if left < 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
  return {1, ARGV[1], tonumber(ARGV[3])}
end
return {1, redis.call('INCRBYFLOAT', KEYS[1], ARGV[1]), left}
`;

export class RedisWindows implements WindowCounter {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
  ) {}

  async consume(key: string, units: number, limit: number, windowMs: number): Promise<WindowCharge> {
    const [allowed, used, left] = (await this.redis.eval(CONSUME, 1, `${this.prefix}window:${key}`, units, limit, windowMs)) as [number, string, number];
    return { allowed: allowed === 1, used: Number(used), resetSeconds: Math.max(1, Math.ceil(left / 1000)) };
  }
}
