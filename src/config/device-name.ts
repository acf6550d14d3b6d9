// How a `device` setting is spelt, for the config schema and the command-line flags alike:
// "auto", "cpu", "cuda" (GPU 0) or "cuda:N" (GPU N as the CUDA runtime numbers them, that is
// after CUDA_VISIBLE_DEVICES; PyTorch's spelling). The addon parses the same spellings
// (native/src/backends/cuda/device_query.cpp) and says whether GPU N exists when a model loads.
import type { DeviceName } from "../../bindings/native.js";

export const deviceNamePattern = /^(auto|cpu|cuda(:\d{1,4})?)$/;

export const deviceNameExpected = "'auto', 'cpu', 'cuda' or 'cuda:N' (N a GPU index, e.g. cuda:1)";

export function isDeviceName(value: string): value is DeviceName {
  return deviceNamePattern.test(value);
}

/** The value of a --device flag, or an error naming the flag and what it takes. */
export function deviceFlag(value: unknown): DeviceName {
  const text = String(value);
  if (!isDeviceName(text)) throw new Error(`--device: expected ${deviceNameExpected}, got '${text}'`);
  return text;
}
