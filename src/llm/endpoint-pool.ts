// Several LLM backends used as one: each has its own concurrency limit, requests go to the
// least-loaded healthy backend, and a failed attempt moves to another backend (failover). A
// backend that fails is left to cool down (its Retry-After, else exponential backoff); one that
// answers with a non-retryable error (bad model name, bad key) is taken out of the pool.
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
    let lastError: unknown;
    for (let attempt = 0; attempt < this.maxAttempts; attempt++) {
      const slot = await this.acquire(tried, request.signal);
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
        if (!e.retryable) {
          // Wrong model name, bad key, bad request: this backend will not get better by waiting.
          slot.disabled = e.message;
          if (this.slots.every((s) => s.disabled)) throw e;
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
   * not tried yet, then the lowest load (in flight / concurrency), then the fewest requests.
   * The returned slot is already counted as in flight.
   */
  private async acquire(tried: Set<Slot>, signal?: AbortSignal): Promise<Slot> {
    for (;;) {
      if (signal?.aborted) throw signal.reason;
      const live = this.slots.filter((s) => !s.disabled);
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
