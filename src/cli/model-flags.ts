// The flags that say how a model runs, shared by generate, serve and eval (train takes the same
// settings as config keys: model.dtype, model.device, model.tf32).
import type { Options } from "yargs";
import { deviceFlag } from "../config/device-name.js";

export const modelRunFlagOptions = {
  dtype: { choices: ["float32", "bfloat16", "float16"] as const, default: "float32" as const, describe: "Matmul dtype of the linear layers" },
  device: {
    type: "string" as const, default: "auto", coerce: deviceFlag,
    describe: "Where the model runs: auto (GPU 0 when the addon has the CUDA backend and it is usable), cpu, cuda (GPU 0) or cuda:N (GPU N)",
  },
  tf32: {
    type: "boolean" as const, default: false,
    describe: "On a GPU, float32 matmuls on the TF32 tensor cores (several times faster, 10-bit mantissa inputs); ignored with --dtype bfloat16/float16 and on the CPU",
  },
} satisfies Record<string, Options>;
