/**
 * The CPU engine's WebAssembly module: its SIMD dense pass (wasm/dense.ts) against a plain float64 loop of
 * docs/model.md section 4 step 1 (the same sums to the precision of the mode, bit-identical from run to run
 * and whichever way the rows are split between calls, as worker threads split them), the choice of build,
 * and the shared arena it works in. Its per-prime loops are checked against their TypeScript twins in
 * test/cpu-engine.test.ts and on every failure branch in test/robustness.test.ts.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { compileWasm, SharedArena, SIM_RECORD_BYTES, WasmLoops } from '../src/engine/cpu/wasm.js';

/** A deterministic stream of numbers in [-1, 1) (xorshift32). */
function numbers(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 31 - 1;
  };
}

interface Case {
  arena: SharedArena;
  K: number;
  table: number;
  kernel: number[];
  inputs: number[][][];
  outputs: Array<Float32Array | Float64Array>[];
}

/** A kernel and `sims` simulations' inputs in the arena, in f32 or f64 (the values rounded to the mode). */
function setUp(precision: 'f32' | 'f64', k: number, sims: number, seed = 7): Case {
  const arena = new SharedArena();
  const bytes = precision === 'f32' ? 4 : 8;
  const view = (at: number, n: number) => (precision === 'f32' ? arena.f32(at, n) : arena.f64(at, n));
  const next = numbers(seed);
  const K = arena.alloc(k * k * bytes);
  const kv = view(K, k * k);
  for (let i = 0; i < k * k; i++) kv[i] = next();
  const table = arena.alloc(sims * SIM_RECORD_BYTES);
  const record = arena.u32(table, sims * 6);
  const inputs: number[][][] = [];
  const outputs: Array<Float32Array | Float64Array>[] = [];
  for (let s = 0; s < sims; s++) {
    const ins: number[][] = [];
    const outs: Array<Float32Array | Float64Array> = [];
    for (let f = 0; f < 6; f++) {
      const at = arena.alloc(k * bytes);
      record[s * 6 + f] = at;
      const v = view(at, k);
      if (f < 3) {
        for (let j = 0; j < k; j++) v[j] = next();
        ins.push([...v]);
      } else outs.push(v);
    }
    inputs.push(ins);
    outputs.push(outs);
  }
  return { arena, K, table, kernel: [...kv], inputs, outputs };
}

/** z re, z im, q of simulation `s` by a plain float64 loop, and the sum of |terms| of each (the error scale). */
function reference(c: Case, k: number, s: number): { sums: number[][]; scale: number[][] } {
  const sums = [0, 1, 2].map(() => new Array<number>(k).fill(0));
  const scale = [0, 1, 2].map(() => new Array<number>(k).fill(0));
  for (let i = 0; i < k; i++) {
    for (let j = 0; j < k; j++) {
      const kij = c.kernel[i * k + j]!;
      for (let f = 0; f < 3; f++) {
        const term = kij * c.inputs[s]![f]![j]!;
        sums[f]![i]! += term;
        scale[f]![i]! += Math.abs(term);
      }
    }
  }
  return { sums, scale };
}

const dense = compileWasm();

describe('WebAssembly dense pass', () => {
  for (const [precision, tolerance] of [['f32', 4e-6], ['f64', 1e-14]] as const) {
    it(`${precision}: z and q of every simulation agree with a float64 loop, for k not a multiple of the vector width`, () => {
      // k = 37: rows past the last full vector, an odd row at the end, and an odd number of simulations.
      const k = 37;
      const c = setUp(precision, k, 3);
      new WasmLoops(dense, c.arena.memory).dense(precision, c.K, k, 0, k, c.table, 3);
      for (let s = 0; s < 3; s++) {
        const { sums, scale } = reference(c, k, s);
        for (let f = 0; f < 3; f++) {
          for (let i = 0; i < k; i++) {
            const err = Math.abs(c.outputs[s]![f]![i]! - sums[f]![i]!);
            expect(err).toBeLessThanOrEqual(tolerance * scale[f]![i]!);
          }
        }
      }
    });

    it(`${precision}: bit-identical from call to call, and whether the rows are done in one call or split between two`, () => {
      const k = 64;
      const whole = setUp(precision, k, 5, 11);
      const split = setUp(precision, k, 5, 11);
      const kernelA = new WasmLoops(dense, whole.arena.memory);
      kernelA.dense(precision, whole.K, k, 0, k, whole.table, 5);
      const first = whole.outputs.map((o) => o.map((v) => [...v]));
      kernelA.dense(precision, whole.K, k, 0, k, whole.table, 5);
      expect(whole.outputs.map((o) => o.map((v) => [...v]))).toEqual(first);
      // Two instances on one memory, as two worker threads: rows [0, 23) and [23, 64).
      new WasmLoops(dense, split.arena.memory).dense(precision, split.K, k, 0, 23, split.table, 5);
      new WasmLoops(dense, split.arena.memory).dense(precision, split.K, k, 23, k, split.table, 5);
      expect(split.outputs.map((o) => o.map((v) => [...v]))).toEqual(first);
    });
  }

  it('uses the relaxed build only where the runtime validates relaxed SIMD', () => {
    // Node 20 has relaxed SIMD only behind a flag; the plain SIMD build is then the one loaded.
    // What the runtime says of the relaxed build's bytes decides, and nothing else.
    const relaxedValidates = WebAssembly.validate(readFileSync(new URL('../dist/wasm/engine-relaxed.wasm', import.meta.url)));
    expect(compileWasm().variant).toBe(relaxedValidates ? 'relaxed-simd' : 'simd');
    expect(compileWasm({ allowRelaxed: false }).variant).toBe('simd');
  });
});

describe('shared arena', () => {
  it('reuses released blocks, merges neighbours and gives back the top', () => {
    const arena = new SharedArena();
    const a = arena.alloc(100);
    const b = arena.alloc(100);
    const c = arena.alloc(100);
    expect([b - a, c - b]).toEqual([112, 112]);
    arena.release(b, 100);
    expect(arena.alloc(50)).toBe(b);
    arena.release(b, 50);
    arena.release(a, 100);
    // a and b merged: a block of both sizes fits where a was.
    expect(arena.alloc(224)).toBe(a);
    arena.release(a, 224);
    arena.release(c, 100);
    expect(arena.used).toBe(0);
    expect(arena.alloc(16)).toBe(a);
  });

  it('keeps earlier views valid when the memory grows', () => {
    const arena = new SharedArena();
    const at = arena.alloc(1024);
    const early = arena.f64(at, 128);
    early[127] = 42;
    const pages = arena.memory.buffer.byteLength / 65536;
    arena.alloc(8 * 65536);
    expect(arena.memory.buffer.byteLength / 65536).toBeGreaterThan(pages);
    expect(early[127]).toBe(42);
    expect(arena.f64(at, 128)[127]).toBe(42);
  });
});
