// safetensors from TypeScript: single files through the native core (memory-mapped, zero-copy
// views; atomic writes) and Hugging Face model folders whose weights are one model.safetensors or
// shards listed in model.safetensors.index.json. No tensor maths here.
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { z } from "zod";
import {
  addon,
  withCallerStack,
  type NativeError,
  type NativeTensor,
  type SafetensorsContents,
  type SafetensorsDType,
  type SafetensorsTensor,
} from "../../bindings/native.js";
import { Tensor } from "../tensor.js";

export type { SafetensorsContents, SafetensorsDType, SafetensorsTensor };

export const SINGLE_FILE = "model.safetensors";
export const INDEX_FILE = "model.safetensors.index.json";

function formatError(code: "S2S_FORMAT" | "S2S_IO" | "S2S_DTYPE", message: string): NativeError {
  return Object.assign(new Error(`[safetensors] ${message}`), { code });
}

/**
 * Maps one safetensors file. Nothing is read or copied: each tensor's `data` is a view over the
 * mapped file (read-only by contract, see SafetensorsTensor). Throws S2S_IO when the file cannot
 * be opened and S2S_FORMAT when it is malformed, naming the file and the tensor.
 */
export function readSafetensors(file: string): SafetensorsContents {
  return addon().openSafetensors(file);
}

/** What writeSafetensors takes per tensor: a safetensors entry, or one of our float Tensors. */
export type SafetensorsInput = SafetensorsTensor | NativeTensor;

const FROM_TENSOR_DTYPE = { float32: "F32", bfloat16: "BF16", float16: "F16" } as const;

function isNativeTensor(t: SafetensorsInput): t is NativeTensor {
  return Object.hasOwn(FROM_TENSOR_DTYPE, t.dtype);
}

/**
 * Writes `tensors` (and string `metadata`) to `file` atomically: a temporary file in the same
 * folder, fsync, rename over `file`. On failure nothing at `file` changes. Do not modify the
 * arrays until the Promise settles. The bytes follow the reference writer (tensors sorted by
 * element size then name), so Hugging Face libraries load the result.
 */
export async function writeSafetensors(
  file: string,
  tensors: Record<string, SafetensorsInput>,
  metadata: Record<string, string> = {},
): Promise<void> {
  // A prototype-less record, so a tensor named "__proto__" is a tensor like any other.
  const entries: Record<string, SafetensorsTensor> = Object.create(null) as Record<string, SafetensorsTensor>;
  for (const [name, t] of Object.entries(tensors)) {
    entries[name] = isNativeTensor(t)
      ? ({ dtype: FROM_TENSOR_DTYPE[t.dtype], shape: [...t.shape], data: t.data } as SafetensorsTensor)
      : t;
  }
  await withCallerStack(() => addon().saveSafetensors(file, entries, metadata));
}

/**
 * A float tensor from a file as our Tensor, sharing its memory (F32 -> float32, BF16 -> bfloat16,
 * F16 -> float16). Other dtypes throw S2S_DTYPE; `name` only goes into that message.
 */
export function safetensorsToTensor(t: SafetensorsTensor, name = "tensor"): Tensor {
  switch (t.dtype) {
    case "F32":
      return new Tensor(t.data, t.shape, "float32");
    case "BF16":
      return new Tensor(t.data, t.shape, "bfloat16");
    case "F16":
      return new Tensor(t.data, t.shape, "float16");
    default:
      throw formatError("S2S_DTYPE", `'${name}' is ${t.dtype}, expected F32, BF16 or F16`);
  }
}

// A shard must be a plain file name in the model folder: an index must not reach outside it.
const shardName = z
  .string()
  .min(1)
  .refine((s) => s === path.posix.basename(s) && !s.includes("\\") && s !== "." && s !== "..", {
    message: "expected a file name in the model folder (no path separators)",
  });

/** model.safetensors.index.json as written by transformers' save_pretrained. */
export const SafetensorsIndexSchema = z.object({
  metadata: z.record(z.string(), z.unknown()).optional(),
  weight_map: z.record(z.string(), shardName),
});
export type SafetensorsIndex = z.infer<typeof SafetensorsIndexSchema>;

export interface ShardedSafetensors extends SafetensorsContents {
  /** The files the tensors came from, in load order. */
  files: string[];
}

/**
 * The weights of a Hugging Face model folder: `model.safetensors` if present (as transformers
 * prefers it), else every shard named by `model.safetensors.index.json`, merged. Metadata is the
 * shards' `__metadata__` merged (the first shard wins on a conflict). Errors (S2S_IO, S2S_FORMAT)
 * name the index file and the shard or tensor at fault: an unreadable or invalid index, a missing
 * shard, a tensor the index places in a shard that lacks it, a tensor present in two shards.
 */
export function readShardedSafetensors(folder: string): ShardedSafetensors {
  const single = path.join(folder, SINGLE_FILE);
  if (existsSync(single)) return { ...readSafetensors(single), files: [single] };
  const indexPath = path.join(folder, INDEX_FILE);
  if (!existsSync(indexPath)) {
    throw formatError("S2S_IO", `${folder}: no ${SINGLE_FILE} or ${INDEX_FILE} in this folder`);
  }

  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(indexPath, "utf8"));
  } catch (e) {
    const code = e instanceof SyntaxError ? "S2S_FORMAT" : "S2S_IO";
    throw formatError(code, `${indexPath}: ${code === "S2S_IO" ? "cannot read" : "not valid JSON"}: ${(e as Error).message}`);
  }
  const parsed = SafetensorsIndexSchema.safeParse(raw);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.map(String).join(".") || "(root)"}: ${i.message}`);
    throw formatError("S2S_FORMAT", `${indexPath}: not a safetensors index: ${issues.join("; ")}`);
  }
  const weightMap = parsed.data.weight_map;

  const shards = [...new Set(Object.values(weightMap))];
  const tensors: Record<string, SafetensorsTensor> = Object.create(null) as Record<string, SafetensorsTensor>;
  const metadata: Record<string, string> = Object.create(null) as Record<string, string>;
  const shardOf = new Map<string, string>();
  const files: string[] = [];
  for (const shard of shards) {
    const file = path.join(folder, shard);
    let contents: SafetensorsContents;
    try {
      contents = readSafetensors(file);
    } catch (e) {
      const err = e as NativeError;
      const example = Object.keys(weightMap).find((k) => weightMap[k] === shard);
      throw formatError(err.code === "S2S_IO" ? "S2S_IO" : "S2S_FORMAT",
        `${indexPath}: shard '${shard}' (holding '${example}'): ${err.message.replace(/^\[safetensors\] /, "")}`);
    }
    files.push(file);
    for (const [name, t] of Object.entries(contents.tensors)) {
      const other = shardOf.get(name);
      if (other !== undefined) {
        throw formatError("S2S_FORMAT", `${indexPath}: tensor '${name}' is in both shard '${other}' and shard '${shard}'`);
      }
      shardOf.set(name, shard);
      tensors[name] = t;
    }
    for (const [k, v] of Object.entries(contents.metadata)) {
      if (!Object.hasOwn(metadata, k)) metadata[k] = v;
    }
  }
  for (const [name, shard] of Object.entries(weightMap)) {
    const found = shardOf.get(name);
    if (found === undefined) {
      throw formatError("S2S_FORMAT", `${indexPath}: weight_map puts tensor '${name}' in shard '${shard}', which has no such tensor`);
    }
    if (found !== shard) {
      throw formatError("S2S_FORMAT", `${indexPath}: weight_map puts tensor '${name}' in shard '${shard}', but it is in '${found}'`);
    }
  }
  return { metadata, tensors, files };
}
