// Single native ops from TypeScript, each a Promise run off the JS thread. Outputs and saved
// statistics are allocated here; the maths is all native.
import { addon, withCallerStack } from "../bindings/native.js";
import { Tensor } from "./tensor.js";

type F32 = Tensor<"float32">;

function rowsOf(t: Tensor): number {
  return t.shape.length === 0 ? 1 : t.numel / (t.shape[t.shape.length - 1] ?? 1);
}

/** PyTorch LayerNorm over the last dimension; also returns the mean and rstd the backward needs. */
export async function layerNorm(inp: F32, weight: F32, bias: F32 | null = null, eps = 1e-5) {
  const out = Tensor.zeros(inp.shape);
  const mean = Tensor.zeros([rowsOf(inp)]);
  const rstd = Tensor.zeros([rowsOf(inp)]);
  await withCallerStack(() => addon().layerNormForward(out, mean, rstd, inp, weight, bias, eps));
  return { out, mean, rstd };
}

/** Gradients of layerNorm for the upstream gradient dout. */
export async function layerNormBackward(dout: F32, inp: F32, weight: F32, mean: F32, rstd: F32,
                                        { withBias = true } = {}) {
  const dinp = Tensor.zeros(inp.shape);
  const dweight = Tensor.zeros(weight.shape);
  const dbias = withBias ? Tensor.zeros(weight.shape) : null;
  await withCallerStack(() => addon().layerNormBackward(dinp, dweight, dbias, dout, inp, weight, mean, rstd));
  return { dinp, dweight, dbias };
}

/** Softmax over the last dimension. */
export async function softmax(inp: F32): Promise<F32> {
  const out = Tensor.zeros(inp.shape);
  await withCallerStack(() => addon().softmaxForward(out, inp));
  return out;
}

/** GELU, tanh-approximated (HF gelu_new) or exact (erf). */
export async function gelu(inp: F32, approximate: "tanh" | "none" = "tanh"): Promise<F32> {
  const out = Tensor.zeros(inp.shape);
  await withCallerStack(() => addon().geluForward(out, inp, approximate));
  return out;
}
