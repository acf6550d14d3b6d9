// What the native core is and runs on, and its process-wide settings (threads, kernel path).
import { addon, loadAddon, type IsaName, type NativeInfo } from "../bindings/native.js";

export type { IsaName, NativeInfo };

/** Build, CPU and kernel information from the native core. */
export function nativeInfo(): NativeInfo & { addonPath: string } {
  const { addon: native, path } = loadAddon();
  return { ...native.info(), addonPath: path };
}

/** Threads the native ops use (default: the machine's logical cores, or S2S_NUM_THREADS). */
export function setNumThreads(threads: number): void {
  addon().setNumThreads(threads);
}

/** Forces a lower instruction-set path (tests, bug reports); throws if the CPU lacks it. */
export function setIsa(isa: IsaName): void {
  addon().setIsa(isa);
}
