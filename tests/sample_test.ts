/**
 * `addt sample`: sampleImages against the library's generate (same keys, same images), and the command
 * end to end: a PNG of the grid's size, identical bytes for the same seed, other bytes for another, and
 * one-line errors with exit 2.
 */
import { decode } from "fast-png";
import { check, freshSeed, runAddt, testGpu } from "./util.ts";
import { TINY_NETS, tinyDefenseNets } from "./attack_reference.ts";
import { scopeAsync } from "../src/tensor.ts";
import { rngKey } from "../src/ops/random.ts";
import { generate, linearSchedule } from "../src/diffusion/sampler.ts";
import { SAMPLE_STREAM, sampleImages } from "../src/diffusion/sample_grid.ts";
import { saveParams } from "../src/nn/model_io.ts";
import { createUNet, TINY_UNET } from "../src/nn/unet.ts";

const gpu = await testGpu();

Deno.test("sampleImages: batch b is generate() with key (seed, SAMPLE_STREAM, b), mapped to [0, 1]", async () => {
  const seed = freshSeed() % 100000;
  const nets = tinyDefenseNets(gpu, seed);
  const eps = nets.defense({ tStar: 1, nfe: 1, sampler: "ddpm" }).purifier!.eps;
  const { UCFG } = TINY_NETS;
  const shape = [UCFG.in_channels, UCFG.sample_size, UCFG.sample_size] as const, per = shape[0] * 36;
  const schedule = linearSchedule(50);
  try {
    for (
      const o of [{ sampler: "ddpm" as const, variance: "fixed_large" as const }, {
        sampler: "ddim" as const,
        eta: 0.5,
      }]
    ) {
      const got = await sampleImages(gpu, eps, shape, { n: 5, steps: 4, seed, batchSize: 2, schedule, ...o });
      check(got.length === 5 * per, "size");
      for (let b = 0; b < 3; b++) {
        const count = Math.min(2, 5 - 2 * b);
        const want = await scopeAsync(async () =>
          await gpu.read(
            generate(eps, [count, ...shape], 4, rngKey(gpu, seed, SAMPLE_STREAM, b), { schedule, ...o }),
          )
        );
        const row = got.subarray(2 * b * per, (2 * b + count) * per);
        check(
          want.every((v, i) => Math.abs((v + 1) / 2 - row[i]) <= 1e-7),
          `seed ${seed} ${o.sampler}: batch ${b} differs from generate()`,
        );
      }
    }
  } finally {
    nets.dispose();
  }
});

const addt = (args: string[]) => runAddt(["sample", ...args]);

Deno.test("sample CLI: a PNG grid of the expected size; same seed, same bytes; bad input exits 2 with one line", async () => {
  const dir = await Deno.makeTempDir();
  const seed = freshSeed() % 1000;
  const ucfg = { ...TINY_UNET, sample_size: 8, in_channels: 1, out_channels: 1 };
  const u = createUNet(gpu, ucfg, seed);
  try {
    await Deno.mkdir(`${dir}/ddpm`);
    await saveParams(u, `${dir}/ddpm/model.safetensors`);
    const settings = { dataset: "mnist", timesteps: 40, betaStart: 1e-4, betaEnd: 0.02 };
    await Deno.writeTextFile(`${dir}/ddpm/run.json`, JSON.stringify({ settings, model: ucfg }));
    const common = ["--ddpm", `${dir}/ddpm`, "--n", "5", "--steps", "4", "--cols", "3", "--scale", "2"];
    const run = (seedArg: number, out: string) => addt([...common, "--seed", String(seedArg), "--out", out]);
    const a = await run(seed, `${dir}/a.png`);
    check(a.code === 0, `sample failed (exit ${a.code}):\n${a.stderr}`);
    check(
      /wrote .*a\.png: 5 samples, DDPM 4 steps \(fixed_small\)/.test(a.stdout) && /\d s/.test(a.stdout),
      a.stdout,
    );
    const bytes = await Deno.readFile(`${dir}/a.png`);
    const png = decode(bytes);
    // 3 columns x 2 rows of 8x8 images at scale 2 with 1-pixel gaps
    check(
      png.width === 3 * 17 + 1 && png.height === 2 * 17 + 1 && png.channels === 1,
      `${png.width}x${png.height}`,
    );
    const b = await run(seed, `${dir}/sub/b.png`);
    check(b.code === 0, b.stderr);
    const same = await Deno.readFile(`${dir}/sub/b.png`);
    check(same.length === bytes.length && same.every((v, i) => v === bytes[i]), `seed ${seed}: bytes differ`);
    const c = await run(seed + 1, `${dir}/c.png`);
    const other = await Deno.readFile(`${dir}/c.png`);
    check(
      c.code === 0 && !(other.length === bytes.length && other.every((v, i) => v === bytes[i])),
      "seed ignored",
    );

    const fails: [string[], RegExp][] = [
      [["--ddpm", `${dir}/none`, "--out", `${dir}/x.png`], /no such folder/],
      [
        ["--ddpm", `${dir}/ddpm`, "--out", `${dir}/x.png`, "--steps", "41"],
        /--steps 41 exceeds the DDPM's T = 40/,
      ],
      [["--ddpm", `${dir}/ddpm`, "--out", `${dir}/x.png`, "--eta", "0.5"], /--eta applies to --sampler ddim/],
      [
        ["--ddpm", `${dir}/ddpm`, "--out", `${dir}/x.png`, "--sampler", "euler"],
        /--sampler expects ddpm \| ddim/,
      ],
      [["--ddpm", `${dir}/ddpm`], /--out is required/],
      [["--ddpm", `${dir}/ddpm`, "--out", `${dir}/x.png`, "--no-ema", "--n", "0"], /--n must be at least 1/],
    ];
    for (const [args, re] of fails) {
      const r = await addt(args);
      const lines = r.stderr.trim().split("\n");
      check(
        r.code === 2 && lines.length === 1 && re.test(lines[0]),
        `${args.join(" ")}: exit ${r.code}\n${r.stderr}`,
      );
    }
  } finally {
    u.dispose();
    await Deno.remove(dir, { recursive: true });
  }
});
