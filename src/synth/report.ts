// synth/report.json: what a job kept and what it rejected, by reason. The run report (issue 6)
// reads the top-level {kept, rejected: {reason: count}}; `stages` has each stage's own counts,
// tokens and time. Items that failed with errors until their attempts ran out count as the
// rejection reason "error".
import path from "node:path";
import { writeFileAtomic } from "../io/atomic-write.js";
import type { JobStore } from "./job-store.js";

export interface StageReport {
  items: number;
  kept: number;
  rejected: Record<string, number>;
  failed: number;
  unfinished: number;
  /** Repairs applied to kept outputs, by rule. */
  repairs?: Record<string, number>;
  tokens: { prompt: number; completion: number };
  seconds: number;
}

export interface SynthReport {
  kept: number;
  rejected: Record<string, number>;
  /** The dataset the kept rows are in. */
  output: string;
  stages: Record<string, StageReport>;
  /** Rows of slice 0 (used to fine-tune the curation model; in the output only with include_slice0). */
  slice0?: number;
}

export function stageReport(store: JobStore, stage: string): StageReport {
  const t = store.tally(stage);
  const report: StageReport = {
    items: t.items,
    kept: t.byStatus.kept,
    rejected: t.reasons,
    failed: t.byStatus.failed,
    unfinished: t.byStatus.pending + t.byStatus.running,
    tokens: { prompt: t.usage.promptTokens, completion: t.usage.completionTokens },
    seconds: Math.round(Number(store.getMeta(`seconds:${stage}`) ?? 0) * 10) / 10,
  };
  const repairs: Record<string, number> = {};
  for (const item of store.items(stage, "kept")) {
    for (const rule of ((item.output as { repairs?: string[] } | null)?.repairs ?? [])) repairs[rule] = (repairs[rule] ?? 0) + 1;
  }
  if (Object.keys(repairs).length) report.repairs = repairs;
  return report;
}

/** The whole funnel: generation rejections, then curation's; kept is what the output file holds. */
export function buildReport(stages: Record<string, StageReport>, output: string, kept: number, slice0?: number): SynthReport {
  const rejected: Record<string, number> = {};
  for (const s of Object.values(stages)) {
    for (const [reason, n] of Object.entries(s.rejected)) rejected[reason] = (rejected[reason] ?? 0) + n;
    if (s.failed) rejected.error = (rejected.error ?? 0) + s.failed;
  }
  return { kept, rejected, output, stages, ...(slice0 !== undefined ? { slice0 } : {}) };
}

export function writeReport(jobDir: string, report: SynthReport): string {
  const file = path.join(jobDir, "report.json");
  writeFileAtomic(file, JSON.stringify(report, null, 2) + "\n");
  return file;
}

export function formatSummary(task: string, report: SynthReport, stage: StageReport): string {
  const reasons = Object.entries(stage.rejected).sort((a, b) => b[1] - a[1]).map(([r, n]) => `${r} ${n}`).join(", ");
  return [
    `${task}: ${stage.items} items, kept ${stage.kept}, rejected ${Object.values(stage.rejected).reduce((a, b) => a + b, 0)}` +
      `${reasons ? ` (${reasons})` : ""}, failed ${stage.failed}, unfinished ${stage.unfinished}`,
    `tokens: ${stage.tokens.prompt} prompt + ${stage.tokens.completion} completion; time ${stage.seconds}s`,
    ...(stage.repairs ? [`repairs: ${Object.entries(stage.repairs).map(([r, n]) => `${r} ${n}`).join(", ")}`] : []),
    `output: ${report.output} (${report.kept} rows)`,
  ].join("\n");
}
