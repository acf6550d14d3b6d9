// Several LLM backends used as one: each has its own concurrency limit, requests go to the
// least-loaded healthy backend, and a failed attempt moves to another backend (failover). A
// backend that fails is left to cool down (its Retry-After, else exponential backoff); one that
// answers that it cannot serve at all (bad model name, bad key: 401/403/404/405/501) is taken out
// of the pool. Any other refusal (400, 413, 422: this request's prompt is too long for that
// server's context, say) fails the request on that backend only: the request goes to a backend
// it has not tried yet, and when none is left the refusal is the request's error.
import { LlmError, type CompletionRequest, type CompletionResult, type LlmBackend } from "./types.js";
import { backoffMs, waitAtMost } from "../util/sleep.js";

export interface PoolMember {
  backend: LlmBackend;
  concurrency: number;
}

export interface EndpointPoolOptions {
  /** Attempts per request over all backends (default 5). */
  maxAttempts?: number;
  /** First cooldown after a failure; doubles with each consecutive failure (default 1000 ms). */
  baseDelayMs?: number;
  maxDelayMs?: number;
}

export interface BackendStats {
  name: string;
  requests: number;
  failures: number;
  promptTokens: number;
  completionTokens: number;
  /** Why the backend was taken out of the pool, if it was. */
  disabled?: string;
}

interface Slot {
  member: PoolMember;
  inFlight: number;
  consecutiveFailures: number;
  coolUntil: number;
  disabled?: string;
  stats: BackendStats;
}

export class EndpointPool implements LlmBackend {
  readonly name = "pool";
  private readonly slots: Slot[];
  private waiters: (() => void)[] = [];
  private readonly maxAttempts: number;
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;

  constructor(members: PoolMember[], options: EndpointPoolOptions = {}) {
    if (members.length === 0) throw new Error("[EndpointPool] expected at least one backend");
    for (const m of members) {
      if (!Number.isInteger(m.concurrency) || m.concurrency < 1) {
        throw new Error(`[EndpointPool] ${m.backend.name}: expected concurrency >= 1, got ${m.concurrency}`);
      }
    }
    this.slots = members.map((member) => ({
      member, inFlight: 0, consecutiveFailures: 0, coolUntil: 0,
      stats: { name: member.backend.name, requests: 0, failures: 0, promptTokens: 0, completionTokens: 0 },
    }));
    this.maxAttempts = options.maxAttempts ?? 5;
    this.baseDelayMs = options.baseDelayMs ?? 1000;
    this.maxDelayMs = options.maxDelayMs ?? 60_000;
  }

  /** The sum of the members' concurrency: how many requests the pool can have in flight. */
  get capacity(): number {
    return this.slots.reduce((sum, s) => sum + s.member.concurrency, 0);
  }

  stats(): BackendStats[] {
    return this.slots.map((s) => ({ ...s.stats, ...(s.disabled ? { disabled: s.disabled } : {}) }));
  }

  async complete(request: CompletionRequest): Promise<CompletionResult> {
    const tried = new Set<Slot>();
    const refused = new Set<Slot>();  // backends that refused this very request (never asked again)
    let lastError: unknown;
    for (let attempt = 0; attempt < this.maxAttempts; attempt++) {
      const slot = await this.acquire(tried, refused, request.signal);
      tried.add(slot);
      slot.stats.requests++;
      try {
        const result = await slot.member.backend.complete(request);
        slot.consecutiveFailures = 0;
        slot.stats.promptTokens += result.usage.promptTokens;
        slot.stats.completionTokens += result.usage.completionTokens;
        return result;
      } catch (e) {
        if (request.signal?.aborted) throw e;
        lastError = e;
        slot.stats.failures++;
        if (!(e instanceof LlmError)) throw e;
        if (!e.retryable && unusableBackend(e)) {
          // Wrong model name, bad key: this backend will not get better by waiting.
          slot.disabled = e.message;
          if (this.slots.every((s) => s.disabled)) throw e;
        } else if (!e.retryable) {
          // The backend works; it refuses this request. Others may accept it; it is not asked again.
          refused.add(slot);
          if (this.slots.every((s) => s.disabled || refused.has(s))) throw e;
        } else {
          slot.consecutiveFailures++;
          const delay = e.details.retryAfterMs ?? backoffMs(slot.consecutiveFailures - 1, this.baseDelayMs, this.maxDelayMs);
          slot.coolUntil = Date.now() + Math.min(delay, this.maxDelayMs);
        }
      } finally {
        slot.inFlight--;
        this.wake();
      }
    }
    throw new LlmError(`all ${this.maxAttempts} attempts failed; last error: ${(lastError as Error)?.message ?? lastError}`,
      true, { backend: this.name });
  }

  /**
   * Waits for a backend with a free slot that is not cooling down; prefers one this request has
   * not tried yet, then the lowest load (in flight / concurrency), then the fewest requests;
   * never one that refused this request. The returned slot is already counted as in flight.
   */
  private async acquire(tried: Set<Slot>, refused: Set<Slot>, signal?: AbortSignal): Promise<Slot> {
    for (;;) {
      if (signal?.aborted) throw signal.reason;
      const live = this.slots.filter((s) => !s.disabled && !refused.has(s));
      if (live.length === 0) throw new LlmError("every LLM backend has been taken out of the pool", false);
      const now = Date.now();
      const ready = live.filter((s) => s.coolUntil <= now && s.inFlight < s.member.concurrency);
      if (ready.length) {
        const fresh = ready.filter((s) => !tried.has(s));
        const pool = fresh.length ? fresh : ready;
        pool.sort((a, b) => a.inFlight / a.member.concurrency - b.inFlight / b.member.concurrency ||
          a.stats.requests - b.stats.requests);
        const chosen = pool[0]!;
        chosen.inFlight++;  // taken here, synchronously, so concurrent callers see it
        return chosen;
      }
      // Sleep until a slot frees or the earliest cooldown ends.
      const coolEnds = live.filter((s) => s.coolUntil > now).map((s) => s.coolUntil - now);
      const freed = new Promise<void>((resolve) => this.waiters.push(resolve));
      await waitAtMost(freed, coolEnds.length ? Math.min(...coolEnds) : undefined, signal);
    }
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
}

/** HTTP statuses that say the backend cannot serve any request (not just this one). */
const unusableStatus = new Set([401, 403, 404, 405, 501]);

function unusableBackend(e: LlmError): boolean {
  return e.details.status === undefined || unusableStatus.has(e.details.status);
}
