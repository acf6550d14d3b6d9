// The server's one model runs one generation at a time (native generate refuses a second call
// while one runs); requests wait here in arrival order. The wait is bounded: when `maxWaiting`
// requests already wait, a new one is refused at once with 429 and a Retry-After, instead of
// piling up behind a queue no client would wait for. A waiting request whose client goes away
// leaves the queue without running.
import { ApiError } from "./api-error.js";

interface Waiter {
  start: () => void;
}

export class GenerationQueue {
  private running = false;
  private readonly waiting: Waiter[] = [];

  constructor(readonly maxWaiting: number) {
    if (!Number.isInteger(maxWaiting) || maxWaiting < 0) {
      throw new RangeError(`[GenerationQueue] expected maxWaiting >= 0, got ${maxWaiting}`);
    }
  }

  /** Requests waiting (not counting the one running). */
  get depth(): number {
    return this.waiting.length;
  }

  get busy(): boolean {
    return this.running;
  }

  /** Runs `job` when the model is free; rejects with 429 when the queue is full, or with the signal's reason. */
  async run<T>(job: () => Promise<T>, signal: AbortSignal): Promise<T> {
    signal.throwIfAborted();
    if (this.running) {
      if (this.waiting.length >= this.maxWaiting) {
        throw new ApiError(429, `the server is busy: ${this.waiting.length} requests already wait for the model (--max-queue ${this.maxWaiting}); retry later`,
          "rate_limit_error", null, "queue_full", { "retry-after": "1" });
      }
      await new Promise<void>((resolve, reject) => {
        const waiter: Waiter = {
          start: () => {
            signal.removeEventListener("abort", onAbort);
            resolve();
          },
        };
        const onAbort = () => {
          const i = this.waiting.indexOf(waiter);
          if (i >= 0) this.waiting.splice(i, 1);
          reject(signal.reason);
        };
        signal.addEventListener("abort", onAbort, { once: true });
        this.waiting.push(waiter);
      });
    }
    this.running = true;
    try {
      return await job();
    } finally {
      const next = this.waiting.shift();
      if (next) next.start();  // the model passes straight to the next request
      else this.running = false;
    }
  }
}
