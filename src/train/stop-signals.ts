// SIGINT / SIGTERM during training: the first one asks the loop to stop at the next step boundary
// and save a checkpoint; a second one gives up on that and lets the signal end the process.

export type StopSignal = "SIGINT" | "SIGTERM";

const SIGNAL_NUMBERS: Record<StopSignal, number> = { SIGINT: 2, SIGTERM: 15 };

/** The shell's exit status for a process ended by `signal` (128 + its number). */
export function exitStatusFor(signal: StopSignal): number {
  return 128 + SIGNAL_NUMBERS[signal];
}

/**
 * Aborts `controller` (reason: the signal's name) on the first SIGINT or SIGTERM. Returns the
 * function that removes the handlers again.
 */
export function stopOnSignals(controller: AbortController, say: (message: string) => void = (m) => process.stderr.write(m + "\n")): () => void {
  const signals: StopSignal[] = ["SIGINT", "SIGTERM"];
  const handler = (signal: StopSignal) => {
    if (!controller.signal.aborted) {
      say(`s2s-train: ${signal}: stopping after the current step and saving a checkpoint (send it again to quit without saving)`);
      controller.abort(signal);
      return;
    }
    remove();
    process.kill(process.pid, signal);  // the default action: end the process now
  };
  const remove = () => {
    for (const s of signals) process.off(s, handler);
  };
  for (const s of signals) process.on(s, handler);
  return remove;
}

