/**
 * Fair sharing of the engine between orgs (docs/engine.md, "Scheduling"): how many ticks each running HQE
 * simulation gets in one advance of the shared batch. Pure: the scheduler keeps each simulation's Share and
 * hands the grants to the engine as per-simulation tick limits.
 */
import type { NormalizedConfig } from '../model/config.js';

/** What the split needs of a simulation: its org and its place in the sharing. */
export interface Sharer {
  orgId: string;
  share: Share;
}

/**
 * The work (kernel entries x ticks) of one advance: ADVANCE_MS of measured engine time, and at least
 * ADVANCE_WORK (about 7 ms of the CPU engine), so commands and readers wait milliseconds, not seconds,
 * while a fast engine (a GPU) still gets big batches. While a live space waits for its next tick:
 * ADVANCE_MS_LIVE, and at least ADVANCE_WORK_LIVE (time per work is overstated by fixed costs of small
 * advances; the floor keeps every advance worth running).
 */
export const ADVANCE_WORK = 2 ** 21;
export const ADVANCE_MS = 8;
export const ADVANCE_WORK_LIVE = 2 ** 17;
export const ADVANCE_MS_LIVE = 4;
/** Most ticks one simulation gets in one advance (a default-length run, 257 ticks, fits in one). */
const MAX_TICKS = 512;
/** Per-tick work besides the dense pass (metrics, decisions, records), in kernel entries (~2 µs measured). */
const TICK_OVERHEAD = 2048;

export interface Share {
  /** Work of one tick: k^2 kernel entries plus TICK_OVERHEAD. */
  cost: number;
  /** Work credited and not yet spent on ticks (deficit round robin). */
  credit: number;
  /** The advance that last gave it ticks (-1: none yet). */
  servedAt: number;
  /** It stood aside in the last advance for smaller work (shareAdvance): it does not again in this one. */
  yielded: boolean;
}

export const newShare = (config: NormalizedConfig): Share => ({ cost: config.primes.length ** 2 + TICK_OVERHEAD, credit: 0, servedAt: -1, yielded: false });

/**
 * Max-min fair split of `total` between claims: a claim under its equal share gets all of it, the others
 * share what is left equally.
 */
function fairSplit(claims: number[], total: number): number[] {
  const order = claims.map((_, i) => i).sort((a, b) => claims[a]! - claims[b]!);
  const out = new Array<number>(claims.length).fill(0);
  let left = total;
  order.forEach((i, at) => {
    out[i] = Math.min(claims[i]!, left / (order.length - at));
    left -= out[i]!;
  });
  return out;
}

/** `total` split max-min fairly between the orgs of `sims` by the sums of their claims, then likewise within each org. */
function splitByOrg<T extends Sharer>(sims: T[], claim: (r: T) => number, total: number): Map<T, number> {
  const byOrg = new Map<string, T[]>();
  for (const r of sims) {
    const list = byOrg.get(r.orgId);
    if (list) list.push(r);
    else byOrg.set(r.orgId, [r]);
  }
  const orgs = [...byOrg.values()];
  const orgShares = fairSplit(orgs.map((list) => list.reduce((sum, r) => sum + claim(r), 0)), total);
  const out = new Map<T, number>();
  orgs.forEach((list, i) => {
    const shares = fairSplit(list.map(claim), orgShares[i]!);
    list.forEach((r, j) => out.set(r, shares[j]!));
  });
  return out;
}

/**
 * The ticks each running simulation gets in advance number `advance` (docs/engine.md, "Scheduling"):
 * deficit round robin over work, between orgs and then between each org's simulations.
 *
 * Each round credits every simulation with a quantum: `budget` split max-min fairly between orgs by what
 * each could use in one advance (MAX_TICKS ticks of each of its simulations), then likewise between the
 * org's simulations. A simulation runs as many ticks as its credit pays for, at most MAX_TICKS, so one
 * whose tick costs more than its quantum runs every few advances, as its credit builds up. When nobody's
 * credit pays for a tick, rounds are skipped ahead to the first that does: the engine never idles while
 * there is work. Ticks are granted least recently served first (then most owed) within `budget`; beyond
 * it, one tick of one simulation may still run (a tick that costs more than a whole advance must run
 * some time), and the rest wait for the next advance, first in line.
 */
export function shareAdvance<T extends Sharer>(running: T[], budget: number, advance: number): Map<T, number> {
  const grants = new Map<T, number>();
  if (running.length === 0) return grants;
  const quantum = splitByOrg(running, (r) => MAX_TICKS * r.share.cost, budget);
  let rounds = Infinity;
  for (const r of running) rounds = Math.min(rounds, Math.max(1, Math.ceil((r.share.cost - r.share.credit) / quantum.get(r)!)));
  for (const r of running) r.share.credit += rounds * quantum.get(r)!;
  // Rounding must not leave an advance with work to do and no tick granted.
  if (!running.some((r) => r.share.credit >= r.share.cost)) {
    const next = running.reduce((a, b) => (b.share.credit / b.share.cost > a.share.credit / a.share.cost ? b : a));
    next.share.credit = next.share.cost;
  }
  const order = running.slice().sort((a, b) => a.share.servedAt - b.share.servedAt || b.share.credit / b.share.cost - a.share.credit / a.share.cost);
  let spent = 0;
  let over = false;
  for (const r of order) {
    const { cost, credit } = r.share;
    if (credit < cost) continue;
    let n = Math.min(MAX_TICKS, Math.floor(credit / cost), Math.floor(Math.max(0, budget - spent) / cost));
    if (n > 0) spent += n * cost;
    else if (!over) [n, over] = [1, true];
    else continue;
    grants.set(r, n);
  }
  // Every tick of an advance waits for its longest one: a simulation whose ticks cost more than all the
  // others' together stands aside for one advance (never two in a row, and keeping its credit and its
  // place in line), so that small work, a short run that can end now, is not held up by it.
  let largest: T | null = null;
  let total = 0;
  for (const [r, n] of grants) {
    total += n * r.share.cost;
    if (!largest || n * r.share.cost > grants.get(largest)! * largest.share.cost) largest = r;
  }
  if (largest) {
    const work = grants.get(largest)! * largest.share.cost;
    largest.share.yielded = !largest.share.yielded && total > work && work > total - work;
    if (largest.share.yielded) grants.delete(largest);
  }
  for (const [r, n] of grants) {
    r.share.credit -= n * r.share.cost;
    r.share.servedAt = advance;
    r.share.yielded = false;
  }
  // Work-conserving: budget that the granted simulations' claims reserved and they did not use (a small
  // run needs fewer than MAX_TICKS ticks) goes to those still saving up for a tick, unless a tick past the
  // budget ran already (then every simulation that could pay was granted too).
  const saving = running.filter((r) => !grants.has(r) && r.share.credit < r.share.cost);
  if (!over && saving.length > 0) {
    let unused = budget - spent;
    for (const r of saving) unused -= quantum.get(r)!;
    if (unused > 0) for (const [r, extra] of splitByOrg(saving, (x) => x.share.cost - x.share.credit, unused)) r.share.credit += extra;
  }
  // Credit is not hoarded: one tick and one quantum carry over at most (enough for a waiting tick).
  for (const r of running) r.share.credit = Math.min(r.share.credit, r.share.cost + quantum.get(r)!);
  return grants;
}
