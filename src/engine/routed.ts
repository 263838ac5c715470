/**
 * An f32 engine (WebGPU, or the CPU engine in f32) with a CPU f64 engine beside it for the simulations f32
 * cannot follow: a basis whose natural frequencies differ by less than f32 rounds them (docs/model.md
 * section 9, unresolvedBand). Every other simulation runs on the f32 engine. One Engine to its callers:
 * ids of its own, one advance for both (run together), and infoOf(id) says which engine runs a simulation.
 * A simulation never moves: its spec decides, at add, with or without a checkpoint.
 */
import { unresolvedBand } from '../model/basis.js';
import type { SimSpec } from '../model/spec.js';
import { checkLimits, type Engine, type EngineInfo, type SimState, type SimPatch, type SimReport } from './types.js';

/** True when f32 cannot resolve the band of `spec` (docs/model.md section 9): it must run in f64. */
export function needsF64(spec: Pick<SimSpec, 'primes' | 'frequencyScale'>): boolean {
  return unresolvedBand(spec.primes, spec.frequencyScale) !== null;
}

interface Placement {
  engine: Engine;
  inner: number;
}

export class RoutedEngine implements Engine {
  readonly info: EngineInfo;
  private readonly ids = new Map<number, Placement>();
  /** Outer id of each inner one, per engine. */
  private readonly outer = new Map<Engine, Map<number, number>>();
  private fallback: Engine | null = null;
  private nextId = 1;

  /**
   * `primary`: the server's engine (f32, else there is nothing to route); `makeFallback`: a CPU f64 engine,
   * made at the first simulation that needs it.
   */
  constructor(
    private readonly primary: Engine,
    private readonly makeFallback: () => Engine,
  ) {
    this.info = primary.info;
    this.outer.set(primary, new Map());
  }

  infoFor(spec: SimSpec): EngineInfo {
    return this.routes(spec) ? this.fallbackEngine().info : this.primary.infoFor(spec);
  }

  add(spec: SimSpec, from?: SimState): number {
    const engine = this.routes(spec) ? this.fallbackEngine() : this.primary;
    const inner = engine.add(spec, from);
    const id = this.nextId++;
    this.ids.set(id, { engine, inner });
    this.outer.get(engine)!.set(inner, id);
    return id;
  }

  remove(id: number): void {
    const at = this.ids.get(id);
    if (!at) return;
    this.ids.delete(id);
    this.outer.get(at.engine)!.delete(at.inner);
    at.engine.remove(at.inner);
  }

  async advance(ticks: number, limits?: ReadonlyMap<number, number>): Promise<Map<number, SimReport>> {
    checkLimits(limits);
    const engines = [...this.outer.keys()];
    const inner = new Map<Engine, Map<number, number>>(engines.map((e) => [e, new Map()]));
    for (const [id, n] of limits ?? []) {
      const at = this.ids.get(id);
      if (at) inner.get(at.engine)!.set(at.inner, n);
    }
    // Both at once: the f32 engine (a GPU, or worker threads) and the f64 one (worker threads).
    const reports = await Promise.all(
      engines.map((e) => (this.outer.get(e)!.size > 0 ? e.advance(ticks, limits ? inner.get(e) : undefined) : Promise.resolve(new Map<number, SimReport>()))),
    );
    const out = new Map<number, SimReport>();
    engines.forEach((e, n) => {
      const ids = this.outer.get(e)!;
      for (const [innerId, report] of reports[n]!) {
        const id = ids.get(innerId);
        if (id !== undefined) out.set(id, report);
      }
    });
    return out;
  }

  exportState(id: number): Promise<SimState> {
    const at = this.place(id);
    return at.engine.exportState(at.inner);
  }

  patch(id: number, change: SimPatch): void {
    const at = this.place(id);
    at.engine.patch(at.inner, change);
  }

  async destroy(): Promise<void> {
    await Promise.all([...this.outer.keys()].map((e) => e.destroy()));
    this.ids.clear();
    this.outer.clear();
  }

  /** `spec` runs on the f64 engine. */
  private routes(spec: SimSpec): boolean {
    return this.primary.info.precision === 'f32' && needsF64(spec);
  }

  private fallbackEngine(): Engine {
    if (!this.fallback) {
      this.fallback = this.makeFallback();
      this.outer.set(this.fallback, new Map());
    }
    return this.fallback;
  }

  private place(id: number): Placement {
    const at = this.ids.get(id);
    if (!at) throw new Error(`engine: no simulation ${id}`);
    return at;
  }
}
