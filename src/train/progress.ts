/**
 * What a run shows while it trains. On a terminal: one progress bar redrawn in place (step, loss, images/s,
 * ETA). Otherwise (a log file, CI): one plain line per logged step. Either way every logged step is also
 * appended as one JSON line to <out>/train.jsonl: step, loss, lr, grad_norm, images_per_s, wall_s.
 */

export interface LogRecord {
  step: number;
  /** Mean loss over the steps since the previous record. */
  loss: number;
  /** Learning rate of the latest step (warmup included). */
  lr: number;
  /** Mean global gradient norm (before clipping) over the same steps. */
  grad_norm: number;
  images_per_s: number;
  /** Seconds since this process started training. */
  wall_s: number;
  /** Extra fields (test accuracy at an evaluation). */
  [extra: string]: number;
}

const encoder = new TextEncoder();

/** Append JSON lines to a file (opened per write: robust to a kill, cheap at log intervals). */
export class JsonlLog {
  constructor(readonly path: string) {}

  async append(record: Record<string, unknown>): Promise<void> {
    await Deno.writeTextFile(this.path, JSON.stringify(record) + "\n", { append: true });
  }
}

export interface ProgressOptions {
  /** Draw a bar (default: whether stdout is a terminal). */
  tty?: boolean;
  /** Where text goes (default: stdout). */
  write?: (text: string) => void;
  /** Silence everything (tests). */
  quiet?: boolean;
}

const pad2 = (n: number) => String(n).padStart(2, "0");

/** Seconds as "45s", "2m05s" or "1h02m" (progress lines, ETAs); rounded to the last unit shown, so a
 * value never reads "2m60s". */
export function shortDuration(s: number): string {
  if (!Number.isFinite(s)) return "?";
  const t = Math.round(s);
  if (t < 60) return `${t}s`;
  if (t < 3600) return `${Math.floor(t / 60)}m${pad2(t % 60)}s`;
  const minutes = Math.round(s / 60);
  return `${Math.floor(minutes / 60)}h${pad2(minutes % 60)}m`;
}

const num = (x: number) => (Math.abs(x) >= 1e-3 && Math.abs(x) < 1e4 ? x.toFixed(4) : x.toExponential(3));

export class Progress {
  private readonly tty: boolean;
  private readonly write: (text: string) => void;
  private readonly quiet: boolean;
  private lastDraw = 0;
  private last: LogRecord | null = null;
  private barShown = false;

  constructor(
    readonly label: string,
    /** The step this process starts at (a resumed run's checkpoint) and the last step. */
    readonly start: number,
    readonly total: number,
    /** Images per step, for the ETA from images/s. */
    readonly imagesPerStep: number,
    opts: ProgressOptions = {},
  ) {
    this.tty = opts.tty ?? Deno.stdout.isTerminal();
    this.write = opts.write ?? ((t) => Deno.stdout.writeSync(encoder.encode(t)));
    this.quiet = opts.quiet ?? false;
  }

  /** A step finished (cheap: redraws the bar at most 10 times a second). */
  tick(step: number, imagesPerS: number): void {
    if (this.quiet || !this.tty) return;
    const now = performance.now();
    if (now - this.lastDraw < 100 && step < this.total) return;
    this.lastDraw = now;
    this.draw(step, imagesPerS);
  }

  /** A logged step: redraw the bar, or print a line. */
  log(r: LogRecord): void {
    this.last = r;
    if (this.quiet) return;
    if (this.tty) {
      this.draw(r.step, r.images_per_s);
      return;
    }
    const eta = (this.total - r.step) * (r.wall_s / Math.max(r.step - this.start, 1));
    const extras = Object.entries(r).filter(([k]) =>
      !["step", "loss", "lr", "grad_norm", "images_per_s", "wall_s"].includes(k)
    ).map(([k, v]) => ` ${k} ${num(v)}`).join("");
    this.write(
      `${this.label} step ${r.step}/${this.total} loss ${num(r.loss)} lr ${r.lr.toExponential(2)} ` +
        `grad_norm ${num(r.grad_norm)} ${r.images_per_s.toFixed(1)} img/s${extras} eta ${
          shortDuration(eta)
        }\n`,
    );
  }

  /** A message on its own line (the bar is redrawn by the next tick). */
  note(text: string): void {
    if (this.quiet) return;
    this.write(`${this.barShown ? "\r\x1b[2K" : ""}${text}\n`);
    this.barShown = false;
  }

  /** End the bar's line. */
  done(): void {
    if (!this.quiet && this.tty && this.barShown) this.write("\n");
    this.barShown = false;
  }

  private draw(step: number, imagesPerS: number): void {
    const width = 24;
    const frac = Math.min(1, step / this.total);
    const filled = Math.round(frac * width);
    const bar = "#".repeat(filled) + "-".repeat(width - filled);
    const eta = imagesPerS > 0 ? ((this.total - step) * this.imagesPerStep) / imagesPerS : NaN;
    const loss = this.last ? ` loss ${num(this.last.loss)}` : "";
    this.write(
      `\r\x1b[2K${this.label} [${bar}] ${step}/${this.total}${loss} ${imagesPerS.toFixed(1)} img/s ` +
        `eta ${shortDuration(eta)}`,
    );
    this.barShown = true;
  }
}
