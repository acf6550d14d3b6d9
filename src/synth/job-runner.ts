// Runs the items of one stage of a job with bounded concurrency. Each item's work is a function
// of its input; its LLM calls and lookups go through ctx.step(), which stores each step's result
// so an interrupted item resumes after its last finished step. An item ends kept, rejected (with
// a reason) or failed (an error; retried on the next run until max attempts).
import type { JobStore } from "./job-store.js";
import type { TokenUsage } from "../llm/types.js";
import { noUsage } from "../llm/types.js";
import type { ProgressReporter } from "./progress.js";

/** Thrown inside an item to reject it; the reason is counted in the report. */
export class Rejection extends Error {
  /** Tokens the rejected step spent (kept in the job's totals although the step is not stored). */
  usage?: TokenUsage;

  constructor(readonly reason: string, readonly detail?: string, readonly output?: unknown) {
    super(`${reason}${detail ? `: ${detail}` : ""}`);
    this.name = "Rejection";
  }
}

export interface ItemContext<I> {
  id: string;
  input: I;
  signal: AbortSignal;
  /** Returns the stored result of `name` for this item, or runs `fn` and stores its result. */
  step<T>(name: string, fn: () => Promise<{ value: T; usage?: TokenUsage }>): Promise<T>;
}

export interface RunItemsOptions<I> {
  stage: string;
  concurrency: number;
  maxAttempts: number;
  process: (ctx: ItemContext<I>) => Promise<unknown>;
  progress: ProgressReporter;
  signal?: AbortSignal;
}

export interface RunItemsResult {
  processed: number;
  interrupted: boolean;
}

export async function runItems<I>(store: JobStore, options: RunItemsOptions<I>): Promise<RunItemsResult> {
  const { stage } = options;
  const work = store.workList(stage, options.maxAttempts);
  const signal = options.signal ?? new AbortController().signal;
  const counts = () => {
    const t = store.tally(stage);
    const done = t.byStatus.kept + t.byStatus.rejected + t.byStatus.failed;
    return { done, total: t.items, kept: t.byStatus.kept, rejected: t.byStatus.rejected, failed: t.byStatus.failed };
  };
  options.progress.update(counts());
  let next = 0;
  let processed = 0;

  const worker = async () => {
    while (!signal.aborted && next < work.length) {
      const item = work[next++]!;
      store.markRunning(stage, item.id);
      const ctx: ItemContext<I> = {
        id: item.id,
        input: item.input as I,
        signal,
        step: async <T>(name: string, fn: () => Promise<{ value: T; usage?: TokenUsage }>) => {
          const stored = store.getStep(stage, item.id, name);
          if (stored) return stored.value as T;
          const { value, usage } = await fn();
          store.putStep(stage, item.id, name, value, usage ?? noUsage);
          return value;
        },
      };
      try {
        const output = await options.process(ctx);
        store.finish(stage, item.id, { status: "kept", output });
      } catch (e) {
        if (signal.aborted) break;  // stays "running": resumed next time from its stored steps
        if (e instanceof Rejection) {
          if (e.usage) store.putStep(stage, item.id, `rejected:${e.reason}`, null, e.usage);
          store.finish(stage, item.id, { status: "rejected", reason: e.reason, ...(e.detail ? { detail: e.detail } : {}), output: e.output });
        } else {
          store.finish(stage, item.id, { status: "failed", error: (e as Error)?.message ?? String(e) });
        }
      }
      processed++;
      options.progress.update(counts());
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(options.concurrency, work.length)) }, worker));
  options.progress.finish(counts());
  return { processed, interrupted: signal.aborted };
}
