/**
 * Engine selection (RESONANCE_BACKEND=auto|webgpu|cpu). auto takes WebGPU only on a hardware adapter:
 * software WebGPU (llvmpipe) is a correctness path, no faster than the CPU engine.
 */
import { CpuEngine } from './cpu/engine.js';
import { RoutedEngine } from './routed.js';
import type { BackendChoice, Engine, Precision } from './types.js';

export interface EngineOptions {
  backend?: BackendChoice;
  /** CPU engine precision (the WebGPU engine is always f32). */
  precision?: Precision;
  /** CPU worker threads (default: one per core). */
  threads?: number;
  /** Where the CPU engine's loops run (RESONANCE_CPU_LOOPS): WebAssembly SIMD (default) or TypeScript. */
  loops?: 'wasm' | 'ts';
  /** auto only: told why the CPU engine was taken ("no GPU adapter (Vulkan not available)"). */
  onCpuFallback?: (reason: string) => void;
}

export function loopsFromEnv(env: NodeJS.ProcessEnv = process.env): 'wasm' | 'ts' {
  const v = (env.RESONANCE_CPU_LOOPS ?? 'wasm').toLowerCase();
  if (v === 'wasm' || v === 'ts') return v;
  throw new Error(`RESONANCE_CPU_LOOPS must be wasm or ts (got "${env.RESONANCE_CPU_LOOPS}")`);
}

export function backendFromEnv(env: NodeJS.ProcessEnv = process.env): BackendChoice {
  const v = (env.RESONANCE_BACKEND ?? 'auto').toLowerCase();
  if (v === 'auto' || v === 'cpu' || v === 'webgpu') return v;
  throw new Error(`RESONANCE_BACKEND must be auto, webgpu or cpu (got "${env.RESONANCE_BACKEND}")`);
}

/**
 * The engine of `options`. An f32 engine (WebGPU, CPU f32) comes with a CPU f64 engine beside it for the
 * bands f32 cannot resolve (routed.ts, docs/model.md section 9).
 */
export async function createEngine(options: EngineOptions = {}): Promise<Engine> {
  const engine = await pickEngine(options);
  if (engine.info.precision !== 'f32') return engine;
  return new RoutedEngine(engine, () => cpuEngine(options, 'f64'));
}

/** The CPU engine of `options`, in `precision`. */
function cpuEngine(options: EngineOptions, precision: Precision): Engine {
  return new CpuEngine({ precision, threads: options.threads, loops: options.loops ?? loopsFromEnv() });
}

async function pickEngine(options: EngineOptions): Promise<Engine> {
  const backend = options.backend ?? backendFromEnv();
  const cpu = (): Engine => cpuEngine(options, options.precision ?? 'f64');
  if (backend === 'cpu') return cpu();
  const webgpu = async (allowSoftware: boolean): Promise<Engine> => {
    const { WebGpuEngine } = await import('./webgpu/engine.js');
    return WebGpuEngine.create({ allowSoftware });
  };
  if (backend === 'webgpu') return webgpu(true);
  // auto: a missing native binding or a software-only adapter both mean the CPU engine. Whether there is a
  // GPU is asked of a child process first (device.ts probeDefaultAdapter), so that a machine without one
  // gets one line through onCpuFallback instead of Dawn's warnings on stderr. Not a literal specifier, as
  // in engine.ts: bundlers of the demo pages must leave the Node-only module out.
  const fallback = (reason: string): Engine => {
    options.onCpuFallback?.(reason);
    return cpu();
  };
  let probe: Awaited<ReturnType<typeof import('./webgpu/device.js').probeDefaultAdapter>>;
  try {
    const deviceModule = './webgpu/device.js';
    probe = await ((await import(/* @vite-ignore */ deviceModule)) as typeof import('./webgpu/device.js')).probeDefaultAdapter();
  } catch (err) {
    return fallback(`WebGPU not available (${(err as Error).message})`);
  }
  if (probe.found !== 'hardware') return fallback(`no GPU adapter (${probe.detail})`);
  return webgpu(false).catch((err: unknown) => fallback(`WebGPU failed on ${probe.detail} (${(err as Error).message})`));
}
