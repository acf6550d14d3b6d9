// A config as YAML with each key's help text above it (from the schema's .describe()), for the
// resolved config a run writes and the editable copy `s2s-train init` makes.
import YAML, { isMap, isScalar, type YAMLMap } from "yaml";
import type { z } from "zod";
import { trainConfigSchema } from "./schema.js";
import { describeOf, objectShape } from "./schema-walk.js";

function annotate(map: YAMLMap, schema: z.ZodType): void {
  const shape = objectShape(schema) ?? {};
  for (const pair of map.items) {
    if (!isScalar(pair.key)) continue;
    const child = shape[String(pair.key.value)];
    if (!child) continue;
    const help = describeOf(child);
    if (help) pair.key.commentBefore = ` ${help}`;
    if (isMap(pair.value)) annotate(pair.value, child);
  }
}

/** YAML text of a config (or part of one), commented from the schema. */
export function renderConfigYaml(config: object, header?: string): string {
  const doc = new YAML.Document(config);
  if (isMap(doc.contents)) annotate(doc.contents, trainConfigSchema);
  if (header) doc.commentBefore = header.split("\n").map((l) => ` ${l}`).join("\n");
  return doc.toString({ lineWidth: 0 });
}
