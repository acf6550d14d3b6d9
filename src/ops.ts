// Single native ops from TypeScript, each a Promise run off the JS thread. Outputs and saved
// statistics are allocated here; the maths is all native.
import { addon, withCallerStack, type AdamWOptions, type CrossEntropyOptions } from "../bindings/native.js";
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

export interface AttentionArgs {
  /** Query i attends keys j <= i + (Tk - Tq) (ends aligned, as with a KV cache). */
  causal?: boolean;
  /** Multiplies q.k; default 1/sqrt(D). T5 uses 1. */
  scale?: number;
  /** Additive bias (Hq,Tq,Tk), broadcast over the batch (T5 relative positions). */
  bias?: F32;
  /** (B,Tk): 1 = attend, 0 = padding. */
  keyMask?: Uint8Array;
}

/**
 * Scaled-dot-product attention, blockwise (memory linear in sequence length).
 * q (B,Tq,Hq,D), k and v (B,Tk,Hkv,D) with Hq a multiple of Hkv; returns out (B,Tq,Hq,D) and
 * the per-row log-sum-exp (B,Hq,Tq). Rows with no allowed key give zeros.
 */
export async function attention(q: F32, k: F32, v: F32, args: AttentionArgs = {}) {
  const [b = 0, tq = 0, hq = 0] = q.shape;
  const out = Tensor.zeros(q.shape);
  const lse = Tensor.zeros([b, hq, tq]);
  const options = { causal: args.causal ?? false, ...(args.scale === undefined ? {} : { scale: args.scale }) };
  await withCallerStack(() =>
    addon().attentionForward(out, lse, q, k, v, args.bias ?? null, args.keyMask ?? null, options),
  );
  return { out, lse };
}

/**
 * Fused log-softmax + cross-entropy over logits (N,V) with labels (N,); labels equal to
 * ignoreIndex (-100) are not counted. Returns the loss (mean over counted tokens by default), the
 * count, and dlogits for dloss = 1 when `withGrad` is set.
 */
export async function crossEntropy(logits: F32, labels: Int32Array,
                                   options: CrossEntropyOptions & { withGrad?: boolean } = {}) {
  const { withGrad = false, ...ce } = options;
  const lse = Tensor.zeros([logits.shape[0] ?? 0]);
  const { loss, count } = await withCallerStack(() => addon().crossEntropyForward(lse, logits, labels, ce));
  let dlogits: F32 | undefined;
  if (withGrad) {
    const grad = Tensor.zeros(logits.shape);
    await withCallerStack(() => addon().crossEntropyBackward(grad, logits, lse, labels, 1, ce));
    dlogits = grad;
  }
  return { loss, count, dlogits };
}

/** One AdamW step (torch.optim.AdamW semantics), in place on param and the two moments. */
export async function adamwUpdate(param: F32, grad: F32, expAvg: F32, expAvgSq: F32, step: number,
                                  options: AdamWOptions = {}): Promise<void> {
  await withCallerStack(() => addon().adamwUpdate(param, grad, expAvg, expAvgSq, step, options));
}
