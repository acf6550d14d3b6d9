// GEMM through N-API against a TypeScript reference, and proof that it runs off the JS thread.
import { describe, expect, it } from "vitest";
import { matmul, Tensor } from "../src/index.js";
import { maxDiff, randomTensor } from "./helpers.js";

/** C = alpha op(A) op(B) + beta C in double precision: the reference. */
function referenceMatmul(a: Tensor<"float32">, b: Tensor<"float32">, transA: boolean, transB: boolean,
                         alpha: number, beta: number, c0: Float32Array): Float64Array {
  const [ar, ac] = a.shape as [number, number];
  const [br, bc] = b.shape as [number, number];
  const m = transA ? ac : ar, k = transA ? ar : ac, n = transB ? br : bc;
  const out = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let acc = 0;
      for (let p = 0; p < k; p++) {
        const x = transA ? a.data[p * ac + i]! : a.data[i * ac + p]!;
        const y = transB ? b.data[j * bc + p]! : b.data[p * bc + j]!;
        acc += x * y;
      }
      out[i * n + j] = alpha * acc + beta * c0[i * n + j]!;
    }
  }
  return out;
}

function bf16Bits(x: number): number {
  // Round to nearest even on the float32 bits (test-side conversion only).
  const u = new Uint32Array(new Float32Array([x]).buffer)[0]!;
  return ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
}

describe("matmul", () => {
  for (const [transA, transB] of [[false, false], [false, true], [true, false], [true, true]] as const) {
    it(`matches the reference for transA=${transA} transB=${transB}, alpha/beta`, async () => {
      const m = 37, n = 19, k = 45;
      const a = randomTensor(transA ? [k, m] : [m, k], 1);
      const b = randomTensor(transB ? [n, k] : [k, n], 2);
      const c = randomTensor([m, n], 3);
      const c0 = Float32Array.from(c.data);
      await matmul(a, b, { transA, transB, alpha: 0.5, beta: 2, out: c });
      const ref = referenceMatmul(a, b, transA, transB, 0.5, 2, c0);
      expect(maxDiff(c.data, ref)).toBeLessThan(1e-5);
    });
  }

  it("multiplies bfloat16 operands with float32 accumulation", async () => {
    const m = 17, n = 33, k = 65;
    const af = randomTensor([m, k], 4), bf = randomTensor([n, k], 5);
    const a = new Tensor(Uint16Array.from(af.data, bf16Bits), [m, k], "bfloat16");
    const b = new Tensor(Uint16Array.from(bf.data, bf16Bits), [n, k], "bfloat16");
    // The reference sees exactly the bf16-rounded values.
    const widen = (t: Tensor) =>
      new Tensor(new Float32Array(Uint32Array.from(t.data, (h) => h << 16).buffer), t.shape, "float32");
    const c = await matmul(a, b, { transB: true });
    const ref = referenceMatmul(widen(a), widen(b), false, true, 1, 0, new Float32Array(m * n));
    expect(maxDiff(c.data, ref)).toBeLessThan(1e-4);
  });

  it("does not block the event loop while a long GEMM runs", async () => {
    const size = 1024;
    const a = randomTensor([size, size], 6), b = randomTensor([size, size], 7);
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    const started = performance.now();
    let rounds = 0;
    // Keep GEMMs in flight for at least 200 ms, however fast this machine is.
    while (performance.now() - started < 200 || rounds === 0) {
      await matmul(a, b);
      rounds++;
    }
    clearInterval(timer);
    const elapsed = performance.now() - started;
    // A blocked loop would see ~0 ticks (each await gives at most one). Require many.
    expect(ticks).toBeGreaterThan(Math.min(20, elapsed / 20));
    expect(ticks).toBeGreaterThan(rounds);
  });

  it("runs concurrent calls without mixing their outputs", async () => {
    const a = randomTensor([64, 64], 8), b = randomTensor([64, 64], 9);
    const ref = await matmul(a, b);
    const results = await Promise.all(Array.from({ length: 8 }, () => matmul(a, b)));
    for (const r of results) expect(r.data).toEqual(ref.data);
  });
});
