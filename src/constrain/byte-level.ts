// GPT-2's bytes_to_unicode: the printable character a byte-level BPE vocabulary (GPT-2, Llama 3,
// Qwen2) writes for each byte. Printable Latin-1 bytes stand for themselves; the other 68 map to
// U+0100 onwards in byte order.
export function byteLevelCharacters(): string[] {
  const bs: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) bs.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
  for (let b = 0xae; b <= 0xff; b++) bs.push(b);
  const cs = [...bs];
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) {
      bs.push(b);
      cs.push(256 + n++);
    }
  }
  const table: string[] = [];
  bs.forEach((b, i) => (table[b] = String.fromCodePoint(cs[i]!)));
  return table;
}
