/**
 * One WebGPU device per test file (llvmpipe on a machine without a GPU), acquired in beforeAll and destroyed
 * in afterAll. A missing adapter makes every test that asks for the device fail, naming what is missing.
 */
import { afterAll, beforeAll } from 'vitest';
import { acquireDevice, type AcquiredDevice } from '../../src/engine/webgpu/device.js';
import { WebGpuEngine, type WebGpuEngineOptions } from '../../src/engine/webgpu/engine.js';

export function useGpuDevice(): { device: () => AcquiredDevice; engine: (extra?: Partial<WebGpuEngineOptions>) => Promise<WebGpuEngine> } {
  let acquired: AcquiredDevice | undefined;
  let failure = '';
  beforeAll(async () => {
    try {
      acquired = await acquireDevice({ allowSoftware: true });
    } catch (err) {
      failure = (err as Error).message;
    }
  });
  afterAll(() => {
    acquired?.device.destroy();
  });
  const device = (): AcquiredDevice => {
    if (!acquired) {
      throw new Error(
        `No WebGPU adapter, so the WebGPU engine cannot be tested (${failure}). On a machine without a GPU the ` +
          'software path needs the Mesa EGL/GL libraries with llvmpipe (Dawn backend=opengl, EGL_PLATFORM=surfaceless).',
      );
    }
    return acquired;
  };
  return {
    device,
    engine: (extra = {}) => {
      const a = device();
      return WebGpuEngine.create({ allowSoftware: true, device: a.device, adapterLabel: a.label, ...extra });
    },
  };
}
