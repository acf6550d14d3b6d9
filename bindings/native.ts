// The typed surface of the native addon, and the only module that loads it. Everything in src/
// goes through these types; nothing else touches the raw addon.
import { createRequire } from "node:module";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);

/** Element types a tensor can hold across the boundary. bf16/f16 travel as raw Uint16Array bits. */
export type DTypeName = "float32" | "bfloat16" | "float16";

/** Instruction-set paths of the CPU kernels, lowest first. */
export type IsaName = "scalar" | "avx2" | "avx512" | "avx512_bf16" | "neon";

/** A contiguous row-major tensor as the addon reads it: no copy is made. */
export interface NativeTensor {
  data: Float32Array | Uint16Array;
  shape: readonly number[];
  dtype: DTypeName;
}

export interface NativeInfo {
  version: string;
  compiler: string;
  napiVersion: number;
  backends: string[];
  cpu: { vendor: string; brand: string; logicalCores: number; features: string[] };
  supportedIsas: IsaName[];
  bestIsa: IsaName;
  activeIsa: IsaName;
  /** Kernel family -> the implementation the active ISA runs, e.g. gemm_f32: "avx512 …". */
  kernels: Record<string, string>;
  threads: number;
  /** The CUDA backend: compiled into this binary or not, and the GPUs the runtime sees. */
  cuda: CudaInfo;
}

export interface CudaDeviceInfo {
  index: number;
  name: string;
  /** e.g. "9.0" for an H100. */
  computeCapability: string;
  multiprocessors: number;
  totalBytes: number;
  freeBytes: number;
  /** Whether this build has kernels for it (compute capability >= `minComputeCapability`). */
  supported?: boolean;
}

export interface CudaInfo {
  built: boolean;
  /** e.g. 13000 for CUDA 13.0; 0 when not built. */
  runtimeVersion: number;
  /** The newest CUDA version the driver supports; 0 when there is no driver. */
  driverVersion: number;
  devices: CudaDeviceInfo[];
  /** Whether a model can run on the GPU here: built, a supported device, cuBLASLt found. */
  usable?: boolean;
  /** The oldest compute capability the build has kernels for, e.g. "8.0" (when built). */
  minComputeCapability?: string;
  /** cuBLASLt, loaded at run time: the file and its version, e.g. "13.1.0" (when found). */
  cublasLt?: { library: string; version: string };
  /** Why no cuBLASLt was loaded (when built and none was found). */
  cublasLtProblem?: string;
  /** Why a model cannot run on the GPU here (not built, no driver or GPU, an unsupported GPU, no
   *  cuBLASLt); absent when it can. */
  problem?: string;
}

export interface MatmulOptions {
  transA?: boolean;
  transB?: boolean;
  alpha?: number;
  beta?: number;
}

/** Every function the addon exports, with its exact JS signature. */
export interface NativeAddon {
  info(): NativeInfo;
  setNumThreads(threads: number): void;
  setIsa(isa: IsaName): void;
  /** c = alpha * op(a) * op(b) + beta * c, in place, on the thread pool. */
  matmul(c: NativeTensor, a: NativeTensor, b: NativeTensor, options?: MatmulOptions): Promise<void>;

  // Single ops (native/napi/ops.cpp). Outputs are written in place; null = not wanted/not given.
  // Backward functions ACCUMULATE into the gradient tensors.
  layerNormForward(out: NativeTensor, mean: NativeTensor | null, rstd: NativeTensor | null,
                   inp: NativeTensor, weight: NativeTensor, bias: NativeTensor | null, eps: number): Promise<void>;
  layerNormBackward(dinp: NativeTensor | null, dweight: NativeTensor | null, dbias: NativeTensor | null,
                    dout: NativeTensor, inp: NativeTensor, weight: NativeTensor, mean: NativeTensor,
                    rstd: NativeTensor): Promise<void>;
  softmaxForward(out: NativeTensor, inp: NativeTensor): Promise<void>;
  geluForward(out: NativeTensor, inp: NativeTensor, approximate: "tanh" | "none"): Promise<void>;
  /** q/out (B,Tq,Hq,D), k/v (B,Tk,Hkv,D), lse (B,Hq,Tq), bias (Hq,Tq,Tk), keyMask (B,Tk) 1 = attend. */
  attentionForward(out: NativeTensor, lse: NativeTensor, q: NativeTensor, k: NativeTensor, v: NativeTensor,
                   bias: NativeTensor | null, keyMask: Uint8Array | null,
                   options: { causal?: boolean; scale?: number }): Promise<void>;
  crossEntropyForward(lse: NativeTensor, logits: NativeTensor, labels: Int32Array,
                      options: CrossEntropyOptions): Promise<{ loss: number; count: number }>;
  crossEntropyBackward(dlogits: NativeTensor, logits: NativeTensor, lse: NativeTensor, labels: Int32Array,
                       dloss: number, options: CrossEntropyOptions): Promise<void>;
  /** torch.optim.AdamW's update, in place on param, expAvg and expAvgSq; step counts from 1. */
  adamwUpdate(param: NativeTensor, grad: NativeTensor, expAvg: NativeTensor, expAvgSq: NativeTensor,
              step: number, options: AdamWOptions): Promise<void>;

  // safetensors files (native/napi/safetensors.cpp).
  /**
   * Maps a safetensors file and returns its tensors as views over the mapping (no data is read
   * or copied). Synchronous: only the header is parsed. Throws S2S_IO (cannot open) or
   * S2S_FORMAT (malformed; the message names the file and tensor).
   */
  /** Loads a Hugging Face model folder (config.json + safetensors) into the native core. */
  loadModel(folder: string, options?: LoadModelNativeOptions): Promise<NativeModel>;
  /**
   * A new model from config.json text, every parameter trainable and randomly initialised with
   * its family's transformers init scheme (native/include/s2s/models/init_weights.h), from a
   * Philox stream keyed by `seed` (default 0): same seed, same weights on every machine.
   */
  createModel(
    configJson: string,
    options?: { seed?: number; computeDtype?: ComputeDTypeName; device?: DeviceName; tf32?: boolean },
  ): Promise<NativeModel>;
  openSafetensors(path: string): SafetensorsContents;
  /**
   * Writes a safetensors file atomically (temporary file, fsync, rename). The arrays must not be
   * modified until the Promise settles. Rejects with S2S_ARGUMENT / S2S_DTYPE / S2S_SHAPE for bad
   * input and S2S_IO when the file cannot be written (then nothing at `path` has changed).
   */
  saveSafetensors(path: string, tensors: Record<string, SafetensorsTensor>,
                  metadata?: Record<string, string>): Promise<void>;
}

/** Element types of the safetensors format, spelled as the file spells them. */
export type SafetensorsDType =
  | "F64" | "F32" | "F16" | "BF16" | "I64" | "I32" | "I16" | "I8"
  | "U64" | "U32" | "U16" | "U8" | "BOOL" | "F8_E4M3" | "F8_E5M2" | "F8_E8M0";

/** The TypedArray each dtype travels in: bf16/f16 as raw Uint16Array bits, BOOL and F8_* as bytes. */
export interface SafetensorsArrayOf {
  F64: Float64Array; F32: Float32Array; F16: Uint16Array; BF16: Uint16Array;
  I64: BigInt64Array; I32: Int32Array; I16: Int16Array; I8: Int8Array;
  U64: BigUint64Array; U32: Uint32Array; U16: Uint16Array; U8: Uint8Array;
  BOOL: Uint8Array; F8_E4M3: Uint8Array; F8_E5M2: Uint8Array; F8_E8M0: Uint8Array;
}

/**
 * One tensor of a safetensors file: row-major, little-endian, `data.length` = product of `shape`
 * (1 for a 0-d tensor, shape []). A union over dtypes, so checking `dtype` narrows `data`.
 *
 * Read from a file, `data` is a view over the memory-mapped file: `data.buffer` is the whole file
 * and `data.byteOffset` the tensor's position in it. Treat it as READ-ONLY: the mapping is private
 * (copy-on-write), so a write never reaches the file, but it changes what every other view of the
 * same open sees. The mapping stays alive as long as any of its arrays is reachable.
 */
export type SafetensorsTensor = {
  [D in SafetensorsDType]: { dtype: D; shape: number[]; data: SafetensorsArrayOf[D] };
}[SafetensorsDType];

export interface SafetensorsContents {
  /** The file's "__metadata__" (string to string; {} when absent). */
  metadata: Record<string, string>;
  /** Tensors by name, in the order of their data in the file. */
  tensors: Record<string, SafetensorsTensor>;
}

export interface CrossEntropyOptions {
  /** Labels equal to this are not counted (default -100). */
  ignoreIndex?: number;
  /** "mean" over counted tokens (default) or "sum" (for accumulating over micro-batches). */
  reduction?: "mean" | "sum";
}

export interface AdamWOptions {
  lr?: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
}

/** An Error from the native core: `code` is one of the S2S_* codes. */
export interface NativeError extends Error {
  code: string;
}

export function isNativeError(e: unknown): e is NativeError {
  return e instanceof Error && typeof (e as { code?: unknown }).code === "string";
}

/** The package root: the nearest folder above this file whose package.json is s2s-train's. */
export function packageRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const manifest = path.join(dir, "package.json");
    if (existsSync(manifest)) {
      const name = (JSON.parse(readFileSync(manifest, "utf8")) as { name?: string }).name;
      if (name === "s2s-train") return dir;
    }
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error("s2s-train: cannot find the package root above " + dir);
    dir = parent;
  }
}

let cached: { addon: NativeAddon; path: string } | undefined;

/**
 * Loads the addon through node-gyp-build, which takes build/Release/ (a build from source) first,
 * then build/Debug/, then prebuilds/<platform>-<arch>/ (see its load.path): so a build from
 * source, e.g. `s2s-train build-native --cuda on`, wins over the CPU-only prebuild; or the file
 * the environment's S2S_ADDON names. When none loads, the error lists the paths tried and the
 * commands that build the addon.
 */
export function loadAddon(): { addon: NativeAddon; path: string } {
  if (cached) return cached;
  const root = packageRoot();
  const nodeGypBuild = require("node-gyp-build") as { path(dir: string): string };
  let addonPath: string;
  // S2S_ADDON names an addon file to load instead (a build of your own; the tests' simulated-GPU
  // addon, build/sim-addon/s2s_train_sim.node).
  const override = process.env.S2S_ADDON?.trim();
  try {
    addonPath = override ? path.resolve(override) : nodeGypBuild.path(root);
  } catch (e) {
    const tried = [
      path.join(root, "build", "Release", "s2s_train.node"),
      path.join(root, "prebuilds", `${process.platform}-${process.arch}`, "*.node"),
    ];
    throw new Error(
      `s2s-train: no native addon for ${process.platform}-${process.arch} (Node ${process.version}).\n` +
        `Tried:\n  ${tried.join("\n  ")}\n` +
        `Build it from source (needs cmake >= 3.18 and a C++17 compiler):\n` +
        `  npx s2s-train build-native   (in a project that depends on it; --cuda on for GPUs)\n` +
        `  npm rebuild s2s-train        (the same through the install script, which npm 11 runs\n` +
        `                               only if allowScripts lists s2s-train)\n` +
        `  npm run build:native         (in a checkout of s2s-train)\n` +
        `(${(e as Error).message.split("\n")[0]})`,
    );
  }
  try {
    cached = { addon: require(addonPath) as NativeAddon, path: addonPath };
  } catch (e) {
    throw new Error(
      `s2s-train: found the native addon at ${addonPath} but could not load it: ${(e as Error).message}\n` +
        `Rebuild it with \`npm run build:native\` (checkout) or \`npm rebuild s2s-train\`.`,
    );
  }
  return cached;
}

export function addon(): NativeAddon {
  return loadAddon().addon;
}

/**
 * Runs an async native call so that a rejection's stack points at the caller's own line rather
 * than at the native worker (which has no JS stack).
 */
export async function withCallerStack<T>(call: () => Promise<T>): Promise<T> {
  const site = new Error();
  try {
    return await call();
  } catch (e) {
    if (e instanceof Error && site.stack) {
      const frames = site.stack.split("\n").slice(1).join("\n");
      e.stack = `${e.name}: ${e.message}\n${frames}`;
    }
    throw e;
  }
}

/**
 * The dtype of the linear layers' matmuls. "bfloat16": bf16 operands with fp32 accumulation
 * (AVX-512 BF16 / AMX where the CPU has it, else widened to fp32 exactly: same numbers, slower);
 * master weights, gradients, optimizer state, norms, attention and the loss stay fp32.
 * "float16": the same with fp16 operands (tensor cores on a GPU; on the CPU widened to fp32:
 * fp32 speed), and training scales the loss dynamically (lossScaler()).
 */
export type ComputeDTypeName = "float32" | "bfloat16" | "float16";

export interface LoadModelNativeOptions {
  /** Keep frozen linear/embedding weights as views of the mapped files in their dtype. */
  keepFrozenInFileDtype?: boolean;
  /** Default "float32". "bfloat16"/"float16" keep a copy of every linear weight in that dtype (2 bytes/element). */
  computeDtype?: ComputeDTypeName;
  /** Default "auto": GPU 0 when the addon has the CUDA backend and it is usable, else the CPU. */
  device?: DeviceName;
  /** On a GPU: fp32 GEMMs on TF32 tensor cores (default false; ignored on the CPU). */
  tf32?: boolean;
}

/**
 * Where a model runs: "auto" picks the best available (GPU 0 when usable, else the CPU), or name
 * one: "cpu", "cuda" (GPU 0) or "cuda:N" (GPU N, numbered after CUDA_VISIBLE_DEVICES).
 */
export type DeviceName = "auto" | "cpu" | "cuda" | `cuda:${number}`;

/** A batch of token ids (row-major int32); labels equal to -100 are not counted by the loss. */
export interface NativeBatch {
  batchSize: number;
  /** Decoder-only: tokens per row. T5: encoder tokens per row. */
  seqLen: number;
  inputIds: Int32Array;
  attentionMask?: Int32Array;
  /** Decoder-only (batchSize, seqLen), shifted inside; T5 (batchSize, decoderLen). */
  labels?: Int32Array;
  /** Decoder-only positions (left-padded batches); default 0..seqLen-1 in every row. */
  positionIds?: Int32Array;
  /** T5 only. */
  decoderLen?: number;
  decoderInputIds?: Int32Array;
  decoderAttentionMask?: Int32Array;
}

export interface NativeParamInfo {
  name: string;
  shape: number[];
  dtype: string;
  trainable: boolean;
}

export interface OptimizerStepOptions {
  /** Applied optimizer steps so far + 1 (AdamW bias correction; a skipped step does not count). */
  step: number;
  lr: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
  /** Global-norm clipping; <= 0 turns it off. Default 1. */
  maxGradNorm?: number;
  /** Multiplies the accumulated gradients first (1 / counted tokens after summed losses). */
  gradScale?: number;
}

/**
 * A model's memory in bytes, by role, as `Model.memory()` reports it. On a GPU every figure but
 * the device's is GPU memory the model holds; on the CPU, host memory.
 */
export interface ModelMemory {
  /** Where the model runs: "cpu" or "cuda:N". */
  device: "cpu" | `cuda:${number}`;
  /** Parameter values the model holds (fp32 masters; frozen weights in their dtype). */
  parameterBytes: number;
  /** Frozen weights read in place from their memory-mapped safetensors file (LoRA on a bf16 base on the CPU): page cache, shared, not counted in the others. */
  mappedParameterBytes: number;
  /** Gradients of the trainable parameters. */
  gradientBytes: number;
  /** AdamW's two moments (allocated at the first optimizer step). */
  optimizerStateBytes: number;
  /** bf16/f16 copies of the weights the linear layers multiply with (0 in float32). */
  computeCopyBytes: number;
  /** The most activation memory (activations, their gradients, scratch) in use at once since the model was loaded or the last `memory({ resetPeak: true })`, over every pass: training steps, evaluation, generation. */
  activationPeakBytes: number;
  /** What the activation arenas hold reserved for the next pass (kept, not returned, between passes). */
  activationReservedBytes: number;
  /** The GPU's memory and what is free on it now (every process's use counted); null on the CPU. */
  deviceTotalBytes: number | null;
  deviceFreeBytes: number | null;
}

/** A loaded model (native/napi/model.cpp). One call at a time: a second one rejects with S2S_BUSY. */
export interface NativeModel {
  info(): { modelType: string; computeDtype: ComputeDTypeName;
            /** Where the model runs: "cpu" or "cuda:N" (GPU N). */
            device: "cpu" | `cuda:${number}`;
            /** Bytes held by the bf16/f16 copies of the linear weights (0 in float32). */
            computeCopyBytes: number;
            parameters: number; trainableParameters: number;
            /** Whether setGradientCheckpointing(true) is in effect. */
            gradientCheckpointing: boolean;
            /** Whether setChunkedLoss(true) is in effect. */
            chunkedLoss: boolean;
            params: NativeParamInfo[]; unusedTensors: string[] };
  /** Where the model's memory goes (native/napi/model.cpp, Model.memory). */
  memory(options?: { resetPeak?: boolean }): ModelMemory;
  setTrainable(all: boolean): void;
  /**
   * Gradient checkpointing (transformers' gradient_checkpointing_enable()): each transformer block
   * keeps only its input in the forward and is run again in the backward. Much less activation
   * memory for about one more forward of time; the same gradients bit for bit. Default off.
   */
  setGradientCheckpointing(on: boolean): void;
  /**
   * Chunked loss: with labels, the LM head and the loss run a chunk of rows at a time (64 MiB of
   * logits), so the whole (tokens x vocab) logits and their gradient never exist; accumulate and
   * trainStep know the backward's seed ahead, so each chunk's gradients are made in the forward
   * (the plain path's GEMM count). The same loss and gradients up to rounding. A forward asked
   * for logits takes the plain path. Default off.
   */
  setChunkedLoss(on: boolean): void;
  forward(batch: NativeBatch, options?: { reduction?: "mean" | "sum"; logits?: boolean }):
    Promise<{ loss: number | null; count: number; logits?: Float32Array; vocabSize?: number }>;
  /**
   * Forward with the summed loss and backward into the gradients. float16: the backward starts
   * from lossScale / stepTokens (the counted tokens of the whole optimizer step; default this
   * batch's count), torch GradScaler's scaled mean loss, so optimizerStep takes gradScale 1.
   */
  accumulate(batch: NativeBatch, options?: { training?: boolean; dropoutSeed?: number; stepTokens?: number }):
    Promise<{ lossSum: number; count: number; replayed: boolean }>;
  /**
   * Unscales (float16: by the loss scale too), clips, AdamW, zeroes the gradients. finite false:
   * the step was skipped (NaN/Inf gradient); in float16 that is a loss-scale overflow and the
   * scale has been backed off (lossScaler()).
   */
  optimizerStep(options: OptimizerStepOptions): Promise<{ gradNorm: number; finite: boolean }>;
  /** The dynamic loss scale of float16 training (enabled false and scale 1 otherwise). */
  lossScaler(): { enabled: boolean; scale: number; growthTracker: number; skippedSteps: number };
  /** A fresh loss scaler with torch GradScaler's arguments (float16 models only; defaults as torch's). */
  configureLossScaler(options: { initScale?: number; growthFactor?: number; backoffFactor?: number; growthInterval?: number }): void;
  /** Restores a checkpointed loss scale (float16 models only; S2S_ARGUMENT otherwise). */
  setLossScaler(state: { scale: number; growthTracker: number }): void;
  /**
   * accumulate for each batch, then optimizerStep (gradients scaled by 1 / the batches' counted
   * tokens; float16: stepTokens their count), in one native call that waits for the device once,
   * at its end: the same bits, and a GPU runs one micro-batch while the host queues the next.
   * An array of batches takes an array of dropout seeds, one for each. loss: the mean over every
   * counted token. replayed (accumulate too): on a GPU, the forward and backward ran as a
   * recording of an earlier micro-step that queued the same work (s2s::PassReplay: one launch,
   * the same bits); here true when every batch's did, replayedMicroSteps counting them.
   */
  trainStep(batch: NativeBatch | NativeBatch[], options: OptimizerStepOptions & { training?: boolean; dropoutSeed?: number | number[] }):
    Promise<{ loss: number | null; count: number; gradNorm: number; finite: boolean; replayed: boolean; replayedMicroSteps: number }>;
  /**
   * Writes the trainable params' AdamW moments ("<name>.exp_avg", "<name>.exp_avg_sq", F32) and
   * `step` (the last optimizer step taken) as one safetensors file, atomically.
   */
  saveOptimizerState(path: string, step: number): Promise<void>;
  /**
   * Loads a file saveOptimizerState wrote; it must hold exactly the trainable params (S2S_FORMAT,
   * S2S_SHAPE or S2S_DTYPE naming the file and tensor otherwise; nothing changes then).
   */
  loadOptimizerState(path: string): Promise<{ step: number }>;
  /** Attaches LoRA (config as PEFT's adapter_config.json text); freezes the base. */
  applyLora(adapterConfigJson: string, seed: number): void;
  /** Loads a PEFT adapter folder (adapter_config.json + adapter_model.safetensors). */
  loadAdapter(dir: string): Promise<void>;
  /** Writes the attached adapter in PEFT's layout, atomically. */
  saveAdapter(dir: string): Promise<void>;
  /** Adds the adapter into the base weights and detaches it. */
  mergeLora(): Promise<void>;
  detachLora(): void;
  /** Writes model.safetensors + config.json (a folder transformers loads). */
  saveModel(dir: string): Promise<void>;
  /**
   * Generates from token-id inputs (one Int32Array per input, unpadded). onTokens receives, after
   * each greedy/sampling step, (sequence index, token id) pairs of the sequences still running;
   * the Promise settles after the last of them was delivered. Rejects with S2S_ARGUMENT for bad
   * settings (checked before anything runs) and S2S_BUSY while another call runs.
   */
  generate(inputs: Int32Array[], config: NativeGenerationConfig, onTokens?: (pairs: Int32Array) => void,
    maskLogits?: MaskLogits): Promise<NativeGenerateResult>;
  /** Stops a running generate after its current step (its sequences end with finishReason "aborted"). */
  abortGenerate(): void;
}

/**
 * A constraint's logits mask (greedy search and sampling only): called on the JS thread every step,
 * after the logits processors and before the warpers, while the generating thread waits. scores
 * holds the (rows x vocab) processed scores to change in place (-Infinity forbids a token);
 * last[r] is the token row r appended at the previous step, -1 at the first step and for rows
 * that have finished. If it throws, generation stops and the Promise rejects with that error.
 */
export type MaskLogits = (scores: Float32Array, last: Int32Array) => void;

/**
 * The resolved generation settings native generate takes (transformers' GenerationConfig fields in
 * camelCase; src/generate/ fills them from generation_config.json and the call's options).
 * Absent fields take transformers' defaults; token ids absent or null mean "none".
 */
export interface NativeGenerationConfig {
  /** Takes precedence over maxLength: max_length = input length + maxNewTokens. */
  maxNewTokens?: number;
  /** Total length: padded prompt (T5: the start token) + new tokens. */
  maxLength?: number;
  /** transformers' unset length: 20 new tokens, capped at the model's max positions. */
  defaultLength?: boolean;
  minNewTokens?: number;
  minLength?: number;
  doSample?: boolean;
  temperature?: number;
  topK?: number;
  topP?: number;
  /** Philox seed of the sampler (an integer < 2^53). */
  seed?: number;
  numBeams?: number;
  numReturnSequences?: number;
  lengthPenalty?: number;
  earlyStopping?: boolean | "never";
  repetitionPenalty?: number;
  noRepeatNgramSize?: number;
  badWordsIds?: number[][];
  eosTokenIds?: number[];
  padTokenId?: number | null;
  bosTokenId?: number | null;
  decoderStartTokenId?: number | null;
}

export interface NativeGenerateResult {
  /** inputs x numReturnSequences, grouped by input (beam search: best first). */
  sequences: Array<{
    inputIndex: number;
    /** New tokens only, through the EOS that ended the sequence. */
    tokenIds: Int32Array;
    tokenLogprobs: Float32Array;
    score: number;
    finishReason: "eos" | "length" | "aborted";
  }>;
  steps: number;
  /** Of them, replays of a recorded step (a CUDA graph; 0 on the CPU). */
  replayedSteps: number;
  prefillMs: number;
  decodeMs: number;
}
