// Stop sequences over streamed text: text is released as soon as it cannot be the start of a stop
// sequence, the first complete stop sequence ends the output (and is not part of it), and the
// text after it is dropped. Any occurrence of a stop starts at or after the released text,
// because the held-back tail is the longest suffix that is a prefix of some stop sequence.

export class StopMatcher {
  private text = "";
  private released = 0;
  private hit = false;

  constructor(private readonly stops: readonly string[]) {}

  /** Whether a stop sequence was found (nothing more is released after it). */
  get stopped(): boolean {
    return this.hit;
  }

  /** The output so far: everything before the stop sequence once one was found. */
  get output(): string {
    return this.text;
  }

  /** Adds generated text; returns the part that can be shown now. */
  push(piece: string): string {
    if (this.hit) return "";
    this.text += piece;
    let cut = -1;
    for (const s of this.stops) {
      const i = this.text.indexOf(s, this.released);
      if (i >= 0 && (cut < 0 || i < cut)) cut = i;
    }
    if (cut >= 0) {
      this.hit = true;
      this.text = this.text.slice(0, cut);
      return this.release(cut);
    }
    let hold = 0;
    for (const s of this.stops) {
      for (let k = Math.min(s.length - 1, this.text.length - this.released); k > hold; k--) {
        if (this.text.endsWith(s.slice(0, k))) {
          hold = k;
          break;
        }
      }
    }
    return this.release(this.text.length - hold);
  }

  /** At the end of generation: the held-back tail (it did not become a stop sequence). */
  flush(): string {
    return this.release(this.text.length);
  }

  private release(upTo: number): string {
    const out = this.text.slice(this.released, upTo);
    this.released = Math.max(this.released, upTo);
    return out;
  }
}

/** The text before the first stop sequence in `text` (for output decoded as a whole). */
export function cutAtStop(text: string, stops: readonly string[]): { text: string; stopped: boolean } {
  let cut = -1;
  for (const s of stops) {
    const i = text.indexOf(s);
    if (i >= 0 && (cut < 0 || i < cut)) cut = i;
  }
  return cut < 0 ? { text, stopped: false } : { text: text.slice(0, cut), stopped: true };
}
