/**
 * The CPU engine's WebAssembly module (the SIMD dense pass of wasm/dense.ts and the per-prime loops of
 * wasm/primes.ts, built into dist/wasm/ by scripts/build-wasm.mjs) and the shared memory it works in. One
 * SharedArena per engine holds the kernels and every simulation's vectors once for every worker thread,
 * and each thread instantiates the module on that memory (WasmLoops). The relaxed build (fused
 * multiply-add) is chosen where the runtime validates it, the plain SIMD build otherwise; each build is
 * deterministic on its own, so the build is part of the backend's name (WasmModule.variant).
 */
import type { Precision } from '../types.js';

/** Largest size of the shared memory, in 64 KiB pages; the modules are built with the same maximum. */
export const WASM_MAX_PAGES = 32768;
const PAGE_BYTES = 65536;
/** The module's own data and stack live below this; the arena hands out what lies above. */
const ARENA_BASE = PAGE_BYTES;
/** Alignment of every block (a v128 load of a row is then aligned when k is a multiple of four). */
const ALIGN = 16;
/** A simulation's record in a dense call's table: six u32 addresses (a cos, a sin, a, z re, z im, q). */
export const SIM_RECORD_BYTES = 24;

/**
 * Bytes of amplitudes (a cos, a sin, a; k values each) that one dense call passes over for every pair of
 * kernel rows: about half a core's L2, so they stay there while the rows stream past (at k = 2048, batch
 * 128, one call for every simulation of a thread streamed them from L3 and cost ~30%).
 */
const AMPLITUDE_BLOCK_BYTES = 1 << 20;

/** Simulations per dense call (at least one): as many as keep their amplitudes in cache. */
export function simsPerDenseCall(k: number, bytesPerValue: number): number {
  return Math.max(1, Math.floor(AMPLITUDE_BLOCK_BYTES / (3 * k * bytesPerValue)));
}

export interface WasmModule {
  module: WebAssembly.Module;
  variant: 'simd' | 'relaxed-simd';
}

function wasmUrl(name: string): URL {
  // Tests import the TypeScript sources; the modules are always built into dist/wasm.
  return import.meta.url.endsWith('.ts')
    ? new URL(`../../../dist/wasm/${name}`, import.meta.url)
    : new URL(`../../../wasm/${name}`, import.meta.url);
}

/**
 * The engine's module from the bytes of the two builds, compiled off the calling thread's critical path: the
 * relaxed build where this runtime validates it, else the plain SIMD build. What a browser page uses (it
 * bundles both builds); Node uses compileWasm.
 */
export async function wasmModuleOf(plain: BufferSource, relaxed?: BufferSource): Promise<WasmModule> {
  if (relaxed && WebAssembly.validate(relaxed)) return { module: await WebAssembly.compile(relaxed), variant: 'relaxed-simd' };
  return { module: await WebAssembly.compile(plain), variant: 'simd' };
}

/** Compiled once per process and build (every engine and worker of the process shares it). */
const compiled = new Map<boolean, WasmModule>();

/** The relaxed build where this runtime has relaxed SIMD, else the plain SIMD build. */
export function compileWasm(options: { allowRelaxed?: boolean } = {}): WasmModule {
  const allowRelaxed = options.allowRelaxed !== false;
  const known = compiled.get(allowRelaxed);
  if (known) return known;
  // Loaded when asked for, so that a browser bundle of the engine (which passes no arena) needs no node:fs.
  const { readFileSync } = process.getBuiltinModule('node:fs');
  let found: WasmModule | undefined;
  if (allowRelaxed) {
    const relaxed = readFileSync(wasmUrl('engine-relaxed.wasm'));
    if (WebAssembly.validate(relaxed)) found = { module: new WebAssembly.Module(relaxed), variant: 'relaxed-simd' };
  }
  found ??= { module: new WebAssembly.Module(readFileSync(wasmUrl('engine.wasm'))), variant: 'simd' };
  compiled.set(allowRelaxed, found);
  return found;
}

/**
 * Blocks of a shared WebAssembly.Memory, first fit over a free list kept sorted by address (neighbours
 * merge on release). Growing the memory leaves every earlier view valid: a shared buffer never moves.
 */
export class SharedArena {
  readonly memory: WebAssembly.Memory;
  private readonly holes: Array<{ at: number; bytes: number }> = [];
  private top = ARENA_BASE;

  constructor(memory?: WebAssembly.Memory) {
    this.memory = memory ?? new WebAssembly.Memory({ initial: ARENA_BASE / PAGE_BYTES + 1, maximum: WASM_MAX_PAGES, shared: true });
  }

  /** Bytes handed out and not released, holes included (what the arena costs). */
  get used(): number {
    return this.top - ARENA_BASE - this.holes.reduce((a, h) => a + h.bytes, 0);
  }

  alloc(bytes: number): number {
    const size = Math.max(ALIGN, Math.ceil(bytes / ALIGN) * ALIGN);
    const fit = this.holes.findIndex((h) => h.bytes >= size);
    if (fit >= 0) {
      const hole = this.holes[fit]!;
      const at = hole.at;
      if (hole.bytes === size) this.holes.splice(fit, 1);
      else {
        hole.at += size;
        hole.bytes -= size;
      }
      return at;
    }
    const at = this.top;
    const end = at + size;
    const have = this.memory.buffer.byteLength;
    if (end > have) {
      const pages = Math.ceil((end - have) / PAGE_BYTES);
      if (have / PAGE_BYTES + pages > WASM_MAX_PAGES) throw new RangeError(`the engine's shared memory is full (${WASM_MAX_PAGES * PAGE_BYTES} bytes)`);
      this.memory.grow(pages);
    }
    this.top = end;
    return at;
  }

  release(at: number, bytes: number): void {
    const size = Math.max(ALIGN, Math.ceil(bytes / ALIGN) * ALIGN);
    let i = this.holes.findIndex((h) => h.at > at);
    if (i < 0) i = this.holes.length;
    this.holes.splice(i, 0, { at, bytes: size });
    // Merge with the next hole, then with the previous one.
    const next = this.holes[i + 1];
    const self = this.holes[i]!;
    if (next && self.at + self.bytes === next.at) {
      self.bytes += next.bytes;
      this.holes.splice(i + 1, 1);
    }
    const prev = this.holes[i - 1];
    if (prev && prev.at + prev.bytes === self.at) {
      prev.bytes += self.bytes;
      this.holes.splice(i, 1);
    }
    // A hole at the top goes back to the top.
    const last = this.holes[this.holes.length - 1];
    if (last && last.at + last.bytes === this.top) {
      this.top = last.at;
      this.holes.pop();
    }
  }

  f32(at: number, length: number): Float32Array {
    return new Float32Array(this.memory.buffer, at, length);
  }

  f64(at: number, length: number): Float64Array {
    return new Float64Array(this.memory.buffer, at, length);
  }

  u32(at: number, length: number): Uint32Array {
    return new Uint32Array(this.memory.buffer, at, length);
  }
}

interface WasmExports {
  dense32(K: number, k: number, i0: number, i1: number, table: number, sims: number): void;
  dense64(K: number, k: number, i0: number, i1: number, table: number, sims: number): void;
  loadAmplitudes32(record: number, j0: number, j1: number, l2: boolean): void;
  loadAmplitudes64(record: number, j0: number, j1: number, l2: boolean): void;
  measure32(record: number, k: number, h: number, gamma: number, noiseAmp: number, seed: number, rho: number, n: number, kl: boolean): void;
  measure64(record: number, k: number, h: number, gamma: number, noiseAmp: number, seed: number, rho: number, n: number, kl: boolean): void;
  update32(record: number, k: number, mean: number, hLambda: number, hPenalty: number, sweeps: number, minMass: number, lnMinMass: number): void;
  update64(record: number, k: number, mean: number, hLambda: number, hPenalty: number, sweeps: number, minMass: number, lnMinMass: number): void;
}

/**
 * The engine's WebAssembly loops for one thread, on the engine's shared memory: the dense pass
 * (wasm/dense.ts) and the per-prime loops of a visit (wasm/primes.ts), each in f32 or f64 throughout.
 * A simulation's per-prime vectors are addressed through its record (state.ts, PRIME_FIELDS).
 */
export class WasmLoops {
  private readonly exports: WasmExports;

  constructor(wasm: WasmModule, memory: WebAssembly.Memory) {
    const abort = (): never => {
      throw new Error('the WebAssembly engine loops aborted');
    };
    this.exports = new WebAssembly.Instance(wasm.module, { env: { memory, abort } }).exports as unknown as WasmExports;
  }

  /**
   * Rows [i0, i1) of z and q for the `sims` simulations whose records (SIM_RECORD_BYTES each) start at
   * `table`, all sharing the k x k kernel at `K`.
   */
  dense(precision: Precision, K: number, k: number, i0: number, i1: number, table: number, sims: number): void {
    if (precision === 'f32') this.exports.dense32(K, k, i0, i1, table, sims);
    else this.exports.dense64(K, k, i0, i1, table, sims);
  }

  /** Amplitudes, a e^{i theta} and cos, sin of primes [j0, j1) (step.ts, loadAmplitudes). */
  loadAmplitudes(precision: Precision, record: number, j0: number, j1: number, l2: boolean): void {
    if (precision === 'f32') this.exports.loadAmplitudes32(record, j0, j1, l2);
    else this.exports.loadAmplitudes64(record, j0, j1, l2);
  }

  /** The sums of measure (step.ts) into the simulation's out block, ln P and the phase increments. */
  measure(precision: Precision, record: number, k: number, h: number, gamma: number, noiseAmp: number, seed: number, rho: number, n: number, kl: boolean): void {
    if (precision === 'f32') this.exports.measure32(record, k, h, gamma, noiseAmp, seed, rho, n, kl);
    else this.exports.measure64(record, k, h, gamma, noiseAmp, seed, rho, n, kl);
  }

  /** The phase and mass update of step.ts, update; `minMass` is the mass floor and `lnMinMass` its log. */
  update(precision: Precision, record: number, k: number, mean: number, hLambda: number, hPenalty: number, sweeps: number, minMass: number, lnMinMass: number): void {
    if (precision === 'f32') this.exports.update32(record, k, mean, hLambda, hPenalty, sweeps, minMass, lnMinMass);
    else this.exports.update64(record, k, mean, hLambda, hPenalty, sweeps, minMass, lnMinMass);
  }
}
