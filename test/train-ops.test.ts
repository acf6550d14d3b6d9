// Attention, cross-entropy and AdamW through N-API against TypeScript references.
import { describe, expect, it } from "vitest";
import { adamwUpdate, attention, crossEntropy, Tensor } from "../src/index.js";
import { maxDiff, randomTensor } from "./helpers.js";

/** Naive attention: full score matrix per head, in double. */
function attentionReference(q: Tensor<"float32">, k: Tensor<"float32">, v: Tensor<"float32">,
                            causal: boolean, mask?: Uint8Array): Float64Array {
  const [B, Tq, Hq, D] = q.shape as [number, number, number, number];
  const [, Tk, Hkv] = k.shape as [number, number, number];
  const out = new Float64Array(q.numel);
  const scale = 1 / Math.sqrt(D);
  for (let b = 0; b < B; b++) for (let h = 0; h < Hq; h++) for (let i = 0; i < Tq; i++) {
    const g = Math.floor(h / (Hq / Hkv));
    const scores: number[] = [];
    for (let j = 0; j < Tk; j++) {
      const allowed = (!causal || j <= i + Tk - Tq) && (!mask || mask[b * Tk + j] === 1);
      let s = 0;
      for (let d = 0; d < D; d++) s += q.data[((b * Tq + i) * Hq + h) * D + d]! * k.data[((b * Tk + j) * Hkv + g) * D + d]!;
      scores.push(allowed ? s * scale : -Infinity);
    }
    const m = Math.max(...scores);
    if (m === -Infinity) continue;
    const e = scores.map((s) => Math.exp(s - m));
    const z = e.reduce((x, y) => x + y, 0);
    for (let d = 0; d < D; d++) {
      let acc = 0;
      for (let j = 0; j < Tk; j++) acc += (e[j]! / z) * v.data[((b * Tk + j) * Hkv + g) * D + d]!;
      out[((b * Tq + i) * Hq + h) * D + d] = acc;
    }
  }
  return out;
}

describe("training ops through N-API", () => {
  it("attention (causal, grouped-query, padding mask) matches a naive reference", async () => {
    const [B, T, Hq, Hkv, D] = [2, 70, 4, 2, 16];
    const q = randomTensor([B, T, Hq, D], 1), k = randomTensor([B, T, Hkv, D], 2), v = randomTensor([B, T, Hkv, D], 3);
    const mask = new Uint8Array(B * T).fill(1);
    mask.fill(0, 0, 5); // left padding in the first sequence
    for (const causal of [false, true]) {
      const { out } = await attention(q, k, v, { causal, keyMask: mask });
      expect(maxDiff(out.data, attentionReference(q, k, v, causal, mask))).toBeLessThan(1e-5);
    }
  });

  it("attention rejects a mask of the wrong size with a code", async () => {
    const q = randomTensor([1, 4, 2, 8], 4);
    await expect(attention(q, q, q, { keyMask: new Uint8Array(3) })).rejects.toMatchObject({ code: "S2S_SHAPE" });
  });

  it("cross-entropy: mean over counted tokens, ignore_index, and its gradient", async () => {
    const [N, V] = [6, 11];
    const logits = randomTensor([N, V], 5, 3);
    const labels = Int32Array.from([3, -100, 0, 10, -100, 7]);
    const { loss, count, dlogits } = await crossEntropy(logits, labels, { withGrad: true });
    let total = 0;
    const grad = new Float64Array(N * V);
    for (let r = 0; r < N; r++) {
      const row = Array.from(logits.data.subarray(r * V, (r + 1) * V));
      const m = Math.max(...row);
      const lse = m + Math.log(row.reduce((s, x) => s + Math.exp(x - m), 0));
      if (labels[r] === -100) continue;
      total += lse - row[labels[r]!]!;
      for (let j = 0; j < V; j++) grad[r * V + j] = (Math.exp(row[j]! - lse) - (j === labels[r] ? 1 : 0)) / 4;
    }
    expect(count).toBe(4);
    expect(loss).toBeCloseTo(total / 4, 5);
    expect(maxDiff(dlogits!.data, grad)).toBeLessThan(1e-6);
    const sum = await crossEntropy(logits, labels, { reduction: "sum" });
    expect(sum.loss).toBeCloseTo(total, 4);
    await expect(crossEntropy(logits, Int32Array.from([0, 1, 2, 3, 4, 11]))).rejects.toMatchObject({ code: "S2S_ARGUMENT" });
  });

  it("AdamW follows torch.optim.AdamW's update rule", async () => {
    const p = randomTensor([33], 6), g = randomTensor([33], 7);
    const m = Tensor.zeros([33]), v = Tensor.zeros([33]);
    const p0 = Array.from(p.data), g0 = Array.from(g.data);
    const [lr, b1, b2, eps, wd] = [1e-2, 0.9, 0.99, 1e-8, 0.1];
    await adamwUpdate(p, g, m, v, 1, { lr, beta1: b1, beta2: b2, eps, weightDecay: wd });
    const expected = p0.map((x, i) => {
      const decayed = x * (1 - lr * wd);
      const mh = ((1 - b1) * g0[i]!) / (1 - b1);
      const vh = ((1 - b2) * g0[i]! ** 2) / (1 - b2);
      return decayed - (lr * mh) / (Math.sqrt(vh) + eps);
    });
    expect(maxDiff(p.data, expected)).toBeLessThan(1e-6);
    await expect(adamwUpdate(p, g, m, v, 0)).rejects.toMatchObject({ code: "S2S_ARGUMENT" });
  });
});
