/**
 * A tiny WGSL template language, so that kernel variants come from one source instead of copies:
 * - `{{NAME}}` is replaced by the constant's value;
 * - lines `//#if NAME`, `//#elif NAME`, `//#else`, `//#endif` keep or drop the lines between them
 *   (a constant is true when it is neither false, 0 nor absent). `//#if !NAME` negates.
 * Unknown placeholders are an error, so a typo cannot compile silently into something else.
 */
export type Consts = Record<string, number | string | boolean>;

export function wgsl(template: string, consts: Consts = {}): string {
  const out: string[] = [];
  // stack of [keeping this branch, some branch already taken, parent keeping]
  const stack: [boolean, boolean, boolean][] = [];
  const keeping = () => stack.length === 0 || stack[stack.length - 1][0];
  const truth = (expr: string) => {
    const neg = expr.startsWith("!");
    const name = neg ? expr.slice(1) : expr;
    const v = consts[name];
    const t = v !== undefined && v !== false && v !== 0;
    return neg ? !t : t;
  };
  for (const line of template.split("\n")) {
    const m = line.match(/^\s*\/\/#(if|elif|else|endif)\s*(\S*)/);
    if (m) {
      const [, dir, arg] = m;
      if (dir === "if") {
        const parent = keeping();
        const t = parent && truth(arg);
        stack.push([t, t, parent]);
      } else if (dir === "elif" || dir === "else") {
        const top = stack[stack.length - 1];
        if (!top) throw new Error(`wgsl template: //#${dir} without //#if`);
        const t = top[2] && !top[1] && (dir === "else" || truth(arg));
        top[0] = t;
        top[1] = top[1] || t;
      } else {
        if (!stack.pop()) throw new Error("wgsl template: //#endif without //#if");
      }
      continue;
    }
    if (keeping()) out.push(line);
  }
  if (stack.length) throw new Error("wgsl template: unclosed //#if");
  return out.join("\n").replace(/\{\{(\w+)\}\}/g, (_, name) => {
    const v = consts[name];
    if (v === undefined) throw new Error(`wgsl template: no value for {{${name}}}`);
    return typeof v === "number" && Number.isInteger(v) ? String(v) : String(v);
  });
}

/** Format a float constant so that WGSL reads it as f32 (1 -> "1.0"). */
export function f32(x: number): string {
  if (!Number.isFinite(x)) throw new Error(`wgsl template: non-finite constant ${x}`);
  const s = String(x);
  return /[.eE]/.test(s) ? s : s + ".0";
}
