/** Typed errors of the GPU core. Each names what failed so that a user sees one clear line. */

/** No WebGPU adapter could be found (no driver, no software rasteriser). */
export class NoAdapterError extends Error {
  override readonly name = "NoAdapterError";
  constructor() {
    super(
      "no WebGPU adapter found: install a GPU driver with Vulkan support, or Mesa's software adapter " +
        "(apt-get install mesa-vulkan-drivers for lavapipe; llvmpipe comes with libgl1-mesa-dri)",
    );
  }
}

/** A device error (validation, out-of-memory, internal) caught by an error scope, naming the op. */
export class GpuOpError extends Error {
  override readonly name = "GpuOpError";
  constructor(readonly op: string, readonly kind: string, detail: string) {
    super(`GPU ${kind} error in ${op}: ${detail}`);
  }
}

/** A tensor shape that an op cannot take. */
export class ShapeError extends Error {
  override readonly name = "ShapeError";
  constructor(op: string, detail: string) {
    super(`${op}: ${detail}`);
  }
}
