// The device option and what `doctor` says about GPUs: a CPU-only addon says so, asking for
// device "cuda" without a usable GPU fails with a clear, coded error, and the GPU rows format
// every case. (Whole models on a GPU: native/tests/test_models_device.cpp and test_cuda_models.)
import { describe, expect, it } from "vitest";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { formatDoctor, Model, nativeInfo, runDoctor } from "../src/index.js";
import { loadModelForTraining } from "../src/train/load-model.js";
import { train } from "../src/train/trainer.js";
import { config, dataset, makeExamples, tempDir } from "./train-helpers.js";

const gpt2 = path.resolve(import.meta.dirname, "fixtures/models/gpt2");
const cli = path.resolve(import.meta.dirname, "../dist/src/cli/main.js");
const gpuUsableHere = () => nativeInfo().cuda.usable === true;

describe("device selection", () => {
  it("reports the CUDA backend in nativeInfo", () => {
    const { cuda, backends } = nativeInfo();
    expect(typeof cuda.built).toBe("boolean");
    expect(backends.includes("cuda")).toBe(cuda.built);
    if (!cuda.built) {
      expect(cuda.devices).toEqual([]);
      expect(cuda.runtimeVersion).toBe(0);
      expect(cuda.problem).toMatch(/not built/);
    }
  });

  // Tests below that expect device "cuda" to be refused run where no GPU is usable (CI, the
  // development machines); on a GPU machine "auto" and "cuda" load onto it.
  const gpuUsable = gpuUsableHere();

  it("loads on the CPU with device 'cpu', and with 'auto' when no GPU is usable", async () => {
    for (const device of ["cpu", "auto"] as const) {
      const model = await Model.load(gpt2, { device });
      expect(model.info().parameters).toBeGreaterThan(0);
      expect(model.info().device).toBe(device === "auto" && gpuUsable ? "cuda:0" : "cpu");
    }
  });

  it.skipIf(gpuUsable)("rejects device 'cuda' with S2S_DEVICE and says why", async () => {
    const err = await Model.load(gpt2, { device: "cuda" }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "S2S_DEVICE" });
    const message = (err as Error).message;
    expect(message).toMatch(/^\[loadModel\] /);
    if (!nativeInfo().cuda.built) expect(message).toContain("CUDA backend not built into this binary");
    else expect(message).toContain("no usable CUDA device");
  });

  it.skipIf(gpuUsable)("applies to Model.create too", async () => {
    const config = JSON.parse(readFileSync(path.join(gpt2, "config.json"), "utf8"));
    expect((await Model.create(config, { device: "cpu" })).info().parameters).toBeGreaterThan(0);
    await expect(Model.create(config, { device: "cuda" })).rejects.toMatchObject({ code: "S2S_DEVICE" });
  });

  it("rejects an unknown device name", async () => {
    for (const bad of ["gpu", "cuda:", "cuda:x", "cuda:-1", "CUDA"]) {
      await expect(Model.load(gpt2, { device: bad as never })).rejects.toMatchObject({
        code: "S2S_ARGUMENT",
        message: `[loadModel] expected device 'auto', 'cpu', 'cuda' or 'cuda:N' (N a GPU index), got '${bad}'`,
      });
    }
  });

  it("the --device flag takes cuda:N and names what it takes otherwise", () => {
    const run = (device: string) =>
      spawnSync(process.execPath, [cli, "generate", "--model", gpt2, "--prompt", "hi", "--max-new-tokens", "1", "--device", device],
                { encoding: "utf8" });
    const bad = run("gpu");
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toContain("--device: expected 'auto', 'cpu', 'cuda' or 'cuda:N' (N a GPU index, e.g. cuda:1), got 'gpu'");
    if (!gpuUsable) {
      const second = run("cuda:1");
      expect(second.status).not.toBe(0);
      expect(second.stderr).toContain("S2S_DEVICE");
    }
  });

  it.skipIf(gpuUsable)("names the GPU asked for when it cannot load there", async () => {
    const err = await Model.load(gpt2, { device: "cuda:1" }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "S2S_DEVICE" });
    if (!nativeInfo().cuda.built) expect((err as Error).message).toContain("device 'cuda:1' was asked for");
  });
});

describe("device in the training config", () => {
  it.skipIf(gpuUsableHere())("defaults to auto, trains on the CPU, and refuses cuda with S2S_DEVICE", async () => {
    const dir = tempDir();
    expect(config("gpt2", dir).model.device).toBe("auto");
    const model = await loadModelForTraining(config("gpt2", dir, ["model.device=cpu", "model.method=full"]));
    expect(model.info().trainableParameters).toBeGreaterThan(0);
    await expect(loadModelForTraining(config("gpt2", dir, ["model.device=cuda"]))).rejects.toMatchObject({ code: "S2S_DEVICE" });
    expect(() => config("gpt2", dir, ["model.device=gpu"])).toThrow(/model\.device/);
    expect(config("gpt2", dir, ["model.device=cuda:1"]).model.device).toBe("cuda:1");
    for (const bad of ["cuda:x", "cuda:-1", "cuda1"]) {
      expect(() => config("gpt2", dir, [`model.device=${bad}`])).toThrow(/model\.device.*'cuda:N'/s);
    }
    await expect(loadModelForTraining(config("gpt2", dir, ["model.device=cuda:1"]))).rejects.toMatchObject({ code: "S2S_DEVICE" });
  });

  it.skipIf(gpuUsableHere())("cuda with generation metrics is refused for the missing GPU only, not for generation", async () => {
    const dir = tempDir();
    const cfg = config("gpt2", dir, ["model.device=cuda", "train.eval_metrics=[em]", "train.max_steps=1"]);
    await expect(train({ config: cfg, data: dataset("causal", makeExamples("causal", 4, 1), makeExamples("causal", 2, 2)) }))
      .rejects.toMatchObject({ code: "S2S_DEVICE" });
  });
});

describe("doctor GPU rows", () => {
  const base = runDoctor();
  const withCuda = (cuda: typeof base.native.cuda) => formatDoctor({ ...base, native: { ...base.native, cuda } });

  it("says 'not built' on a CPU-only binary, and the CLI prints the gpu row", () => {
    const text = withCuda({ built: false, runtimeVersion: 0, driverVersion: 0, devices: [], problem: "not built" });
    expect(text).toMatch(/^gpu\s+CUDA backend not built into this binary \(CPU only\)$/m);
    const r = spawnSync(process.execPath, [cli, "doctor"], { encoding: "utf8" });
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^gpu\s+CUDA backend/m);
  });

  it("names each device with its memory, or why there is none", () => {
    const text = withCuda({
      built: true, runtimeVersion: 13000, driverVersion: 13000,
      devices: [{ index: 0, name: "NVIDIA H100 80GB HBM3", computeCapability: "9.0", multiprocessors: 132,
                  totalBytes: 85520809984, freeBytes: 84942979072 }],
    });
    expect(text).toMatch(/^gpu\s+CUDA backend built \(runtime 13\.0, driver supports 13\.0\)$/m);
    expect(text).toMatch(/^gpu 0\s+NVIDIA H100 80GB HBM3 \(compute 9\.0, 132 SMs, 79\.6 GiB, 79\.1 GiB free\)$/m);
    const none = withCuda({ built: true, runtimeVersion: 12040, driverVersion: 0, devices: [],
                            problem: "cudaErrorNoDevice: no CUDA-capable device is detected" });
    expect(none).toMatch(/^gpu\s+CUDA backend built \(runtime 12\.4, no driver\); no usable device: cudaErrorNoDevice/m);
  });

  it("names the cuBLASLt loaded at run time, and why a present GPU cannot be used", () => {
    const h100 = { index: 0, name: "NVIDIA H100 80GB HBM3", computeCapability: "9.0", multiprocessors: 132,
                   totalBytes: 85520809984, freeBytes: 84942979072, supported: true };
    const found = withCuda({ built: true, runtimeVersion: 13000, driverVersion: 13000, devices: [h100], usable: true,
                             minComputeCapability: "8.0",
                             cublasLt: { library: "/venv/nvidia/cu13/lib/libcublasLt.so.13", version: "13.1.0" } });
    expect(found).toMatch(/^cublasLt\s+\/venv\/nvidia\/cu13\/lib\/libcublasLt\.so\.13 \(13\.1\.0\)$/m);
    expect(found).not.toMatch(/gpu unusable/);
    // No cuBLASLt: said once, on its own row.
    const missing = "[cuda.cublasLt] cuBLASLt (libcublasLt.so.13 or .12) ... was not found";
    const noLt = withCuda({ built: true, runtimeVersion: 13000, driverVersion: 13000, devices: [h100], usable: false,
                            minComputeCapability: "8.0", cublasLtProblem: missing, problem: missing });
    expect(noLt).toMatch(/^cublasLt\s+not found: \[cuda\.cublasLt\]/m);
    expect(noLt).not.toMatch(/gpu unusable/);
    // A GPU older than the kernels: the device row and the reason say so.
    const old = withCuda({ built: true, runtimeVersion: 13000, driverVersion: 13000, usable: false,
                           devices: [{ ...h100, name: "Tesla T4", computeCapability: "7.5", supported: false }],
                           minComputeCapability: "8.0",
                           cublasLt: { library: "/usr/local/cuda/lib64/libcublasLt.so.13", version: "13.0.0" },
                           problem: "GPU 0 (Tesla T4) has compute capability 7.5; this build has kernels for 8.0 and newer" });
    expect(old).toMatch(/^gpu 0\s+Tesla T4 .*: not supported, the kernels need compute 8\.0\+$/m);
    expect(old).toMatch(/^gpu unusable\s+GPU 0 \(Tesla T4\) has compute capability 7\.5/m);
    expect(old).not.toMatch(/gpu choice/);
    // Two GPUs: each named, and how to pick the second.
    const two = withCuda({ built: true, runtimeVersion: 13000, driverVersion: 13000, usable: true, minComputeCapability: "8.0",
                           devices: [h100, { ...h100, index: 1, name: "NVIDIA A100-SXM4-80GB", computeCapability: "8.0" }] });
    expect(two).toMatch(/^gpu 1\s+NVIDIA A100-SXM4-80GB \(compute 8\.0/m);
    expect(two).toMatch(/^gpu choice\s+models run on GPU 0 unless told otherwise: --device cuda:N/m);
  });
});
