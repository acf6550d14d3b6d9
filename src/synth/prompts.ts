// Prompts are files people can edit: prompts/synth/<name>.md in the package, overridden file by
// file by a prompts_dir of the user's. A file holds a system part and a user part:
//
//   --- system
//   You write questions …
//   --- user
//   Document: {{document}}
//
// {{name}} placeholders are filled from the pipeline's variables; a placeholder the pipeline does
// not provide, or a variable left unused that the pipeline requires, is an error naming the file.
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import type { ChatMessage } from "../llm/types.js";
import { FileFormatError } from "../models/json-file.js";

/** The bundled prompts: <package root>/prompts/synth, from src/ (vitest) or dist/src/ (built). */
export function bundledPromptsDir(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    const candidate = path.join(dir, "prompts", "synth");
    if (existsSync(candidate)) return candidate;
    dir = path.dirname(dir);
  }
  throw new Error("the bundled prompts (prompts/synth) are missing from the package");
}

export const promptNames = [
  "mhqa-entity-q1", "mhqa-q2", "mhqa-merge", "mhqa-chain",
  "relations-summary", "relations-extract", "relations-train-input", "relations-summary-train-input",
  "curate-impute-q1", "curate-impute-answer",
] as const;
export type PromptName = (typeof promptNames)[number];

export interface PromptTemplate {
  name: PromptName;
  file: string;
  system?: string;
  user: string;
  placeholders: Set<string>;
}

const placeholder = /\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}/g;

export function parsePromptFile(name: PromptName, file: string, text: string): PromptTemplate {
  const parts: Record<string, string> = {};
  const sections = text.split(/^---[ \t]*(system|user)[ \t]*$/m);
  if (sections.length === 1) {
    parts.user = text;
  } else {
    if (sections[0]!.trim()) throw new FileFormatError(file, 'text before the first "--- system" or "--- user" line');
    for (let i = 1; i < sections.length; i += 2) {
      const role = sections[i]!;
      if (role in parts) throw new FileFormatError(file, `two "--- ${role}" sections`);
      parts[role] = sections[i + 1]!.replace(/^\r?\n/, "").replace(/\s+$/, "");
    }
  }
  if (!parts.user?.trim()) throw new FileFormatError(file, 'expected a "--- user" section with text');
  const placeholders = new Set<string>();
  for (const part of [parts.system ?? "", parts.user]) for (const m of part.matchAll(placeholder)) placeholders.add(m[1]!);
  return { name, file, ...(parts.system ? { system: parts.system } : {}), user: parts.user, placeholders };
}

export class PromptLibrary {
  private readonly cache = new Map<PromptName, PromptTemplate>();

  constructor(readonly overrideDir?: string) {}

  /** Where a prompt is read from: the override folder if it has the file, else the bundled one. */
  fileOf(name: PromptName): string {
    if (this.overrideDir) {
      const own = path.join(this.overrideDir, `${name}.md`);
      if (existsSync(own)) return own;
    }
    return path.join(bundledPromptsDir(), `${name}.md`);
  }

  get(name: PromptName): PromptTemplate {
    let t = this.cache.get(name);
    if (!t) {
      const file = this.fileOf(name);
      t = parsePromptFile(name, file, readFileSync(file, "utf8"));
      this.cache.set(name, t);
    }
    return t;
  }

  /** Checks each named prompt's placeholders against the variables the pipeline will give it. */
  check(name: PromptName, variables: readonly string[], required: readonly string[] = []): void {
    const t = this.get(name);
    const unknown = [...t.placeholders].filter((p) => !variables.includes(p));
    if (unknown.length) {
      throw new FileFormatError(t.file, `unknown placeholder${unknown.length > 1 ? "s" : ""} ${unknown.map((u) => `{{${u}}}`).join(", ")}; ` +
        `this prompt can use ${variables.map((v) => `{{${v}}}`).join(", ")}`);
    }
    const missing = required.filter((r) => !t.placeholders.has(r));
    if (missing.length) throw new FileFormatError(t.file, `must use ${missing.map((m) => `{{${m}}}`).join(", ")}`);
  }

  /** The chat messages of a prompt with its placeholders filled. */
  render(name: PromptName, variables: Record<string, string>): ChatMessage[] {
    const t = this.get(name);
    const messages: ChatMessage[] = [];
    if (t.system) messages.push({ role: "system", content: fill(t, t.system, variables) });
    messages.push({ role: "user", content: fill(t, t.user, variables) });
    return messages;
  }

  /** A template used as plain text (chain-of-reasoning target, training inputs). */
  renderText(name: PromptName, variables: Record<string, string>): string {
    const t = this.get(name);
    return fill(t, t.user, variables);
  }
}

function fill(t: PromptTemplate, text: string, variables: Record<string, string>): string {
  return text.replace(placeholder, (_, key: string) => {
    const value = variables[key];
    if (value === undefined) throw new FileFormatError(t.file, `no value for {{${key}}}`);
    return value;
  });
}
