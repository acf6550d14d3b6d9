// The train/validation split: a row is held out when a hash of (seed, its content) falls below
// valid_ratio. Decided row by row, so it is
//   seeded    another split_seed gives another split;
//   disjoint  each row lands on exactly one side;
//   stable    adding, removing or reordering other rows never moves a row across the split, and
//             identical rows always land together (no copy of a validation row in training).
import { createHash } from "node:crypto";

/** A number in [0, 1) from sha256(seed, key): the row's position on the split's line. */
export function splitPoint(seed: number, key: string): number {
  const digest = createHash("sha256").update(`${seed}\u0000${key}`).digest();
  // 52 bits, so the value is exact in a double.
  return (digest.readUInt32BE(0) * 2 ** 20 + (digest.readUInt32BE(4) >>> 12)) / 2 ** 52;
}

/** What identifies a row for the split: the values of the fields that make the example. */
export function splitKey(fields: Record<string, unknown>, names: readonly string[]): string {
  return JSON.stringify([...new Set(names)].sort().map((n) => [n, fields[n] ?? null]));
}

/**
 * Indexes (into `points`) of the validation rows: every point below `ratio`. When that leaves
 * none while ratio > 0 and there are at least two rows, the row with the lowest point is held
 * out, so a small file still has something to validate on.
 */
export function validationRows(points: readonly number[], ratio: number): Set<number> {
  const valid = new Set<number>();
  if (ratio <= 0) return valid;
  points.forEach((p, i) => {
    if (p < ratio) valid.add(i);
  });
  if (valid.size === 0 && points.length >= 2) {
    let lowest = 0;
    points.forEach((p, i) => {
      if (p < points[lowest]!) lowest = i;
    });
    valid.add(lowest);
  }
  return valid;
}
