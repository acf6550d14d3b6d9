// Shared by the vitest files: seeded random tensors and error measures.
import { Tensor } from "../src/index.js";

/** A float32 tensor of uniform values in [-scale, scale), the same for the same seed. */
export function randomTensor(shape: number[], seed: number, scale = 1): Tensor<"float32"> {
  let s = seed >>> 0;
  const t = Tensor.zeros(shape);
  for (let i = 0; i < t.numel; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    t.data[i] = (s / 2 ** 32 - 0.5) * 2 * scale;
  }
  return t;
}

/** max |a[i] - b[i]| */
export function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
  return worst;
}
