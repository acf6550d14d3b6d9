// The byte-level recognizer behind constrained decoding: a pushdown automaton over UTF-8 bytes
// for the grammar of json-schema.ts. A state is the set of ways the bytes so far can continue
// (anyOf and ambiguous prefixes such as enum ["1", "12"] keep several); each is an immutable
// stack of frames, so advancing one byte shares everything below the top and a trie walk can
// branch from one state into many without copying. Every accepted byte keeps the text a prefix of
// some complete value of the schema (nothing accepted leads to a dead end: strings close, numbers
// have digit limits, arrays close once minItems is met), and canEnd says when the text is itself
// complete. No whitespace is accepted outside strings except one optional space before the value
// (SentencePiece decoders drop the first token's leading space; JSON allows it).
import { NUMBER_DIGITS, type SchemaNode } from "./json-schema.js";

const QUOTE = 0x22, BACKSLASH = 0x5c, COMMA = 0x2c, COLON = 0x3a, SPACE = 0x20;
const LBRACE = 0x7b, RBRACE = 0x7d, LBRACKET = 0x5b, RBRACKET = 0x5d, MINUS = 0x2d, PLUS = 0x2b, DOT = 0x2e;

function isDigit(b: number): boolean {
  return b >= 0x30 && b <= 0x39;
}
function isHex(b: number): boolean {
  return isDigit(b) || (b >= 0x41 && b <= 0x46) || (b >= 0x61 && b <= 0x66);
}

const utf8 = new TextEncoder();
const literals = new WeakMap<SchemaNode, LiteralText[]>();

/** A literal alternative: its bytes and what its completion reports to the parent. */
interface LiteralText {
  bytes: Uint8Array;
  result: number;
}

type Frame =
  | { t: "start" } // before the root value (the optional leading space)
  | { t: "value"; node: SchemaNode } // a value of node begins with the next byte
  | { t: "done" } // the root value is complete: only the end of the sequence may follow
  | { t: "lit"; texts: LiteralText[]; pos: number }
  // A string after its opening quote. esc: 0 none, 1 after a backslash, 2..5 hex digits of \u
  // read so far + 2 (7: after \uD, where a surrogate must not follow). utf: continuation bytes still due, the next one in [lo, hi]. Keys that must
  // not repeat a listed property collect their raw bytes in `raw`.
  | { t: "str"; min: number; max: number; len: number; esc: number; utf: number; lo: number; hi: number; forbid: Set<string> | null; raw: string }
  // A number. s: 0 start, 1 after '-', 2 leading 0, 3 integer digits, 4 after '.', 5 fraction
  // digits, 6 after e/E, 7 after the exponent's sign, 8 exponent digits; n digits in this part.
  | { t: "num"; integer: boolean; s: number; n: number }
  // An object. phase: open (after '{'), after (a member), comma (after ','), key (a key is being
  // read), colon (after a key), value (a value is being read). next: the first listed property
  // not passed yet (all of them once an extra one came); cur: the property whose key was read
  // (-1: an extra one).
  | { t: "obj"; node: SchemaNode & { kind: "object" }; phase: "open" | "after" | "comma" | "key" | "colon" | "value"; next: number; cur: number }
  | { t: "arr"; node: SchemaNode & { kind: "array" }; phase: "open" | "after" | "comma" | "item"; count: number };

interface Thread {
  readonly frame: Frame;
  readonly up: Thread | null;
}

/** The recognizer's state: the live alternatives (empty = dead). */
export type RecognizerState = readonly Thread[];

const DONE: Thread = { frame: { t: "done" }, up: null };

/** The state before any byte, for a compiled schema. */
export function initialState(root: SchemaNode): RecognizerState {
  return [{ frame: { t: "start" }, up: { frame: { t: "value", node: root }, up: null } }];
}

/** Whether the text so far is a complete value (the end-of-sequence token may come now). */
export function canEnd(state: RecognizerState): boolean {
  for (const th of state) {
    if (th.frame.t === "done") return true;
    if (th.frame.t === "num" && th.up === null && numberComplete(th.frame)) return true;
  }
  return false;
}

/** The state after one more byte (empty when the byte is not allowed). */
export function advance(state: RecognizerState, b: number): RecognizerState {
  const out: Thread[] = [];
  for (const th of state) feed(th, b, out);
  return out;
}

/** The state after some bytes, or an empty state as soon as one is not allowed. */
export function advanceBytes(state: RecognizerState, bytes: Uint8Array): RecognizerState {
  let s = state;
  for (let i = 0; i < bytes.length && s.length > 0; i++) s = advance(s, bytes[i]!);
  return s;
}

function numberComplete(f: { s: number }): boolean {
  return f.s === 2 || f.s === 3 || f.s === 5 || f.s === 8;
}

/** The value on top of `up`'s child finished (result: the literal or key index): the parent moves on. */
function finish(up: Thread | null, result: number): Thread {
  if (up === null) return DONE;
  const f = up.frame;
  if (f.t === "obj") {
    if (f.phase === "key") return { frame: { ...f, phase: "colon", cur: result }, up: up.up };
    // phase value
    return { frame: { ...f, phase: "after", next: f.cur >= 0 ? f.cur + 1 : f.node.props.length, cur: -1 }, up: up.up };
  }
  if (f.t === "arr") return { frame: { ...f, phase: "after", count: f.count + 1 }, up: up.up };
  if (f.t === "value" || f.t === "start") return DONE; // unreachable: values are replaced, not stacked
  throw new Error(`json recognizer: cannot return to a ${f.t} frame`);
}

/** A child frame of `parent` (the parent already in its waiting phase) starting with byte b. */
function startValue(node: SchemaNode, parent: Thread | null, b: number, out: Thread[]): void {
  switch (node.kind) {
    case "anyOf":
      for (const o of node.options) startValue(o, parent, b, out);
      return;
    case "literal": {
      let texts = literals.get(node);
      if (!texts) literals.set(node, (texts = node.texts.map((t, i) => ({ bytes: utf8.encode(t), result: i }))));
      feedLiteral(texts, 0, parent, b, out);
      return;
    }
    case "string":
      if (b === QUOTE) out.push({ frame: { t: "str", min: node.minLength, max: node.maxLength, len: 0, esc: 0, utf: 0, lo: 0, hi: 0, forbid: null, raw: "" }, up: parent });
      return;
    case "number":
      feedNumber({ t: "num", integer: node.integer, s: 0, n: 0 }, parent, b, out);
      return;
    case "object":
      if (b === LBRACE) out.push({ frame: { t: "obj", node, phase: "open", next: 0, cur: -1 }, up: parent });
      return;
    case "array":
      if (b === LBRACKET) out.push({ frame: { t: "arr", node, phase: "open", count: 0 }, up: parent });
      return;
  }
}

function feed(th: Thread, b: number, out: Thread[]): void {
  const f = th.frame;
  switch (f.t) {
    case "start": {
      const value = th.up!;
      if (b === SPACE) out.push(value); // the one leading space
      else feed(value, b, out);
      return;
    }
    case "value":
      startValue(f.node, th.up, b, out);
      return;
    case "done":
      return;
    case "lit":
      feedLiteral(f.texts, f.pos, th.up, b, out);
      return;
    case "str":
      feedString(f, th.up, b, out);
      return;
    case "num":
      feedNumber(f, th.up, b, out);
      return;
    case "obj":
      feedObject(f, th, b, out);
      return;
    case "arr":
      feedArray(f, th, b, out);
      return;
  }
}

function feedLiteral(texts: LiteralText[], pos: number, up: Thread | null, b: number, out: Thread[]): void {
  let rest: LiteralText[] | undefined;
  for (const t of texts) {
    if (t.bytes[pos] !== b) continue;
    if (t.bytes.length === pos + 1) out.push(finish(up, t.result));
    else (rest ??= []).push(t);
  }
  if (rest) out.push({ frame: { t: "lit", texts: rest, pos: pos + 1 }, up });
}

/**
 * One byte inside a string, as a pure function of the string's position class (esc, utf, lo, hi:
 * see the str frame): STRING_CLOSE for the closing quote, STRING_INVALID for a refused byte, else
 * the next class packed as inc << 24 | esc << 20 | utf << 16 | lo << 8 | hi, where inc = 1 when
 * the byte starts a character (what maxLength counts). Shared by the recognizer and the mask's
 * per-class token sets, so both read bytes the same way.
 */
export function stringByte(esc: number, utf: number, lo: number, hi: number, b: number): number {
  const pack = (inc: number, e: number, u: number, l: number, h: number) => (inc << 24) | (e << 20) | (u << 16) | (l << 8) | h;
  if (utf > 0) return b < lo || b > hi ? STRING_INVALID : pack(0, 0, utf - 1, 0x80, 0xbf);
  if (esc === 1) {
    if (b === 0x75) return pack(0, 2, 0, 0, 0); // \u: four hex digits follow
    const simple = b === QUOTE || b === BACKSLASH || b === 0x2f || b === 0x62 || b === 0x66 || b === 0x6e || b === 0x72 || b === 0x74;
    return simple ? pack(0, 0, 0, 0, 0) : STRING_INVALID;
  }
  if (esc >= 2) {
    if (!isHex(b)) return STRING_INVALID;
    // \uD800-\uDFFF (surrogates) are refused: a pair would count as two characters here and one
    // for a validator; characters beyond the BMP come as UTF-8 instead.
    if (esc === 7 && b > 0x37) return STRING_INVALID; // after \uD: only 0-7
    return pack(0, esc === 2 && (b === 0x64 || b === 0x44) ? 7 : esc === 7 ? 4 : esc === 5 ? 0 : esc + 1, 0, 0, 0);
  }
  if (b === QUOTE) return STRING_CLOSE;
  if (b < 0x20) return STRING_INVALID; // control characters must be escaped
  if (b === BACKSLASH) return pack(1, 1, 0, 0, 0);
  if (b < 0x80) return pack(1, 0, 0, 0, 0);
  if (b >= 0xc2 && b <= 0xdf) return pack(1, 0, 1, 0x80, 0xbf);
  if (b === 0xe0) return pack(1, 0, 2, 0xa0, 0xbf);
  if (b === 0xed) return pack(1, 0, 2, 0x80, 0x9f); // no surrogates
  if (b >= 0xe1 && b <= 0xef) return pack(1, 0, 2, 0x80, 0xbf);
  if (b === 0xf0) return pack(1, 0, 3, 0x90, 0xbf);
  if (b >= 0xf1 && b <= 0xf3) return pack(1, 0, 3, 0x80, 0xbf);
  if (b === 0xf4) return pack(1, 0, 3, 0x80, 0x8f);
  return STRING_INVALID;
}
export const STRING_CLOSE = -2, STRING_INVALID = -1;

function feedString(f: Frame & { t: "str" }, up: Thread | null, b: number, out: Thread[]): void {
  const r = stringByte(f.esc, f.utf, f.lo, f.hi, b);
  if (r === STRING_INVALID) return;
  if (r === STRING_CLOSE) {
    if (f.len < f.min) return;
    if (f.forbid && f.forbid.has(f.raw)) return;
    out.push(finish(up, -1));
    return;
  }
  // Every character (code point) counts at its first byte, as JSON Schema and zod count length.
  const len = f.len + (r >>> 24);
  if (len > f.max) return;
  const raw = f.forbid ? f.raw + String.fromCharCode(b) : "";
  out.push({ frame: { ...f, len, esc: (r >>> 20) & 0xf, utf: (r >>> 16) & 0xf, lo: (r >>> 8) & 0xff, hi: r & 0xff, raw }, up });
}

function feedNumber(f: Frame & { t: "num" }, up: Thread | null, b: number, out: Thread[]): void {
  const next = (s: number, n: number) => out.push({ frame: { t: "num", integer: f.integer, s, n }, up });
  const digit = isDigit(b);
  switch (f.s) {
    case 0:
      if (b === MINUS) next(1, 0);
      else if (b === 0x30) next(2, 1);
      else if (digit) next(3, 1);
      return;
    case 1:
      if (b === 0x30) next(2, 1);
      else if (digit) next(3, 1);
      return;
    case 2:
    case 3:
      if (digit && f.s === 3 && f.n < NUMBER_DIGITS.integer) next(3, f.n + 1);
      else if (b === DOT && !f.integer) next(4, 0);
      else if ((b === 0x65 || b === 0x45) && !f.integer) next(6, 0);
      else if (!digit) feedAfter(up, b, out);
      return;
    case 4:
      if (digit) next(5, 1);
      return;
    case 5:
      if (digit) {
        if (f.n < NUMBER_DIGITS.fraction) next(5, f.n + 1);
      } else if (b === 0x65 || b === 0x45) next(6, 0);
      else feedAfter(up, b, out);
      return;
    case 6:
      if (b === MINUS || b === PLUS) next(7, 0);
      else if (digit) next(8, 1);
      return;
    case 7:
      if (digit) next(8, 1);
      return;
    case 8:
      if (digit) {
        if (f.n < NUMBER_DIGITS.exponent) next(8, f.n + 1);
      } else feedAfter(up, b, out);
      return;
  }
}

/** A complete number ended by byte b, which belongs to the parent. */
function feedAfter(up: Thread | null, b: number, out: Thread[]): void {
  if (up === null) return; // the root number: nothing may follow
  feed(finish(up, -1), b, out);
}

/** The key alternatives after an object's '"': listed properties reachable from `next`, and extra ones. */
function startKey(f: Frame & { t: "obj" }, th: Thread, out: Thread[]): void {
  const parent: Thread = { frame: { ...f, phase: "key" }, up: th.up };
  const props = f.node.props;
  const texts: LiteralText[] = [];
  for (let j = f.next; j < props.length; j++) {
    texts.push({ bytes: utf8.encode(JSON.stringify(props[j]!.key)), result: j });
    if (props[j]!.required) break; // a required property cannot be skipped
  }
  if (texts.length > 0) out.push({ frame: { t: "lit", texts, pos: 1 }, up: parent });
  // Extra properties come after the listed ones (once no required one is left), so a model
  // cannot wander through extra keys while a required property is still due.
  if (f.node.additional && closable(f)) {
    let forbid = forbidden.get(f.node);
    if (!forbid) {
      forbid = new Set(props.map((p) => Buffer.from(JSON.stringify(p.key).slice(1, -1), "utf8").toString("latin1")));
      forbidden.set(f.node, forbid);
    }
    out.push({ frame: { t: "str", min: 0, max: Infinity, len: 0, esc: 0, utf: 0, lo: 0, hi: 0, forbid, raw: "" }, up: parent });
  }
}
const forbidden = new WeakMap<SchemaNode, Set<string>>();

function closable(f: Frame & { t: "obj" }): boolean {
  const props = f.node.props;
  for (let j = f.next; j < props.length; j++) if (props[j]!.required) return false;
  return true;
}

function feedObject(f: Frame & { t: "obj" }, th: Thread, b: number, out: Thread[]): void {
  switch (f.phase) {
    case "open":
    case "after":
      if (b === RBRACE) {
        if (closable(f)) out.push(finish(th.up, -1));
      } else if (f.phase === "open" && b === QUOTE) startKey(f, th, out);
      else if (f.phase === "after" && b === COMMA && (f.next < f.node.props.length || f.node.additional)) {
        out.push({ frame: { ...f, phase: "comma" }, up: th.up });
      }
      return;
    case "comma":
      if (b === QUOTE) startKey(f, th, out);
      return;
    case "colon":
      if (b === COLON) {
        const node = f.cur >= 0 ? f.node.props[f.cur]!.schema : f.node.additional!;
        out.push({ frame: { t: "value", node }, up: { frame: { ...f, phase: "value" }, up: th.up } });
      }
      return;
    default:
      return; // key / value: a child is on top
  }
}

function feedArray(f: Frame & { t: "arr" }, th: Thread, b: number, out: Thread[]): void {
  const node = f.node;
  switch (f.phase) {
    case "open":
      if (b === RBRACKET) {
        if (node.minItems === 0) out.push(finish(th.up, -1));
      } else if (node.maxItems > 0) startValue(node.items, { frame: { ...f, phase: "item" }, up: th.up }, b, out);
      return;
    case "after":
      if (b === RBRACKET) {
        if (f.count >= node.minItems) out.push(finish(th.up, -1));
      } else if (b === COMMA && f.count < node.maxItems) out.push({ frame: { ...f, phase: "comma" }, up: th.up });
      return;
    case "comma":
      startValue(node.items, { frame: { ...f, phase: "item" }, up: th.up }, b, out);
      return;
    default:
      return;
  }
}

// ---- string interiors, for the mask's fast path ------------------------------------------------
// Inside a string nearly every token is allowed, so walking the trie there visits all of it. What
// a token does inside a string depends only on the string's escape / UTF-8 position (its "class"),
// not on what encloses it, until the token closes the string. So the mask precomputes, per class,
// the tokens that stay inside (with the characters they add, for maxLength) and the few that
// close it (checked against the real state one by one).

/** The class of a state that is one string (and nothing else), or undefined. */
export function stringClass(state: RecognizerState): { key: string; len: number; max: number } | undefined {
  if (state.length !== 1) return undefined;
  const f = state[0]!.frame;
  if (f.t !== "str") return undefined;
  return { key: `${f.esc},${f.utf},${f.lo},${f.hi}`, len: f.len, max: f.max };
}


/**
 * What `bytes` do from a string of class `key`: "inside" with the characters they add, "closes"
 * (an unescaped quote ends the string within them), or "invalid" (refused while inside).
 */
export function classifyInString(key: string, bytes: Uint8Array): { kind: "inside"; chars: number } | { kind: "closes" } | { kind: "invalid" } {
  let [esc, utf, lo, hi] = key.split(",").map(Number) as [number, number, number, number];
  let chars = 0;
  for (const b of bytes) {
    const r = stringByte(esc, utf, lo, hi, b);
    if (r === STRING_INVALID) return { kind: "invalid" };
    if (r === STRING_CLOSE) return { kind: "closes" };
    chars += r >>> 24;
    esc = (r >>> 20) & 0xf;
    utf = (r >>> 16) & 0xf;
    lo = (r >>> 8) & 0xff;
    hi = r & 0xff;
  }
  return { kind: "inside", chars };
}
