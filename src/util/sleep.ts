// Waiting that an AbortSignal can cut short, and the backoff delays retries use.

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** Exponential backoff with full jitter in [base*2^attempt / 2, base*2^attempt], capped at maxMs. */
export function backoffMs(attempt: number, baseMs: number, maxMs: number, random: () => number = Math.random): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** attempt);
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

/**
 * Retry-After (RFC 9110): delay-seconds or an HTTP-date. Returns milliseconds, or undefined when
 * the header is absent or unreadable.
 */
export function parseRetryAfter(value: string | null | undefined, now = Date.now()): number | undefined {
  if (!value) return undefined;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed) * 1000;
  const date = Date.parse(trimmed);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

/**
 * Waits for `event`, at most `ms` milliseconds (undefined: no limit), or until `signal` aborts
 * (then rejects with its reason). Leaves no timer or listener behind.
 */
export async function waitAtMost(event: Promise<void>, ms: number | undefined, signal?: AbortSignal): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let onAbort: (() => void) | undefined;
  const stops: Promise<void>[] = [event];
  if (ms !== undefined) stops.push(new Promise<void>((resolve) => (timer = setTimeout(resolve, ms))));
  if (signal) {
    if (signal.aborted) throw signal.reason;
    stops.push(new Promise<void>((_, reject) => {
      onAbort = () => reject(signal.reason);
      signal.addEventListener("abort", onAbort, { once: true });
    }));
  }
  try {
    await Promise.race(stops);
  } finally {
    if (timer) clearTimeout(timer);
    if (onAbort) signal!.removeEventListener("abort", onAbort);
  }
}
