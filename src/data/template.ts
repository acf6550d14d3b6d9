// Prompt templates: "{field}" placeholders filled from a row's fields ("{{" and "}}" are literal
// braces, as in Python's str.format). A template is checked once when the config is read; a row
// without a field the template names is a bad row.
import { DataError } from "./errors.js";

type Part = { text: string } | { field: string };

export interface PromptTemplate {
  source: string;
  parts: Part[];
  /** The fields the template names, in order of first use. */
  fields: string[];
}

export function parseTemplate(source: string, where = "data.prompt_template"): PromptTemplate {
  const parts: Part[] = [];
  const fields: string[] = [];
  let text = "";
  for (let i = 0; i < source.length; i++) {
    const c = source[i]!;
    if ((c === "{" || c === "}") && source[i + 1] === c) {
      text += c;
      i++;
    } else if (c === "{") {
      const end = source.indexOf("}", i);
      const name = end < 0 ? "" : source.slice(i + 1, end);
      if (end < 0 || !/^[^{}]+$/.test(name)) {
        throw new DataError(where, `unmatched '{' at character ${i + 1} of ${JSON.stringify(source)} (write '{{' for a literal brace)`);
      }
      if (text) parts.push({ text });
      text = "";
      parts.push({ field: name });
      if (!fields.includes(name)) fields.push(name);
      i = end;
    } else if (c === "}") {
      throw new DataError(where, `unmatched '}' at character ${i + 1} of ${JSON.stringify(source)} (write '}}' for a literal brace)`);
    } else {
      text += c;
    }
  }
  if (text) parts.push({ text });
  return { source, parts, fields };
}

/**
 * A row field as text: strings as they are, numbers and booleans written out; anything else
 * (absent, null, an object) is an error naming the row and the field.
 */
export function fieldText(fields: Record<string, unknown>, name: string, source: string, role: string): string {
  const v = fields[name];
  if (typeof v === "string") return v;
  if (typeof v === "number" || typeof v === "boolean") return String(v);
  if (v === undefined) {
    const have = Object.keys(fields);
    throw new DataError(source, `missing field '${name}' (${role}); the row has ${have.length ? have.map((k) => `'${k}'`).join(", ") : "no fields"}`);
  }
  throw new DataError(source, `field '${name}' (${role}) expected a string, got ${v === null ? "null" : Array.isArray(v) ? "an array" : "an object"}`);
}

export function renderTemplate(template: PromptTemplate, fields: Record<string, unknown>, source: string): string {
  return template.parts
    .map((p) => ("text" in p ? p.text : fieldText(fields, p.field, source, `used by prompt_template ${JSON.stringify(template.source)}`)))
    .join("");
}
