/**
 * Node-side WebGPU acquisition (Dawn through the `webgpu` package) and the WGSL loader for shaders/.
 *
 * Order (docs/engine.md, "WebGPU engine": adapters):
 * 1. `create([])`: Dawn's default backend (Vulkan on Linux) at the core feature level. A software adapter
 *    found there (llvmpipe, lavapipe, SwiftShader, a fallback adapter) is refused unless allowSoftware.
 *    A child process looks first (probeDefaultAdapter); where it finds no adapter this step is skipped.
 * 2. allowSoftware only: `create(['backend=opengl'])` with `EGL_PLATFORM=surfaceless` and
 *    `requestAdapter({ featureLevel: 'compatibility' })`: Mesa llvmpipe through EGL on a machine without a GPU.
 *
 * Lifetime of the object `create()` returns (Dawn's instance): it must stay reachable while its device
 * is in use. When it is garbage-collected first, the next event processing crashes the process (measured
 * here: SIGSEGV, or abort with "std::system_error: Invalid argument" in InstanceBase::ProcessEvents, after
 * anything from a 50 ms pause to a forced gc()). So it is never stored in a module-level variable (which
 * would outlive every device) but tied to the device in a WeakMap: it lives exactly as long as the device
 * object. `device.destroy()` then lets the process exit even while the device object is still reachable.
 */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { create } from 'webgpu';

export interface AcquiredDevice {
  device: GPUDevice;
  /** Human-readable adapter: name, description, backend, feature level, software or hardware. */
  label: string;
  software: boolean;
  backend: 'default' | 'opengl';
  featureLevel: 'core' | 'compatibility';
}

export interface AcquireOptions {
  allowSoftware: boolean;
}

/** device -> the Dawn instance and adapter it came from (kept alive for as long as the device is). */
const instances = new WeakMap<GPUDevice, { gpu: GPU; adapter: GPUAdapter }>();

const SOFTWARE_NAMES = /llvmpipe|lavapipe|softpipe|swiftshader|software rasterizer/i;

function adapterText(info: GPUAdapterInfo): string {
  return [info.vendor, info.architecture, info.device, info.description].filter((s) => s && s.length > 0).join(' / ');
}

export function isSoftwareAdapter(adapter: GPUAdapter): boolean {
  const info = adapter.info;
  const fallback = (info as GPUAdapterInfo & { isFallbackAdapter?: boolean }).isFallbackAdapter === true
    || (adapter as GPUAdapter & { isFallbackAdapter?: boolean }).isFallbackAdapter === true;
  return fallback || SOFTWARE_NAMES.test(adapterText(info));
}

function featureLevelOf(adapter: GPUAdapter): 'core' | 'compatibility' {
  return adapter.features.has('core-features-and-limits') ? 'core' : 'compatibility';
}

/** The adapter's maximum of every limit the engine sizes itself by (the defaults are far lower in compat). */
function wantedLimits(adapter: GPUAdapter): Record<string, number> {
  const names = [
    'maxStorageBufferBindingSize',
    'maxBufferSize',
    'maxComputeInvocationsPerWorkgroup',
    'maxComputeWorkgroupSizeX',
    'maxComputeWorkgroupSizeY',
    'maxComputeWorkgroupSizeZ',
    'maxComputeWorkgroupStorageSize',
    'maxComputeWorkgroupsPerDimension',
    'maxStorageBuffersPerShaderStage',
  ] as const;
  const out: Record<string, number> = {};
  for (const name of names) {
    const v = (adapter.limits as unknown as Record<string, number | undefined>)[name];
    if (typeof v === 'number') out[name] = v;
  }
  return out;
}

async function deviceFrom(gpu: GPU, adapter: GPUAdapter, backend: 'default' | 'opengl'): Promise<AcquiredDevice> {
  const featureLevel = featureLevelOf(adapter);
  const requiredFeatures: GPUFeatureName[] = featureLevel === 'core' ? ['core-features-and-limits' as GPUFeatureName] : [];
  const device = await adapter.requestDevice({ requiredLimits: wantedLimits(adapter), requiredFeatures });
  instances.set(device, { gpu, adapter });
  const software = isSoftwareAdapter(adapter);
  const label = `${adapterText(adapter.info) || 'unnamed adapter'} (backend ${backend === 'default' ? 'default (Vulkan on Linux)' : 'opengl'}, ${featureLevel}, ${software ? 'software' : 'hardware'})`;
  return { device, label, software, backend, featureLevel };
}

/** What Dawn's default backend offers this machine (probeDefaultAdapter). */
export interface AdapterProbe {
  /** hardware: a GPU; software: only a software or fallback adapter; none: no adapter at all. */
  found: 'hardware' | 'software' | 'none';
  /** The adapter, or in a few words why there is none or only a software one ("Vulkan not available"). */
  detail: string;
}

let probed: Promise<AdapterProbe> | null = null;

/**
 * Whether the default backend (Vulkan on Linux) has an adapter, asked in a child process. Dawn reports
 * what it cannot load by writing to stderr from native code (on every machine without a GPU: "Warning:
 * Couldn't load Vulkan: libvulkan.so.1: cannot open shared object file" and a source location), where this
 * process can neither catch nor silence it: Node cannot redirect its own fd 2 around a call. A child's
 * stderr is captured instead and summed up in `detail`; its cost is one Node start and one Dawn instance
 * (about 0.2 s here), paid once per process (the answer is kept). A crash of Dawn in the probe costs
 * the child, not this process.
 */
export function probeDefaultAdapter(): Promise<AdapterProbe> {
  return (probed ??= runProbe());
}

function runProbe(): Promise<AdapterProbe> {
  // The child imports the same `webgpu` package as this module, by absolute URL (its working directory may be anywhere).
  const entry = pathToFileURL(createRequire(import.meta.url).resolve('webgpu')).href;
  const script = `
    const { create } = await import(${JSON.stringify(entry)});
    const adapter = await create([]).requestAdapter({ powerPreference: 'high-performance' });
    const info = adapter && adapter.info;
    const out = info && { vendor: info.vendor, architecture: info.architecture, device: info.device, description: info.description,
      isFallbackAdapter: info.isFallbackAdapter === true || adapter.isFallbackAdapter === true };
    process.stdout.write(JSON.stringify(out ?? null), () => process.exit(0));`;
  return new Promise((resolve) => {
    execFile(process.execPath, ['--input-type=module', '-e', script], { timeout: 30_000, encoding: 'utf8' }, (err, stdout, stderr) => {
      const firstLine = (text: string): string => (text.split('\n').find((l) => l.trim() !== '') ?? '').replace(/^Warning:\s*/, '').trim().slice(0, 200);
      if (err) {
        const why = err.killed ? 'it did not answer within 30 s' : err.signal ? `it crashed (${err.signal})` : firstLine(stderr) || err.message;
        resolve({ found: 'none', detail: `the WebGPU probe failed: ${why}` });
        return;
      }
      let info: (GPUAdapterInfo & { isFallbackAdapter: boolean }) | null;
      try {
        info = JSON.parse(stdout) as typeof info;
      } catch {
        resolve({ found: 'none', detail: `the WebGPU probe answered ${JSON.stringify(stdout.slice(0, 100))}` });
        return;
      }
      if (!info) {
        const detail = /Couldn't load Vulkan/i.test(stderr) ? 'Vulkan not available' : firstLine(stderr) || 'no adapter from the default backend';
        resolve({ found: 'none', detail });
        return;
      }
      const text = adapterText(info) || 'unnamed adapter';
      if (info.isFallbackAdapter || SOFTWARE_NAMES.test(text)) resolve({ found: 'software', detail: `only the software adapter ${text}` });
      else resolve({ found: 'hardware', detail: text });
    });
  });
}

/**
 * A WebGPU device for the engine. Throws an Error naming what is missing when none can be had: no
 * hardware adapter and allowSoftware false, or the software path (Mesa EGL/llvmpipe) failing too.
 */
export async function acquireDevice(options: AcquireOptions): Promise<AcquiredDevice> {
  const problems: string[] = [];
  let softwareDefault: { gpu: GPU; adapter: GPUAdapter } | null = null;
  // Asked of a child process first: where it finds nothing, Dawn in this process would only print warnings.
  const probe = await probeDefaultAdapter();
  if (probe.found === 'none') problems.push(`no adapter from the default backend (${probe.detail})`);
  else {
    try {
      const gpu = create([]);
      const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
      if (!adapter) problems.push('no adapter from the default backend (Vulkan on Linux: is a GPU with its Vulkan ICD present?)');
      else if (isSoftwareAdapter(adapter)) {
        problems.push(`the default backend offers only a software adapter (${adapterText(adapter.info)})`);
        softwareDefault = { gpu, adapter };
      } else return await deviceFrom(gpu, adapter, 'default');
    } catch (err) {
      problems.push(`default backend failed: ${(err as Error).message}`);
    }
  }
  if (!options.allowSoftware) {
    throw new Error(`WebGPU: no hardware adapter (${problems.join('; ')}); software adapters are not allowed (allowSoftware false)`);
  }
  if (softwareDefault) return deviceFrom(softwareDefault.gpu, softwareDefault.adapter, 'default');
  try {
    process.env.EGL_PLATFORM = process.env.EGL_PLATFORM || 'surfaceless';
    const gpu = create(['backend=opengl']);
    const adapter = await gpu.requestAdapter({ featureLevel: 'compatibility' } as GPURequestAdapterOptions);
    if (adapter) return await deviceFrom(gpu, adapter, 'opengl');
    problems.push(
      `no adapter from the OpenGL backend (software path: are the Mesa EGL/GL libraries with llvmpipe installed? EGL_PLATFORM=${process.env.EGL_PLATFORM}, surfaceless expected)`,
    );
  } catch (err) {
    problems.push(`OpenGL backend (Mesa EGL/llvmpipe) failed: ${(err as Error).message}`);
  }
  throw new Error(`WebGPU: no adapter at all: ${problems.join('; ')}`);
}

/** The package root: the nearest ancestor of this module holding shaders/common.wgsl (src/ or dist/src/). */
export function shaderDirectory(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = join(dir, 'shaders');
    if (existsSync(join(candidate, 'common.wgsl'))) return candidate;
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`WebGPU: shaders/common.wgsl not found above ${fileURLToPath(import.meta.url)}`);
    dir = parent;
  }
}

/** Reads shaders/<name>.wgsl of the package. */
export function nodeShaderSource(name: string): string {
  return readFileSync(join(shaderDirectory(), `${name}.wgsl`), 'utf8');
}
