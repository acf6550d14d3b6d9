// The public API of s2s-train for other Node tools: `import { ... } from "s2s-train"`.
export { Tensor, type DTypeName } from "./tensor.js";
export { matmul, type MatmulArgs } from "./matmul.js";
export { layerNorm, layerNormBackward, softmax, gelu, attention, crossEntropy, adamwUpdate, type AttentionArgs } from "./ops.js";
export type { AdamWOptions, CrossEntropyOptions, CudaInfo, CudaDeviceInfo, DeviceName } from "../bindings/native.js";
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
export { Model, type LoadModelOptions, type LoraOptions, type Batch, type OptimizerStepOptions } from "./models/model.js";
export { inspectModelFolder, type ModelFolder } from "./models/model-folder.js";
export { SUPPORTED_MODEL_TYPES, type ModelConfig } from "./models/hf-config.js";
export { loadTokenizer, type Tokenizer } from "./models/tokenizer.js";
