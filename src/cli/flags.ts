/** Flag value parsers shared by the commands: each gives the value or a one-line message naming the flag. */
import * as E from "fp-ts/Either.js";
import { pipe } from "fp-ts/function.js";

export type Parse = (v: string, flag: string) => E.Either<string, unknown>;

export const fail = (flag: string, want: string, v: string): E.Either<string, never> =>
  E.left(`${flag} expects ${want}, got "${v}"`);
export const number: Parse = (v, f) =>
  v.trim() !== "" && Number.isFinite(Number(v)) ? E.right(Number(v)) : fail(f, "a number", v);
export const integer: Parse = (v, f) =>
  /^\d+$/.test(v.trim()) ? E.right(Number(v)) : fail(f, "a non-negative integer", v);
export const text: Parse = (v) => E.right(v);
export const oneOf = (xs: readonly string[]): Parse => (v, f) =>
  xs.includes(v) ? E.right(v) : fail(f, xs.join(" | "), v);
export const listOf = (item: Parse): Parse => (v, f) =>
  pipe(v.split(",").map((x) => item(x.trim(), f)), E.sequenceArray, E.map((xs) => [...xs]));
