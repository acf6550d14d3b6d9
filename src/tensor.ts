// Tensor: a typed array plus shape and dtype, the value that crosses into the native core.
// Holds no math; it only checks that data and shape agree.
import type { DTypeName, NativeTensor } from "../bindings/native.js";

export type { DTypeName };

type Storage<D extends DTypeName> = D extends "float32" ? Float32Array : Uint16Array;

export class Tensor<D extends DTypeName = DTypeName> implements NativeTensor {
  readonly data: Storage<D>;
  readonly shape: readonly number[];
  readonly dtype: D;

  constructor(data: Storage<D>, shape: readonly number[], dtype: D) {
    const numel = shapeNumel(shape);
    if (data.length !== numel) {
      throw new RangeError(
        `Tensor: expected ${numel} elements for shape [${shape.join(", ")}], got ${data.length}`,
      );
    }
    const wantFloat = dtype === "float32";
    if (wantFloat !== data instanceof Float32Array) {
      throw new TypeError(
        `Tensor: dtype ${dtype} expects a ${wantFloat ? "Float32Array" : "Uint16Array"}`,
      );
    }
    this.data = data;
    this.shape = Object.freeze([...shape]);
    this.dtype = dtype;
  }

  static zeros(shape: readonly number[]): Tensor<"float32">;
  static zeros<D extends DTypeName>(shape: readonly number[], dtype: D): Tensor<D>;
  static zeros(shape: readonly number[], dtype: DTypeName = "float32"): Tensor {
    const n = shapeNumel(shape);
    return dtype === "float32"
      ? new Tensor(new Float32Array(n), shape, "float32")
      : new Tensor(new Uint16Array(n), shape, dtype);
  }

  /** A float32 tensor holding a copy of `values`. */
  static fromArray(values: ArrayLike<number>, shape: readonly number[]): Tensor<"float32"> {
    return new Tensor(Float32Array.from(values), shape, "float32");
  }

  get numel(): number {
    return this.data.length;
  }
}

export function shapeNumel(shape: readonly number[]): number {
  let n = 1;
  for (const [i, s] of shape.entries()) {
    if (!Number.isSafeInteger(s) || s < 0) {
      throw new RangeError(`Tensor: expected shape[${i}] to be a non-negative integer, got ${s}`);
    }
    n *= s;
  }
  return n;
}
