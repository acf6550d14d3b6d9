// matmul from TypeScript: a Promise that settles when the native GEMM, run off the JS thread,
// has written its output.
import { addon, withCallerStack, type MatmulOptions } from "../bindings/native.js";
import { Tensor } from "./tensor.js";

export interface MatmulArgs extends MatmulOptions {
  /** Write into (and with beta != 0, accumulate into) this float32 tensor instead of a new one. */
  out?: Tensor<"float32">;
}

/**
 * out = alpha * op(a) * op(b) + beta * out, op(x) = x or x^T. a and b are both float32 or both
 * bfloat16; the result is float32. Do not modify a, b or out until the Promise settles.
 */
export async function matmul(a: Tensor, b: Tensor, args: MatmulArgs = {}): Promise<Tensor<"float32">> {
  const { out, ...options } = args;
  const m = options.transA ? a.shape[1] : a.shape[0];
  const n = options.transB ? b.shape[0] : b.shape[1];
  const c = out ?? Tensor.zeros([m ?? 0, n ?? 0]);
  await withCallerStack(() => addon().matmul(c, a, b, options));
  return c;
}
