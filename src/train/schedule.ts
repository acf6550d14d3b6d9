// Learning-rate schedules with linear warmup, on transformers' curves (get_constant_schedule_with_warmup,
// get_linear_schedule_with_warmup, get_cosine_schedule_with_warmup with half a cosine cycle).
// As in transformers, the factor is a function of the steps already taken: optimizer step s
// (from 1) uses factor(s - 1), so with warmup the first update has learning rate 0.

export type SchedulerName = "constant" | "linear" | "cosine";

export interface ScheduleOptions {
  scheduler: SchedulerName;
  /** Peak learning rate. */
  lr: number;
  warmupSteps: number;
  totalSteps: number;
}

/** transformers' warmup_steps from warmup_ratio: ceil(total * ratio). */
export function warmupStepsFor(totalSteps: number, warmupSteps: number, warmupRatio: number): number {
  return warmupSteps > 0 ? warmupSteps : Math.ceil(totalSteps * warmupRatio);
}

/** The multiplier of the peak rate after `stepsTaken` optimizer steps. */
export function scheduleFactor(o: Omit<ScheduleOptions, "lr">, stepsTaken: number): number {
  const { warmupSteps: warmup, totalSteps: total } = o;
  if (stepsTaken < warmup) return stepsTaken / Math.max(1, warmup);
  switch (o.scheduler) {
    case "constant":
      return 1;
    case "linear":
      return Math.max(0, (total - stepsTaken) / Math.max(1, total - warmup));
    case "cosine": {
      const progress = (stepsTaken - warmup) / Math.max(1, total - warmup);
      return Math.max(0, 0.5 * (1 + Math.cos(Math.PI * progress)));
    }
  }
}

/** The learning rate optimizer step `step` (from 1) uses. */
export function learningRateAt(o: ScheduleOptions, step: number): number {
  return o.lr * scheduleFactor(o, step - 1);
}
