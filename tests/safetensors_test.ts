import {
  encodeSafetensors,
  parseSafetensors,
  readSafetensors,
  SafetensorsError,
  writeSafetensors,
} from "../src/io/safetensors.ts";

function expectError(fn: () => unknown, pattern: RegExp): void {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof SafetensorsError) || !pattern.test(e.message)) throw new Error(`wrong error: ${e}`);
    return;
  }
  throw new Error(`expected an error matching ${pattern}`);
}

Deno.test("safetensors: round trip with metadata, atomic write leaves no temp file", async () => {
  const dir = await Deno.makeTempDir();
  const a = Float32Array.from({ length: 24 }, (_, i) => i * 0.5 - 3);
  const b = Float32Array.of(Math.PI);
  await writeSafetensors(`${dir}/w.safetensors`, [["z.b", { shape: [1], data: b }], ["a.w", {
    shape: [2, 3, 4],
    data: a,
  }]], {
    step: "7",
  });
  const f = await readSafetensors(`${dir}/w.safetensors`);
  if (f.metadata.step !== "7") throw new Error("metadata lost");
  if (f.tensors.get("a.w")!.shape.join() !== "2,3,4") throw new Error("shape lost");
  if (f.tensors.get("a.w")!.data.some((v, i) => v !== a[i])) throw new Error("data changed");
  if (f.tensors.get("z.b")!.data[0] !== b[0]) throw new Error("scalar changed");
  const names = [...Deno.readDirSync(dir)].map((e) => e.name);
  if (names.length !== 1) throw new Error(`stray files: ${names}`);
});

Deno.test("safetensors: F16 and BF16 decode", () => {
  // header by hand: F16 [1.0, -2.0, 0.5] = 3c00 c000 3800; BF16 [1.0] = 3f80
  const header = JSON.stringify({
    h: { dtype: "F16", shape: [3], data_offsets: [0, 6] },
    b: { dtype: "BF16", shape: [1], data_offsets: [6, 8] },
  });
  const head = new TextEncoder().encode(header);
  const bytes = new Uint8Array(8 + head.length + 8);
  new DataView(bytes.buffer).setBigUint64(0, BigInt(head.length), true);
  bytes.set(head, 8);
  const d = new DataView(bytes.buffer, 8 + head.length);
  [0x3c00, 0xc000, 0x3800, 0x3f80].forEach((v, i) => d.setUint16(2 * i, v, true));
  const f = parseSafetensors(bytes);
  if (f.tensors.get("h")!.data.join() !== "1,-2,0.5") throw new Error(`f16: ${f.tensors.get("h")!.data}`);
  if (f.tensors.get("b")!.data[0] !== 1) throw new Error("bf16");
});

Deno.test("safetensors: broken files give errors naming the problem", () => {
  const good = encodeSafetensors([["w", { shape: [4], data: new Float32Array(4) }]]);
  expectError(() => parseSafetensors(good.subarray(0, 5), "x.st"), /too short/);
  expectError(() => parseSafetensors(good.subarray(0, good.length - 4), "x.st"), /data_offsets/);
  const bad = good.slice();
  bad[8] = 0x7b + 1; // corrupt the JSON's first brace
  expectError(() => parseSafetensors(bad, "x.st"), /not valid JSON/);
  const huge = good.slice();
  new DataView(huge.buffer).setBigUint64(0, 1n << 40n, true);
  expectError(() => parseSafetensors(huge, "x.st"), /exceeds the file size/);
});
