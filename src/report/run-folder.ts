// Reading what a run folder holds, for the report: the trainer's CSV logs (logs/train.csv,
// logs/valid.csv), config.yaml, trainer_state.json (Hugging Face's fields for the best
// checkpoint), metrics.json and predictions.jsonl from evaluation, and synth/report.json from a
// synthetic-data job. Every file is optional, but a folder with none of them is an error; a file
// that is present but malformed is an error naming the file, the line or field, and what was expected.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { parse as parseCsv } from "csv-parse/sync";
import { z } from "zod";
import { FileFormatError, parseJsonText, validate } from "../models/json-file.js";

/** A CSV log: numeric columns, NaN where a cell is empty or "nan". */
export interface CsvLog {
  file: string;
  columns: string[];
  rows: Record<string, number>[];
}

export const TRAIN_COLUMNS = ["step", "epoch", "loss", "learning_rate", "grad_norm", "tokens_per_second", "elapsed_seconds"];
export const VALID_COLUMNS = ["step", "epoch", "eval_loss", "perplexity"];

const trainerStateSchema = z.looseObject({
  best_metric: z.number().nullable().optional(),
  best_model_checkpoint: z.string().nullable().optional(),
  global_step: z.number().int().nonnegative().optional(),
  epoch: z.number().nullable().optional(),
  max_steps: z.number().int().optional(),
});
export type TrainerState = z.infer<typeof trainerStateSchema> & { file: string };

const predictionSchema = z.looseObject({
  input: z.string(),
  reference: z.union([z.string(), z.array(z.string())]),
  prediction: z.string(),
  // NaN scores arrive as null (JSON has no NaN).
  scores: z.record(z.string(), z.number().nullable()).default({}),
  category: z.string().nullable().optional(),
});
export type PredictionRecord = z.infer<typeof predictionSchema>;

const scoresSchema = z.record(z.string(), z.number().nullable());
const metricsSchema = z.looseObject({
  count: z.number().int().nonnegative().optional(),
  scores: scoresSchema,
  byCategory: z.record(z.string(), z.looseObject({ count: z.number().int().nonnegative().optional(), scores: scoresSchema })).optional(),
});
export type MetricsFile = z.infer<typeof metricsSchema>;

const synthSchema = z.looseObject({
  kept: z.number().int().nonnegative(),
  rejected: z.record(z.string(), z.number().int().nonnegative()).default({}),
});
export type SynthReport = z.infer<typeof synthSchema>;

export interface RunFolder {
  dir: string;
  name: string;
  train?: CsvLog;
  valid?: CsvLog;
  /** config.yaml exactly as written. */
  configText?: string;
  trainerState?: TrainerState;
  metrics?: MetricsFile;
  /** predictions.jsonl: how many there are and the first few. */
  predictions?: { total: number; sample: PredictionRecord[] };
  synth?: SynthReport;
}

function parseCell(cell: string, file: string, line: number, column: string): number {
  const s = cell.trim();
  if (s === "" || /^[+-]?nan$/i.test(s)) return NaN;
  if (/^\+?inf(inity)?$/i.test(s)) return Infinity;
  if (/^-inf(inity)?$/i.test(s)) return -Infinity;
  const v = Number(s);
  if (Number.isNaN(v)) throw new FileFormatError(file, `line ${line}, column '${column}': expected a number, got '${cell}'`);
  return v;
}

/** Reads a numeric CSV log whose header must include `required`. */
export function readCsvLog(file: string, required: readonly string[], expectedHeader: readonly string[]): CsvLog {
  let records: string[][];
  try {
    records = parseCsv(readFileSync(file, "utf8"), { skip_empty_lines: true, bom: true, relax_column_count: true }) as string[][];
  } catch (e) {
    throw new FileFormatError(file, `is not valid CSV (${(e as Error).message})`);
  }
  const header = records[0]?.map((h) => h.trim());
  const missing = header ? required.filter((c) => !header.includes(c)) : [...required];
  if (!header || missing.length > 0) {
    throw new FileFormatError(file, `expected a header line '${expectedHeader.join(",")}'${header ? `, got '${header.join(",")}' (missing ${missing.join(", ")})` : ", got an empty file"}`);
  }
  const rows = records.slice(1).map((cells, i) => {
    if (cells.length !== header.length) {
      throw new FileFormatError(file, `line ${i + 2}: expected ${header.length} cells as in the header, got ${cells.length}`);
    }
    const row: Record<string, number> = {};
    header.forEach((column, k) => (row[column] = parseCell(cells[k]!, file, i + 2, column)));
    return row;
  });
  return { file, columns: header, rows };
}

function readJson<S extends z.ZodType>(file: string, schema: S): z.infer<S> {
  return validate(schema, parseJsonText(readFileSync(file, "utf8"), file), file);
}

// trainer_state.json at the top of the run (written at the end), else the latest checkpoint's.
function findTrainerState(dir: string): string | undefined {
  const top = path.join(dir, "trainer_state.json");
  if (existsSync(top)) return top;
  const checkpoints = path.join(dir, "checkpoints");
  if (!existsSync(checkpoints)) return undefined;
  const latest = readdirSync(checkpoints)
    .map((name) => ({ name, step: /^checkpoint-(\d+)$/.exec(name)?.[1] }))
    .filter((c) => c.step !== undefined && existsSync(path.join(checkpoints, c.name, "trainer_state.json")))
    .sort((a, b) => Number(b.step) - Number(a.step))[0];
  return latest ? path.join(checkpoints, latest.name, "trainer_state.json") : undefined;
}

function readPredictions(file: string, sampleSize: number): { total: number; sample: PredictionRecord[] } {
  const lines = readFileSync(file, "utf8").split("\n");
  const sample: PredictionRecord[] = [];
  let total = 0;
  lines.forEach((line, i) => {
    if (line.trim() === "") return;
    total++;
    if (sample.length < sampleSize) sample.push(validate(predictionSchema, parseJsonText(line, `${file}:${i + 1}`), `${file}:${i + 1}`));
  });
  return { total, sample };
}

export interface ReadRunFolderOptions {
  /** How many predictions to keep for the report; default 20. */
  predictionSample?: number;
}

export function readRunFolder(dir: string, options: ReadRunFolderOptions = {}): RunFolder {
  if (!existsSync(dir)) throw new FileFormatError(dir, "run folder not found");
  const at = (...parts: string[]) => path.join(dir, ...parts);
  const run: RunFolder = { dir, name: path.basename(path.resolve(dir)) };
  if (existsSync(at("logs", "train.csv"))) run.train = readCsvLog(at("logs", "train.csv"), ["step", "loss"], TRAIN_COLUMNS);
  if (existsSync(at("logs", "valid.csv"))) run.valid = readCsvLog(at("logs", "valid.csv"), ["step", "eval_loss"], [...VALID_COLUMNS, "<metric>..."]);
  if (existsSync(at("config.yaml"))) run.configText = readFileSync(at("config.yaml"), "utf8");
  const state = findTrainerState(dir);
  if (state) run.trainerState = { ...readJson(state, trainerStateSchema), file: path.relative(dir, state) };
  if (existsSync(at("metrics.json"))) run.metrics = readJson(at("metrics.json"), metricsSchema);
  if (existsSync(at("predictions.jsonl"))) run.predictions = readPredictions(at("predictions.jsonl"), options.predictionSample ?? 20);
  if (existsSync(at("synth", "report.json"))) run.synth = readJson(at("synth", "report.json"), synthSchema);

  if (!run.train && !run.valid && !run.configText && !run.trainerState && !run.metrics && !run.predictions && !run.synth) {
    throw new FileFormatError(
      dir,
      "nothing to report: expected at least one of logs/train.csv, logs/valid.csv, config.yaml, trainer_state.json, metrics.json, predictions.jsonl, synth/report.json",
    );
  }
  return run;
}
