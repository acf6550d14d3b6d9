// `s2s-train generate --compare FILE.yaml`: several named generation settings run on the same
// prompts, printed side by side. The file is a YAML list; each item has a `name` and any
// generation settings under transformers' snake_case names, e.g.
//   - name: greedy
//   - name: beam4
//     num_beams: 4
//     length_penalty: 1.2
//   - name: sample
//     do_sample: true
//     temperature: 0.7
//     seed: 1
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { FileFormatError, readTextFile, validate } from "../models/json-file.js";
import type { GenerateOptions, GenerateResult } from "./options.js";
import { optionsFromSnakeCase, snakeCaseSettingsShape } from "./option-flags.js";
import { renderColumns, type Column } from "./text-table.js";

const compareFileSchema = z
  .array(z.strictObject({ name: z.string().min(1).describe("The column's title"), ...snakeCaseSettingsShape() }))
  .min(1, { error: "expected at least one setting (a YAML list of {name, ...generation settings})" })
  .superRefine((items, ctx) => {
    const seen = new Set<string>();
    items.forEach((item, i) => {
      if (seen.has(item.name)) ctx.addIssue({ code: "custom", path: [i, "name"], message: `"${item.name}" is used twice; names must differ` });
      seen.add(item.name);
    });
  });

export interface CompareSetting {
  name: string;
  options: GenerateOptions;
}

export function readCompareFile(file: string): CompareSetting[] {
  const text = readTextFile(file);
  let value: unknown;
  try {
    value = parseYaml(text);
  } catch (e) {
    throw new FileFormatError(file, `is not valid YAML (${(e as Error).message})`);
  }
  const items = validate(compareFileSchema, value, file);
  return items.map(({ name, ...settings }) => ({ name, options: optionsFromSnakeCase(settings) }));
}

export interface CompareRun {
  name: string;
  result: GenerateResult;
}

/** One table per prompt: a column per setting with its text and "N tokens · score". */
export function renderComparison(prompts: readonly string[], runs: readonly CompareRun[], width: number): string {
  const out: string[] = [];
  prompts.forEach((prompt, i) => {
    out.push(`prompt ${i + 1}: ${prompt}`);
    const columns: Column[] = runs.map((run) => {
      const lines: string[] = [];
      const mine = run.result.sequences.filter((s) => s.inputIndex === i);
      mine.forEach((s, k) => {
        if (mine.length > 1) lines.push(`#${k + 1}`);
        lines.push(s.text ?? s.tokenIds.join(" "));
        lines.push(`(${s.tokenIds.length} tokens · score ${s.score.toFixed(3)} · ${s.finishReason})`);
      });
      return { header: run.name, lines };
    });
    out.push(...renderColumns(columns, width), "");
  });
  return out.join("\n");
}
