/**
 * The IDX format of MNIST-style files (big-endian): a 4-byte magic 0x0000TTDD (TT = element type, 0x08
 * for unsigned bytes; DD = number of dimensions), DD 4-byte dimension sizes, then the elements. The file
 * must hold exactly the bytes the header promises: a shorter file is truncated, a longer one is not IDX.
 */
import { DataError } from "./errors.ts";

export const IDX_IMAGES_MAGIC = 0x00000803;
export const IDX_LABELS_MAGIC = 0x00000801;

const hex = (v: number) => `0x${v.toString(16).padStart(8, "0")}`;

/** The dimensions and elements of an unsigned-byte IDX file with `ndims` dimensions. */
export function parseIdx(
  bytes: Uint8Array,
  file: string,
  ndims: number,
): { dims: number[]; data: Uint8Array } {
  const magic = 0x800 + ndims;
  const what = ndims === 1 ? "labels" : ndims === 3 ? "images" : `${ndims}-d array`;
  if (bytes.length < 4) throw new DataError(file, `truncated: ${bytes.length} bytes, no IDX header`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const found = view.getUint32(0);
  if (found !== magic) {
    throw new DataError(file, `bad magic ${hex(found)}, expected ${hex(magic)} (IDX unsigned-byte ${what})`);
  }
  const header = 4 + 4 * ndims;
  if (bytes.length < header) {
    throw new DataError(file, `truncated: ${bytes.length} bytes, header needs ${header}`);
  }
  const dims = Array.from({ length: ndims }, (_, i) => view.getUint32(4 + 4 * i));
  const size = dims.reduce((a, b) => a * b, 1);
  const have = bytes.length - header;
  if (have !== size) {
    const problem = have < size ? "truncated" : "trailing bytes";
    throw new DataError(
      file,
      `${problem}: header says ${dims.join("x")} = ${size} bytes of data, file has ${have}`,
    );
  }
  return { dims, data: bytes.subarray(header) };
}

/** Images of an IDX3 file: n x h x w bytes. */
export function parseIdxImages(
  bytes: Uint8Array,
  file: string,
): { n: number; h: number; w: number; pixels: Uint8Array } {
  const { dims: [n, h, w], data } = parseIdx(bytes, file, 3);
  return { n, h, w, pixels: data };
}

/** Labels of an IDX1 file, each checked to be < `classes`. */
export function parseIdxLabels(bytes: Uint8Array, file: string, classes: number): Uint8Array {
  const { data } = parseIdx(bytes, file, 1);
  const bad = data.findIndex((l) => l >= classes);
  if (bad >= 0) throw new DataError(file, `label ${data[bad]} at item ${bad} is not in 0..${classes - 1}`);
  return data;
}
