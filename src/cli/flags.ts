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

/** A flag: commander's spelling, its help line and its parser (null: a boolean switch). */
export interface Flag {
  flag: string;
  help: string;
  parse: Parse | null;
}

export const numberOrNone: Parse = (v, f) => v === "none" ? E.right(null) : number(v, f);
export const pair: Parse = (v, f) => {
  const xs = v.split(",").map(Number);
  return xs.length === 2 && xs.every(Number.isFinite) ? E.right(xs) : fail(f, "two numbers a,b", v);
};

/** commander's attribute name of a flag: "--data-dir <dir>" -> "dataDir". */
export const keyOf = (flag: string): string =>
  flag.split(" ")[0].slice(2).replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

/** Each flag's help with its default from `defaults` appended (unless unset or already stated). */
export function withDefaults(flags: readonly Flag[], defaults: object): Flag[] {
  return flags.map((f) => {
    const v = (defaults as Record<string, unknown>)[keyOf(f.flag)];
    const unset = v === null || v === undefined || v === false || v === "" ||
      (Array.isArray(v) && v.length === 0);
    const shown = unset || f.help.includes("(default:")
      ? ""
      : ` (default: ${Array.isArray(v) ? v.join(",") : v})`;
    return { ...f, help: f.help + shown };
  });
}
