// The memory a training log line reports (Model.memory), in MiB.
import type { ModelMemory } from "../../bindings/native.js";

// One decimal: the tiny models of the tests and examples hold well under a MiB.
const mib = (bytes: number) => Math.round((bytes / (1024 * 1024)) * 10) / 10;

/**
 * A log line's memory fields, in MiB: `peak_memory_mb`, the most the model held at once in the
 * window (parameters, gradients, AdamW state, compute copies and the activations' peak; a
 * memory-mapped frozen base is page cache and not counted), and on a GPU what the whole device
 * has in use (every process) out of its total.
 */
export function memoryFields(m: ModelMemory): Record<string, number> {
  const held = m.parameterBytes + m.gradientBytes + m.optimizerStateBytes + m.computeCopyBytes + m.activationPeakBytes;
  const fields: Record<string, number> = { peak_memory_mb: mib(held) };
  if (m.deviceTotalBytes !== null && m.deviceFreeBytes !== null) {
    fields.gpu_memory_used_mb = mib(m.deviceTotalBytes - m.deviceFreeBytes);
    fields.gpu_memory_total_mb = mib(m.deviceTotalBytes);
  }
  return fields;
}
