// The public API of s2s-train for other Node tools: `import { ... } from "s2s-train"`.
export { Tensor, type DTypeName } from "./tensor.js";
export { matmul, type MatmulArgs } from "./matmul.js";
export { layerNorm, layerNormBackward, softmax, gelu, attention, crossEntropy, adamwUpdate, type AttentionArgs } from "./ops.js";
export type { AdamWOptions, CrossEntropyOptions } from "../bindings/native.js";
export { nativeInfo, setNumThreads, setIsa, type IsaName, type NativeInfo } from "./system.js";
export { runDoctor, formatDoctor, type DoctorReport } from "./doctor.js";
export { isNativeError, type NativeError } from "../bindings/native.js";
export {
  readSafetensors,
  writeSafetensors,
  readShardedSafetensors,
  safetensorsToTensor,
  SafetensorsIndexSchema,
  type SafetensorsContents,
  type SafetensorsDType,
  type SafetensorsTensor,
  type SafetensorsInput,
  type SafetensorsIndex,
  type ShardedSafetensors,
} from "./io/safetensors.js";
