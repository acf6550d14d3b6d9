// The addon loads, describes itself, and its errors reach JS as Errors with codes.
import { describe, expect, it } from "vitest";
import { Worker } from "node:worker_threads";
import { isNativeError, matmul, nativeInfo, setIsa, setNumThreads, Tensor } from "../src/index.js";

describe("native addon", () => {
  it("loads and reports build and CPU information", () => {
    const info = nativeInfo();
    expect(info.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(info.backends).toContain("cpu");
    expect(info.supportedIsas[0]).toBe("scalar");
    expect(info.supportedIsas).toContain(info.activeIsa);
    expect(info.threads).toBeGreaterThanOrEqual(1);
    expect(info.kernels.gemm_f32?.length).toBeGreaterThan(0);
    expect(Object.keys(info.kernels)).toEqual(expect.arrayContaining(["gemm_f32", "gemm_bf16", "activations"]));
    expect(info.addonPath).toMatch(/\.node$/);
  });

  it("sets threads and kernel paths, rejecting bad values with a code", () => {
    const before = nativeInfo();
    setNumThreads(1);
    expect(nativeInfo().threads).toBe(1);
    setNumThreads(before.threads);
    expect(() => setNumThreads(0)).toThrow(expect.objectContaining({ code: "S2S_ARGUMENT" }));
    setIsa("scalar");
    expect(nativeInfo().activeIsa).toBe("scalar");
    setIsa(before.bestIsa);
    expect(() => setIsa("sse9" as never)).toThrow(/expected one of/);
  });

  it("rejects wrong shapes and dtypes with an Error carrying a code and a clear message", async () => {
    const a = Tensor.zeros([2, 3]);
    const b = Tensor.zeros([2, 3]);
    const err = await matmul(a, b).catch((e: unknown) => e);
    expect(isNativeError(err)).toBe(true);
    expect(err).toMatchObject({ code: "S2S_SHAPE" });
    expect((err as Error).message).toBe(
      "[matmul] expected inner dimensions to agree, got op(a) (2, 3) and op(b) (2, 3)",
    );
    // The stack points at this file, not at the native worker.
    expect((err as Error).stack).toContain("addon.test.ts");

    const bf = Tensor.zeros([3, 2], "bfloat16");
    await expect(matmul(a, bf)).rejects.toMatchObject({ code: "S2S_DTYPE" });
    const f16 = Tensor.zeros([3, 2], "float16");
    await expect(matmul(Tensor.zeros([2, 3], "float16"), f16)).rejects.toMatchObject({ code: "S2S_DTYPE" });
    // A malformed tensor object is caught at the boundary.
    const bogus = { data: new Float32Array(5), shape: [2, 3], dtype: "float32" } as unknown as Tensor;
    await expect(matmul(bogus, b, { transB: true })).rejects.toMatchObject({ code: "S2S_SHAPE" });
    const wrongArray = { data: new Float64Array(6), shape: [2, 3], dtype: "float32" } as unknown as Tensor;
    await expect(matmul(wrongArray, b, { transB: true })).rejects.toMatchObject({ code: "S2S_DTYPE" });
  });

  it("loads in a worker thread too (context-aware addon)", async () => {
    const code = `
      const { parentPort } = require("node:worker_threads");
      const addon = require(${JSON.stringify(nativeInfo().addonPath)});
      parentPort.postMessage(addon.info().version);
    `;
    const version = await new Promise((resolve, reject) => {
      const w = new Worker(code, { eval: true });
      w.once("message", resolve);
      w.once("error", reject);
    });
    expect(version).toBe(nativeInfo().version);
  });
});
