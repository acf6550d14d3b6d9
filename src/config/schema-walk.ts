// Reading a zod schema as a tree of keys: which keys an object level has, a key's help text and
// default. Used for "did you mean" hints, the commented YAML that `init` writes, and flag help.
import type { z } from "zod";

interface Def {
  type: string;
  innerType?: z.ZodType;
  shape?: Record<string, z.ZodType>;
  in?: z.ZodType;
}

function def(schema: z.ZodType): Def {
  return schema._zod.def as unknown as Def;
}

const WRAPPERS = new Set(["default", "prefault", "optional", "nullable", "readonly", "catch", "nonoptional"]);

/** The schema under default/optional/nullable/pipe wrappers. */
export function unwrap(schema: z.ZodType): z.ZodType {
  let s = schema;
  for (;;) {
    const d = def(s);
    if (WRAPPERS.has(d.type) && d.innerType) s = d.innerType;
    else if (d.type === "pipe" && d.in) s = d.in;
    else return s;
  }
}

/** The keys of an object schema (after unwrapping), or undefined when it is not an object. */
export function objectShape(schema: z.ZodType): Record<string, z.ZodType> | undefined {
  const d = def(unwrap(schema));
  return d.type === "object" ? d.shape : undefined;
}

/** The schema of the value at `path` ("train", "lr"), or undefined when there is none. */
export function schemaAt(schema: z.ZodType, path: readonly PropertyKey[]): z.ZodType | undefined {
  let s: z.ZodType | undefined = schema;
  for (const key of path) {
    const shape: Record<string, z.ZodType> | undefined = s ? objectShape(s) : undefined;
    s = shape && typeof key === "string" ? shape[key] : undefined;
    if (!s) return undefined;
  }
  return s;
}

/** The first .describe() text found from the outside in. */
export function describeOf(schema: z.ZodType): string | undefined {
  let s = schema;
  for (;;) {
    if (s.description) return s.description;
    const d = def(s);
    if (WRAPPERS.has(d.type) && d.innerType) s = d.innerType;
    else if (d.type === "pipe" && d.in) s = d.in;
    else return undefined;
  }
}
