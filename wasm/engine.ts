/**
 * The CPU engine's WebAssembly module (built by scripts/build-wasm.mjs into dist/wasm/engine.wasm, and
 * engine-relaxed.wasm with relaxed SIMD's multiply-add): the dense pass and the per-prime loops of a
 * visit, one instance per thread on the engine's shared memory (src/engine/cpu/wasm.ts).
 */
export { dense32, dense64 } from './dense';
export { loadAmplitudes32, loadAmplitudes64, measure32, measure64, update32, update64 } from './primes';
