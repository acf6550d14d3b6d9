// Turning what an LLM wrote into JSON when it almost is: the repairs people meet every day with
// small models, each named so reports can count them. What no rule fixes is rejected with the
// parser's message. Schema checks come after this (structured.ts).
//
// Rules, in order:
//   code_fence          ```json … ``` around the object
//   surrounding_text    prose before or after the object ("Here is the JSON: {…} Hope it helps")
//   single_quotes       {'a': 'b'}
//   unquoted_keys       {a: "b"}
//   python_literals     True / False / None
//   control_characters  raw newlines or tabs inside strings
//   trailing_comma      [1, 2,] and {"a": 1,}
//   truncated           output cut off (max_tokens): open strings, arrays and objects are closed
//                       and a dangling key or comma is dropped

export type RepairRule =
  | "code_fence" | "surrounding_text" | "single_quotes" | "unquoted_keys" | "python_literals"
  | "control_characters" | "trailing_comma" | "truncated";

export type JsonRepairResult =
  | { ok: true; value: unknown; repairs: RepairRule[] }
  | { ok: false; error: string; repairs: RepairRule[] };

export function parseJsonLenient(text: string): JsonRepairResult {
  const strict = tryParse(text.trim());
  if (strict.ok) return { ok: true, value: strict.value, repairs: [] };

  const repairs = new Set<RepairRule>();
  let body = text;
  const fence = /```[a-zA-Z]*[ \t]*\r?\n?([\s\S]*?)(?:```|$)/.exec(body);
  if (fence) {
    body = fence[1]!;
    repairs.add("code_fence");
  }
  const start = body.search(/[{[]/);
  if (start < 0) return { ok: false, error: "no JSON object or array in the output", repairs: [...repairs] };
  if (body.slice(0, start).trim()) repairs.add("surrounding_text");
  body = body.slice(start);

  const tokens = tokenize(body, repairs);
  const rebuilt = tokens.join("");
  const parsed = tryParse(rebuilt);
  if (parsed.ok) return { ok: true, value: parsed.value, repairs: [...repairs] };
  return { ok: false, error: parsed.error, repairs: [...repairs] };
}

function tryParse(text: string): { ok: true; value: unknown } | { ok: false; error: string } {
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch (e) {
    return { ok: false, error: (e as Error).message };
  }
}

/**
 * Re-emits `text` as JSON tokens (strings normalised to double-quoted JSON strings, whitespace
 * dropped), fixing what the rules cover. Stops after the first complete top-level value, so text
 * after it is ignored (surrounding_text).
 */
function tokenize(text: string, repairs: Set<RepairRule>): string[] {
  const out: string[] = [];
  const stack: ("{" | "[")[] = [];
  let i = 0;
  const n = text.length;
  const lastToken = () => out[out.length - 1];

  while (i < n) {
    const c = text[i]!;
    if (c === '"' || c === "'") {
      const { json, end, closed, fixedControl } = readString(text, i);
      if (c === "'") repairs.add("single_quotes");
      if (fixedControl) repairs.add("control_characters");
      if (!closed) repairs.add("truncated");
      out.push(json);
      i = end;
      continue;
    }
    if (c === "{" || c === "[") {
      stack.push(c);
      out.push(c);
      i++;
      continue;
    }
    if (c === "}" || c === "]") {
      if (lastToken() === ",") {
        out.pop();
        repairs.add("trailing_comma");
      }
      stack.pop();
      out.push(c);
      i++;
      if (stack.length === 0) {
        if (text.slice(i).trim()) repairs.add("surrounding_text");
        return out;
      }
      continue;
    }
    if (c === "," || c === ":") {
      out.push(c);
      i++;
      continue;
    }
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    if (/[-0-9]/.test(c)) {
      const m = /^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?/.exec(text.slice(i));
      if (m) {
        out.push(m[0]);
        i += m[0].length;
        continue;
      }
    }
    const word = /^[A-Za-z_$][A-Za-z0-9_$]*/.exec(text.slice(i));
    if (word) {
      const w = word[0];
      const after = text.slice(i + w.length).trimStart();
      if (after.startsWith(":") && stack[stack.length - 1] === "{") {
        out.push(JSON.stringify(w));
        repairs.add("unquoted_keys");
      } else if (w === "True" || w === "False" || w === "None") {
        out.push(w === "True" ? "true" : w === "False" ? "false" : "null");
        repairs.add("python_literals");
      } else {
        out.push(w);  // true/false/null, or garbage the parser will name
      }
      i += w.length;
      continue;
    }
    out.push(c);  // anything else goes through and fails in JSON.parse with a position
    i++;
  }

  if (stack.length) {
    repairs.add("truncated");
    // Drop what cannot stand at the end: a comma, a key with or without its colon.
    for (;;) {
      const last = lastToken();
      if (last === ",") {
        out.pop();
        continue;
      }
      if (last === ":") {
        out.pop();
        out.pop();
        continue;
      }
      const before = out[out.length - 2];
      if (stack[stack.length - 1] === "{" && last?.startsWith('"') && (before === "{" || before === ",")) {
        out.pop();
        continue;
      }
      break;
    }
    while (stack.length) out.push(stack.pop() === "{" ? "}" : "]");
  }
  return out;
}

/** Reads a '…' or "…" string starting at `start`; returns it as a JSON string literal. */
function readString(text: string, start: number): { json: string; end: number; closed: boolean; fixedControl: boolean } {
  const quote = text[start]!;
  let value = "";
  let i = start + 1;
  let fixedControl = false;
  while (i < text.length) {
    const c = text[i]!;
    if (c === quote) return { json: JSON.stringify(value), end: i + 1, closed: true, fixedControl };
    if (c === "\\") {
      const next = text[i + 1];
      if (next === undefined) break;
      const simple: Record<string, string> = { '"': '"', "'": "'", "\\": "\\", "/": "/", b: "\b", f: "\f", n: "\n", r: "\r", t: "\t" };
      if (next === "u" && /^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6))) {
        value += String.fromCharCode(parseInt(text.slice(i + 2, i + 6), 16));
        i += 6;
      } else {
        value += simple[next] ?? next;
        i += 2;
      }
      continue;
    }
    if (c < " ") fixedControl = true;
    value += c;
    i++;
  }
  return { json: JSON.stringify(value), end: text.length, closed: false, fixedControl };
}
