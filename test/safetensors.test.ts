// safetensors through N-API and TypeScript: round trips of every dtype, views over the mapped
// file, sharded model folders, and errors that name the file, shard and tensor.
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import {
  readSafetensors,
  nativeInfo,
  readShardedSafetensors,
  safetensorsToTensor,
  Tensor,
  writeSafetensors,
  type SafetensorsTensor,
} from "../src/index.js";

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), "s2s-safetensors-"));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

function headerLength(file: string): number {
  return Number(readFileSync(file).readBigUInt64LE(0));
}

const everyDtype: Record<string, SafetensorsTensor> = {
  f64: { dtype: "F64", shape: [3], data: new Float64Array([1.5, -2, Math.PI]) },
  f32: { dtype: "F32", shape: [2, 3], data: new Float32Array([1, 2, 3, 4, 5, -6.5]) },
  f16: { dtype: "F16", shape: [3], data: new Uint16Array([0x3c00, 0xc000, 0x7c00]) },
  bf16: { dtype: "BF16", shape: [1, 2], data: new Uint16Array([0x3f80, 0xbfc0]) },
  i64: { dtype: "I64", shape: [2], data: new BigInt64Array([-(2n ** 62n), 7n]) },
  i32: { dtype: "I32", shape: [3], data: new Int32Array([-1, 0, 2 ** 31 - 1]) },
  i16: { dtype: "I16", shape: [1], data: new Int16Array([-300]) },
  i8: { dtype: "I8", shape: [3], data: new Int8Array([-128, 0, 127]) },
  u64: { dtype: "U64", shape: [1], data: new BigUint64Array([2n ** 64n - 1n]) },
  u32: { dtype: "U32", shape: [2], data: new Uint32Array([0, 2 ** 32 - 1]) },
  u16: { dtype: "U16", shape: [1], data: new Uint16Array([65535]) },
  u8: { dtype: "U8", shape: [5], data: new Uint8Array([1, 2, 3, 4, 5]) },
  bool: { dtype: "BOOL", shape: [2], data: new Uint8Array([1, 0]) },
  f8: { dtype: "F8_E4M3", shape: [3], data: new Uint8Array([0x38, 0x40, 0xb8]) },
  f8b: { dtype: "F8_E5M2", shape: [1], data: new Uint8Array([0x3c]) },
  f8c: { dtype: "F8_E8M0", shape: [1], data: new Uint8Array([127]) },
  scalar: { dtype: "F32", shape: [], data: new Float32Array([42]) },
  empty: { dtype: "F32", shape: [0, 4], data: new Float32Array(0) },
  "h.0.attn \"quoted\" é": { dtype: "BF16", shape: [1], data: new Uint16Array([0x4000]) },
  __proto__odd: { dtype: "I32", shape: [1], data: new Int32Array([9]) },
};

describe("safetensors", () => {
  it("round-trips every dtype, 0-d and empty tensors, and metadata with escapes", async () => {
    const file = path.join(dir, "all.safetensors");
    const metadata = { format: "pt", "q\"key": "line\nbreak\ttab\\ é 😀" };
    await writeSafetensors(file, everyDtype, metadata);
    const back = readSafetensors(file);
    expect(back.metadata).toEqual(metadata);
    expect(Object.keys(back.tensors).sort()).toEqual(Object.keys(everyDtype).sort());
    for (const [name, t] of Object.entries(everyDtype)) {
      const got = back.tensors[name]!;
      expect(got.dtype, name).toBe(t.dtype);
      expect(got.shape, name).toEqual(t.shape);
      expect(got.data.constructor, name).toBe(t.data.constructor);
      expect(Array.from(got.data as ArrayLike<number | bigint>), name).toEqual(Array.from(t.data as ArrayLike<number | bigint>));
    }
    // Narrowing on dtype types the data.
    const f32 = back.tensors.f32!;
    if (f32.dtype === "F32") expect(f32.data[5]).toBe(-6.5);
  });

  it("a tensor named __proto__ is an own property, not a prototype", async () => {
    const file = path.join(dir, "proto.safetensors");
    const tensors = JSON.parse('{"__proto__": {"dtype": "U8", "shape": [1], "data": null}}') as Record<string, SafetensorsTensor>;
    tensors["__proto__"]!.data = new Uint8Array([7]);
    await writeSafetensors(file, tensors);
    const back = readSafetensors(file);
    expect(Object.getPrototypeOf(back.tensors)).toBe(Object.prototype);
    expect(Object.keys(back.tensors)).toEqual(["__proto__"]);
    expect(Object.getOwnPropertyDescriptor(back.tensors, "__proto__")?.value.data[0]).toBe(7);
  });

  it("returns views over the mapped file, not copies", async () => {
    const file = path.join(dir, "views.safetensors");
    const w = new Float32Array(1000).map((_, i) => i * 0.5);
    await writeSafetensors(file, {
      w: { dtype: "F32", shape: [10, 100], data: w },
      b: { dtype: "BF16", shape: [3], data: new Uint16Array([1, 2, 3]) },
      ids: { dtype: "I64", shape: [2], data: new BigInt64Array([1n, 2n]) },
    });
    const bytes = readFileSync(file);
    const dataStart = 8 + headerLength(file);
    const { tensors } = readSafetensors(file);
    const tw = tensors.w!, tb = tensors.b!, ti = tensors.ids!;
    // One buffer for the whole file: each view sits at its tensor's byte position in the file.
    expect(tw.data.buffer).toBe(tb.data.buffer);
    expect(tw.data.buffer).toBe(ti.data.buffer);
    expect(tw.data.buffer.byteLength).toBe(bytes.length);
    // Written sorted by element size, then name: I64 ids first, then F32 w, then BF16 b.
    expect(ti.data.byteOffset).toBe(dataStart);
    expect(tw.data.byteOffset).toBe(dataStart + 16);
    expect(tb.data.byteOffset).toBe(dataStart + 16 + 4000);
    expect(tw.data.length).toBe(1000);
    expect(tw.data.byteOffset % 4).toBe(0);
    expect(Buffer.from(tw.data.buffer, tw.data.byteOffset, 4000).equals(bytes.subarray(dataStart + 16, dataStart + 4016))).toBe(true);
    expect(Array.from((tw.data as Float32Array).subarray(0, 4))).toEqual([0, 0.5, 1, 1.5]);
    // The header bytes are visible through the same buffer (the views start after them).
    expect(Number(new DataView(tw.data.buffer).getBigUint64(0, true))).toBe(dataStart - 8);

    // Our Tensor shares that memory.
    const t = safetensorsToTensor(tw, "w");
    expect(t.dtype).toBe("float32");
    expect(t.data.buffer).toBe(tw.data.buffer);
    expect(t.shape).toEqual([10, 100]);
    expect(safetensorsToTensor(tb).dtype).toBe("bfloat16");
    expect(() => safetensorsToTensor(ti, "ids")).toThrow(expect.objectContaining({ code: "S2S_DTYPE", message: expect.stringContaining("'ids' is I64") }));
  });

  it.skipIf(process.platform !== "linux")("keeps the mapping while any view lives and unmaps it after", async () => {
    const file = path.join(dir, "gc.safetensors");
    await writeSafetensors(file, { w: { dtype: "F32", shape: [4], data: new Float32Array([1, 2, 3, 4]) } });
    // A child with --expose-gc: the mapping shows in /proc/self/maps until the last view is collected.
    const script = `
      const { readFileSync } = require("node:fs");
      const addon = require(${JSON.stringify(nativeInfo().addonPath)});
      const file = ${JSON.stringify(file)};
      const mapped = () => readFileSync("/proc/self/maps", "utf8").includes(file);
      const settle = async () => { for (let i = 0; i < 5; i++) { gc(); await new Promise((r) => setImmediate(r)); } };
      (async () => {
        let view = addon.openSafetensors(file).tensors.w.data;  // the result object is garbage now
        await settle();
        const kept = mapped() && view[3] === 4;
        view = null;
        await settle();
        console.log(JSON.stringify({ kept, released: !mapped() }));
      })();
    `;
    const r = spawnSync(process.execPath, ["--expose-gc", "-e", script], { encoding: "utf8" });
    expect(r.stderr).toBe("");
    expect(JSON.parse(r.stdout)).toEqual({ kept: true, released: true });
  });

  it("writes our Tensor class directly", async () => {
    const file = path.join(dir, "t.safetensors");
    await writeSafetensors(file, {
      w: Tensor.fromArray([1, 2, 3, 4], [2, 2]),
      h: new Tensor(new Uint16Array([0x3f80]), [1], "bfloat16"),
      g: new Tensor(new Uint16Array([0x3c00]), [1], "float16"),
    });
    const { tensors } = readSafetensors(file);
    expect(tensors.w).toMatchObject({ dtype: "F32", shape: [2, 2] });
    expect(tensors.h).toMatchObject({ dtype: "BF16", shape: [1] });
    expect(tensors.g).toMatchObject({ dtype: "F16", shape: [1] });
  });

  it("replaces an existing file whole and leaves no temporary file", async () => {
    const file = path.join(dir, "m.safetensors");
    await writeSafetensors(file, { big: { dtype: "F32", shape: [100000], data: new Float32Array(100000) } });
    const before = readSafetensors(file);  // keeps the old mapping alive across the replace
    await writeSafetensors(file, { small: { dtype: "U8", shape: [1], data: new Uint8Array([5]) } });
    expect(Object.keys(readSafetensors(file).tensors)).toEqual(["small"]);
    expect(before.tensors.big!.data.length).toBe(100000);
    expect(readdirSync(dir)).toEqual(["m.safetensors"]);
  });

  it("errors name the file and the tensor, with codes, and point at the caller", async () => {
    const missing = path.join(dir, "missing.safetensors");
    expect(() => readSafetensors(missing)).toThrow(expect.objectContaining({ code: "S2S_IO", message: expect.stringContaining(missing) }));

    const bad = path.join(dir, "bad.safetensors");
    const header = '{"h.0.attn.c_attn.weight":{"dtype":"F32","shape":[3,4],"data_offsets":[0,100]}}';
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(header.length));
    writeFileSync(bad, Buffer.concat([len, Buffer.from(header), Buffer.alloc(100)]));
    expect(() => readSafetensors(bad)).toThrow(
      `[safetensors] ${bad}: tensor 'h.0.attn.c_attn.weight' has data_offsets [0, 100] but shape (3, 4) of F32 needs 48 bytes`,
    );
    expect(() => readSafetensors(bad)).toThrow(expect.objectContaining({ code: "S2S_FORMAT" }));
    writeFileSync(bad, "not a safetensors file at all");
    expect(() => readSafetensors(bad)).toThrow(expect.objectContaining({ code: "S2S_FORMAT", message: expect.stringContaining(bad) }));

    // Writing into a folder that does not exist: S2S_IO, nothing left behind.
    const nowhere = path.join(dir, "no", "such", "m.safetensors");
    const err = await writeSafetensors(nowhere, { a: { dtype: "U8", shape: [1], data: new Uint8Array(1) } }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "S2S_IO", message: expect.stringContaining(nowhere) });
    expect((err as Error).stack).toContain("safetensors.test.ts");
    expect(readdirSync(dir)).toEqual(["bad.safetensors"]);

    // Arrays that disagree with dtype or shape are refused before anything is written.
    const out = path.join(dir, "out.safetensors");
    await expect(writeSafetensors(out, { w: { dtype: "F32", shape: [2], data: new Int32Array(2) } as unknown as SafetensorsTensor }))
      .rejects.toMatchObject({ code: "S2S_DTYPE", message: expect.stringMatching(/tensors\['w'\]\.data to be a Float32Array for dtype F32, got a Int32Array/) });
    await expect(writeSafetensors(out, { w: { dtype: "F32", shape: [3], data: new Float32Array(2) } }))
      .rejects.toMatchObject({ code: "S2S_SHAPE" });
    await expect(writeSafetensors(out, { w: { dtype: "Q4", shape: [1], data: new Uint8Array(1) } as unknown as SafetensorsTensor }))
      .rejects.toMatchObject({ code: "S2S_DTYPE" });
    await expect(writeSafetensors(out, {}, { k: 1 } as unknown as Record<string, string>))
      .rejects.toMatchObject({ code: "S2S_ARGUMENT", message: expect.stringContaining("metadata['k']") });
    expect(readdirSync(dir)).toEqual(["bad.safetensors"]);
  });
});

describe("sharded model folders", () => {
  async function twoShards(folder: string, weightMap?: Record<string, string>): Promise<string> {
    mkdirSync(folder, { recursive: true });
    await writeSafetensors(path.join(folder, "model-00001-of-00002.safetensors"), {
      "wte.weight": { dtype: "F32", shape: [2, 2], data: new Float32Array([1, 2, 3, 4]) },
      "h.0.ln.weight": { dtype: "F32", shape: [2], data: new Float32Array([5, 6]) },
    }, { format: "pt" });
    await writeSafetensors(path.join(folder, "model-00002-of-00002.safetensors"), {
      "h.1.ln.weight": { dtype: "BF16", shape: [2], data: new Uint16Array([0x3f80, 0x4000]) },
    }, { format: "pt", extra: "2" });
    const index = path.join(folder, "model.safetensors.index.json");
    writeFileSync(index, JSON.stringify({
      metadata: { total_size: 28 },
      weight_map: weightMap ?? {
        "wte.weight": "model-00001-of-00002.safetensors",
        "h.0.ln.weight": "model-00001-of-00002.safetensors",
        "h.1.ln.weight": "model-00002-of-00002.safetensors",
      },
    }));
    return index;
  }

  it("merges the shards an index lists", async () => {
    const folder = path.join(dir, "model");
    await twoShards(folder);
    const m = readShardedSafetensors(folder);
    expect(Object.keys(m.tensors).sort()).toEqual(["h.0.ln.weight", "h.1.ln.weight", "wte.weight"]);
    expect(m.files.map((f) => path.basename(f))).toEqual(["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]);
    expect(Array.from(m.tensors["wte.weight"]!.data as Float32Array)).toEqual([1, 2, 3, 4]);
    expect(m.tensors["h.1.ln.weight"]!.dtype).toBe("BF16");
    expect(m.metadata).toEqual({ format: "pt", extra: "2" });
  });

  it("prefers model.safetensors when the folder has one", async () => {
    const folder = path.join(dir, "model");
    await twoShards(folder);
    await writeSafetensors(path.join(folder, "model.safetensors"), { only: { dtype: "U8", shape: [1], data: new Uint8Array(1) } });
    const m = readShardedSafetensors(folder);
    expect(Object.keys(m.tensors)).toEqual(["only"]);
    expect(m.files).toEqual([path.join(folder, "model.safetensors")]);
  });

  it("names the index, shard and tensor when something is wrong", async () => {
    const folder = path.join(dir, "m1");
    let index = await twoShards(folder, { "wte.weight": "model-00001-of-00002.safetensors", "x.weight": "model-00003-of-00003.safetensors" });
    expect(() => readShardedSafetensors(folder)).toThrow(expect.objectContaining({
      code: "S2S_IO",
      message: expect.stringMatching(new RegExp(`${index}: shard 'model-00003-of-00003.safetensors' \\(holding 'x.weight'\\): .*cannot open`)),
    }));

    index = await twoShards(path.join(dir, "m2"), {
      "wte.weight": "model-00001-of-00002.safetensors", "lm_head.weight": "model-00002-of-00002.safetensors",
    });
    expect(() => readShardedSafetensors(path.join(dir, "m2"))).toThrow(
      `[safetensors] ${index}: weight_map puts tensor 'lm_head.weight' in shard 'model-00002-of-00002.safetensors', which has no such tensor`,
    );

    index = await twoShards(path.join(dir, "m3"), {
      "wte.weight": "model-00002-of-00002.safetensors", "h.1.ln.weight": "model-00002-of-00002.safetensors",
      "h.0.ln.weight": "model-00001-of-00002.safetensors",
    });
    expect(() => readShardedSafetensors(path.join(dir, "m3"))).toThrow(
      `[safetensors] ${index}: weight_map puts tensor 'wte.weight' in shard 'model-00002-of-00002.safetensors', but it is in 'model-00001-of-00002.safetensors'`,
    );

    // The same tensor in two shards.
    const m4 = path.join(dir, "m4");
    index = await twoShards(m4);
    await writeSafetensors(path.join(m4, "model-00002-of-00002.safetensors"), {
      "wte.weight": { dtype: "F32", shape: [1], data: new Float32Array(1) },
      "h.1.ln.weight": { dtype: "F32", shape: [1], data: new Float32Array(1) },
    });
    expect(() => readShardedSafetensors(m4)).toThrow(expect.objectContaining({
      code: "S2S_FORMAT",
      message: `[safetensors] ${index}: tensor 'wte.weight' is in both shard 'model-00001-of-00002.safetensors' and shard 'model-00002-of-00002.safetensors'`,
    }));

    // An index that is not one, or that points outside the folder.
    const m5 = path.join(dir, "m5");
    index = await twoShards(m5, { "wte.weight": "../elsewhere.safetensors" });
    expect(() => readShardedSafetensors(m5)).toThrow(expect.objectContaining({
      code: "S2S_FORMAT", message: expect.stringContaining(`${index}: not a safetensors index: weight_map.wte.weight: expected a file name`),
    }));
    writeFileSync(index, "{ not json");
    expect(() => readShardedSafetensors(m5)).toThrow(expect.objectContaining({ code: "S2S_FORMAT", message: expect.stringContaining(`${index}: not valid JSON`) }));
    writeFileSync(index, JSON.stringify({ metadata: {} }));
    expect(() => readShardedSafetensors(m5)).toThrow(expect.objectContaining({ code: "S2S_FORMAT", message: expect.stringContaining("weight_map") }));

    // A corrupt shard: the message names the index, the shard file and the tensor.
    const m6 = path.join(dir, "m6");
    index = await twoShards(m6);
    writeFileSync(path.join(m6, "model-00002-of-00002.safetensors"), Buffer.alloc(4));
    expect(() => readShardedSafetensors(m6)).toThrow(expect.objectContaining({
      code: "S2S_FORMAT",
      message: expect.stringContaining(`${index}: shard 'model-00002-of-00002.safetensors' (holding 'h.1.ln.weight'): ${path.join(m6, "model-00002-of-00002.safetensors")}: file is 4 bytes`),
    }));

    const empty = path.join(dir, "empty");
    mkdirSync(empty);
    expect(() => readShardedSafetensors(empty)).toThrow(expect.objectContaining({ code: "S2S_IO", message: expect.stringContaining(empty) }));
  });
});

// An independent reader and writer (Python's struct + json, no safetensors package) agrees with
// ours byte for byte on values. Skipped where python3 is absent.
const python = spawnSync("python3", ["-c", "import json, struct"]).status === 0;
describe.skipIf(!python)("interop with a plain-Python implementation", () => {
  it("reads what Python writes and Python reads what we write", async () => {
    const fromPy = path.join(dir, "py.safetensors");
    const script = `
import json, struct, sys
w = struct.pack('<4f', 1.0, -2.5, 3.0, 0.25)
ids = struct.pack('<2q', -7, 2**40)
header = {"ids": {"dtype": "I64", "shape": [2], "data_offsets": [0, 16]},
          "w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [16, 32]},
          "__metadata__": {"format": "pt"}}
h = json.dumps(header).encode()
h += b' ' * ((8 - (8 + len(h)) % 8) % 8)
open(sys.argv[1], 'wb').write(struct.pack('<Q', len(h)) + h + ids + w)
`;
    expect(spawnSync("python3", ["-c", script, fromPy]).status).toBe(0);
    const got = readSafetensors(fromPy);
    expect(got.metadata).toEqual({ format: "pt" });
    expect(Array.from(got.tensors.w!.data as Float32Array)).toEqual([1, -2.5, 3, 0.25]);
    expect(Array.from(got.tensors.ids!.data as BigInt64Array)).toEqual([-7n, 2n ** 40n]);

    const ours = path.join(dir, "ours.safetensors");
    await writeSafetensors(ours, {
      w: { dtype: "F32", shape: [3], data: new Float32Array([0.5, -1, 8]) },
      "name é": { dtype: "I32", shape: [], data: new Int32Array([-3]) },
    }, { k: "v\n" });
    const reader = `
import json, struct, sys
b = open(sys.argv[1], 'rb').read()
n = struct.unpack('<Q', b[:8])[0]
h = json.loads(b[8:8 + n].decode('utf-8'))
assert (8 + n) % 8 == 0
d = b[8 + n:]
w = h['w']; s = h['name é']
print(json.dumps({"meta": h['__metadata__'],
  "w": list(struct.unpack('<3f', d[w['data_offsets'][0]:w['data_offsets'][1]])),
  "s": struct.unpack('<i', d[s['data_offsets'][0]:s['data_offsets'][1]])[0], "sshape": s['shape']}))
`;
    const r = spawnSync("python3", ["-c", reader, ours], { encoding: "utf8" });
    expect(r.stderr).toBe("");
    expect(JSON.parse(r.stdout)).toEqual({ meta: { k: "v\n" }, w: [0.5, -1, 8], s: -3, sshape: [] });
  });
});

// Files written by the reference implementation (Python safetensors, in the PyTorch fixture
// folders) read back and re-written by us give the identical bytes: same header order, JSON
// spelling, padding and data layout. Skipped where the fixture folders are absent.
const fixtures = path.join(path.dirname(fileURLToPath(import.meta.url)), "fixtures", "models");
const fixtureFolders = existsSync(fixtures)
  ? readdirSync(fixtures, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name)
  : [];
describe.skipIf(fixtureFolders.length === 0)("reference-written files", () => {
  it.each(fixtureFolders)("%s re-writes byte for byte", async (name) => {
    const { files } = readShardedSafetensors(path.join(fixtures, name));
    for (const file of files) {
      const contents = readSafetensors(file);
      const out = path.join(dir, path.basename(file));
      await writeSafetensors(out, contents.tensors, contents.metadata);
      expect(readFileSync(out).equals(readFileSync(file)), file).toBe(true);
    }
  });
});
