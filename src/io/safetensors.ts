/**
 * safetensors: an 8-byte little-endian header length, a JSON header mapping names to
 * { dtype, shape, data_offsets: [begin, end] } (offsets relative to the data section) plus an optional
 * "__metadata__" map of strings, then the raw little-endian data. We read F32, F16 and BF16 (converted to
 * float32) and write F32. Writes are atomic: a temporary file in the same folder, then a rename.
 */

export class SafetensorsError extends Error {
  override readonly name = "SafetensorsError";
  constructor(file: string, detail: string) {
    super(`${file}: ${detail}`);
  }
}

export interface SafeTensor {
  shape: number[];
  data: Float32Array;
}

export interface SafetensorsFile {
  tensors: Map<string, SafeTensor>;
  metadata: Record<string, string>;
}

const BYTES: Record<string, number> = { F32: 4, F16: 2, BF16: 2 };

function f16ToF32(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * 2 ** -14 * (f / 1024);
  if (e === 31) return f ? NaN : s * Infinity;
  return s * 2 ** (e - 15) * (1 + f / 1024);
}

/** Parse safetensors bytes; `file` names the source in errors. */
export function parseSafetensors(bytes: Uint8Array, file = "safetensors"): SafetensorsFile {
  if (bytes.length < 8) {
    throw new SafetensorsError(file, `too short (${bytes.length} bytes) to hold a header`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLen = Number(view.getBigUint64(0, true));
  if (headerLen > bytes.length - 8) {
    throw new SafetensorsError(file, `header length ${headerLen} exceeds the file size ${bytes.length}`);
  }
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLen)));
  } catch (e) {
    throw new SafetensorsError(file, `header is not valid JSON (${(e as Error).message})`);
  }
  const dataStart = 8 + headerLen;
  const dataLen = bytes.length - dataStart;
  const tensors = new Map<string, SafeTensor>();
  let metadata: Record<string, string> = {};
  for (const [name, raw] of Object.entries(header)) {
    if (name === "__metadata__") {
      metadata = raw as Record<string, string>;
      continue;
    }
    const info = raw as { dtype?: string; shape?: number[]; data_offsets?: [number, number] };
    const dtype = info.dtype ?? "?";
    const width = BYTES[dtype];
    if (!width) throw new SafetensorsError(file, `tensor ${name} has unsupported dtype ${dtype}`);
    const shape = info.shape ?? [];
    const [begin, end] = info.data_offsets ?? [-1, -1];
    const count = shape.reduce((a, b) => a * b, 1);
    if (!(begin >= 0 && end <= dataLen && end - begin === count * width)) {
      throw new SafetensorsError(
        file,
        `tensor ${name}: data_offsets [${begin}, ${end}] do not fit shape [${shape}] ${dtype} in ${dataLen} data bytes`,
      );
    }
    const data = new Float32Array(count);
    const at = dataStart + begin;
    if (dtype === "F32") {
      for (let i = 0; i < count; i++) data[i] = view.getFloat32(at + 4 * i, true);
    } else if (dtype === "F16") {
      for (let i = 0; i < count; i++) data[i] = f16ToF32(view.getUint16(at + 2 * i, true));
    } else {
      const u = new Uint32Array(1), f = new Float32Array(u.buffer);
      for (let i = 0; i < count; i++) {
        u[0] = view.getUint16(at + 2 * i, true) << 16;
        data[i] = f[0];
      }
    }
    tensors.set(name, { shape, data });
  }
  return { tensors, metadata };
}

/** Serialise float32 tensors (sorted by name, as the reference implementation does) with metadata. */
export function encodeSafetensors(
  tensors: Iterable<[string, SafeTensor]>,
  metadata: Record<string, string> = {},
): Uint8Array {
  const entries = [...tensors].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  let offset = 0;
  for (const [name, t] of entries) {
    const count = t.shape.reduce((a, b) => a * b, 1);
    if (count !== t.data.length) {
      throw new RangeError(`safetensors: tensor ${name} has ${t.data.length} values for shape [${t.shape}]`);
    }
    header[name] = { dtype: "F32", shape: t.shape, data_offsets: [offset, offset + 4 * count] };
    offset += 4 * count;
  }
  let json = JSON.stringify(header);
  while ((8 + new TextEncoder().encode(json).length) % 8) json += " "; // align the data section
  const head = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + head.length + offset);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(head.length), true);
  out.set(head, 8);
  let at = 8 + head.length;
  for (const [, t] of entries) {
    for (let i = 0; i < t.data.length; i++) view.setFloat32(at + 4 * i, t.data[i], true);
    at += 4 * t.data.length;
  }
  return out;
}

/** Write bytes atomically: a temporary file beside the target, then a rename. */
export async function writeFileAtomic(path: string, bytes: Uint8Array | string): Promise<void> {
  const tmp = `${path}.${Deno.pid}.${Date.now()}.tmp`;
  try {
    if (typeof bytes === "string") await Deno.writeTextFile(tmp, bytes);
    else await Deno.writeFile(tmp, bytes);
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}

export async function readSafetensors(path: string): Promise<SafetensorsFile> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    throw new SafetensorsError(
      path,
      e instanceof Deno.errors.NotFound ? "file not found" : (e as Error).message,
    );
  }
  return parseSafetensors(bytes, path);
}

export async function writeSafetensors(
  path: string,
  tensors: Iterable<[string, SafeTensor]>,
  metadata: Record<string, string> = {},
): Promise<void> {
  await writeFileAtomic(path, encodeSafetensors(tensors, metadata));
}
