// Single ops through N-API against TypeScript references (double precision).
import { describe, expect, it } from "vitest";
import { gelu, layerNorm, layerNormBackward, softmax, Tensor } from "../src/index.js";
import { maxDiff, randomTensor } from "./helpers.js";

/** LayerNorm forward and backward in double, rows of length c. */
function layerNormReference(x: Float32Array, w: Float32Array, b: Float32Array, dy: Float32Array, c: number, eps: number) {
  const n = x.length / c;
  const y = new Float64Array(x.length), dx = new Float64Array(x.length);
  const dw = new Float64Array(c), db = new Float64Array(c);
  for (let r = 0; r < n; r++) {
    const row = x.subarray(r * c, (r + 1) * c);
    const mean = row.reduce((s, v) => s + v, 0) / c;
    const variance = row.reduce((s, v) => s + (v - mean) ** 2, 0) / c;
    const rstd = 1 / Math.sqrt(variance + eps);
    let sumG = 0, sumGX = 0;
    for (let j = 0; j < c; j++) {
      const xhat = (row[j]! - mean) * rstd;
      y[r * c + j] = xhat * w[j]! + b[j]!;
      const g = dy[r * c + j]! * w[j]!;
      sumG += g;
      sumGX += g * xhat;
      dw[j]! += dy[r * c + j]! * xhat;
      db[j]! += dy[r * c + j]!;
    }
    for (let j = 0; j < c; j++) {
      const xhat = (row[j]! - mean) * rstd;
      const g = dy[r * c + j]! * w[j]!;
      dx[r * c + j] = rstd * (g - sumG / c - (xhat * sumGX) / c);
    }
  }
  return { y, dx, dw, db };
}

describe("ops through N-API", () => {
  it("layerNorm forward and backward match the reference", async () => {
    const [n, c] = [13, 37];
    const x = randomTensor([n, c], 1, 2), w = randomTensor([c], 2), b = randomTensor([c], 3);
    const dy = randomTensor([n, c], 4);
    const { out, mean, rstd } = await layerNorm(x, w, b, 1e-5);
    const grads = await layerNormBackward(dy, x, w, mean, rstd);
    const ref = layerNormReference(x.data, w.data, b.data, dy.data, c, 1e-5);
    expect(maxDiff(out.data, ref.y)).toBeLessThan(1e-5);
    expect(maxDiff(grads.dinp.data, ref.dx)).toBeLessThan(1e-4);
    expect(maxDiff(grads.dweight.data, ref.dw)).toBeLessThan(1e-4);
    expect(maxDiff(grads.dbias!.data, ref.db)).toBeLessThan(1e-4);
  });

  it("softmax matches the reference and each row sums to 1", async () => {
    const x = randomTensor([9, 50], 5, 10);
    const y = await softmax(x);
    for (let r = 0; r < 9; r++) {
      const row = Array.from(x.data.subarray(r * 50, (r + 1) * 50));
      const m = Math.max(...row);
      const e = row.map((v) => Math.exp(v - m));
      const s = e.reduce((a, v) => a + v, 0);
      expect(maxDiff(y.data.subarray(r * 50, (r + 1) * 50), e.map((v) => v / s))).toBeLessThan(1e-6);
    }
  });

  it("gelu (tanh and exact) matches the formulas", async () => {
    const x = randomTensor([257], 6, 5);
    const tanhRef = Array.from(x.data, (v) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3))));
    expect(maxDiff((await gelu(x, "tanh")).data, tanhRef)).toBeLessThan(1e-5);
    // erf from its Taylor/continued behaviour is not in JS's Math: check odd symmetry and limits.
    const exact = await gelu(Tensor.fromArray([-8, 0, 8, 1], [4]), "none");
    expect(exact.data[0]).toBeCloseTo(0, 6);
    expect(exact.data[1]).toBe(0);
    expect(exact.data[2]).toBeCloseTo(8, 5);
    expect(exact.data[3]).toBeCloseTo(0.8413447460685429, 6); // 0.5 * (1 + erf(1/sqrt 2))
  });

  it("shape errors name the op and argument and carry a code", async () => {
    const x = randomTensor([4, 8], 7);
    await expect(layerNorm(x, randomTensor([7], 8))).rejects.toMatchObject({
      code: "S2S_SHAPE",
      message: expect.stringContaining("[layernorm]"),
    });
    await expect(gelu(x, "cubic" as never)).rejects.toMatchObject({ code: "S2S_ARGUMENT" });
  });
});
