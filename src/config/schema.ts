// The training config: one zod schema is the single definition of every key, its default and its
// help text (types by z.infer, descriptions by .describe()). YAML files, command-line overrides
// and `s2s-train init` all go through it. Keys keep Hugging Face's snake_case names.
import { z } from "zod";
import type { DeviceName } from "../../bindings/native.js";
import { dataConfigSchema } from "../data/config.js";
import { deviceNameExpected, deviceNamePattern } from "./device-name.js";
import { parseMetricNames } from "../metrics/compute.js";
import { trackingConfigSchema } from "../track/trackers.js";

const loraSchema = z
  .strictObject({
    r: z.number().int().positive().default(8).describe("Rank of the LoRA update"),
    alpha: z.number().positive().default(16).describe("Scaling numerator: the update is scaled by alpha / r (alpha / sqrt(r) with use_rslora)"),
    dropout: z.number().min(0).max(1).default(0.05).describe("Dropout on the LoRA input during training"),
    target_modules: z
      .union([z.array(z.string().min(1)).min(1), z.literal("all-linear")])
      .nullable()
      .default(null)
      .describe("Module names to adapt (matched against the end of each module path), \"all-linear\", or null for PEFT's default of the model type"),
    use_rslora: z.boolean().default(false).describe("Rank-stabilised LoRA: scale by alpha / sqrt(r)"),
  })
  .describe("LoRA settings (PEFT's meaning), used when method is lora");

const modelSchema = z
  .strictObject({
    path: z.string().min(1).describe("Hugging Face model folder (config.json, model.safetensors, tokenizer.json)"),
    dtype: z.enum(["float32", "bfloat16", "float16"]).default("float32").describe("Compute dtype of the linear layers (master weights and optimizer state stay float32). float16 scales the loss dynamically (torch GradScaler) and skips steps whose gradients overflow; on the CPU it runs at float32 speed (bfloat16 is the fast CPU dtype)"),
    device: z.string().regex(deviceNamePattern, `expected ${deviceNameExpected}`).default("auto").transform((d) => d as DeviceName).describe("Where the model runs: auto (GPU 0 when the addon has the CUDA backend and it is usable, else the CPU), cpu, cuda (GPU 0) or cuda:N (GPU N, numbered after CUDA_VISIBLE_DEVICES); S2S_DEVICE when the GPU asked for is not usable. On a GPU, generation for eval_metrics runs there too"),
    tf32: z.boolean().default(false).describe("On a GPU, float32 matmuls on the TF32 tensor cores (torch.backends.cuda.matmul.allow_tf32): inputs rounded to 10 mantissa bits, fp32 accumulation, several times the float32 speed. Ignored with dtype bfloat16/float16 and on the CPU"),
    method: z.enum(["lora", "full"]).default("lora").describe("lora: train adapters on a frozen base; full: train every parameter"),
    from_scratch: z.boolean().default(false).describe("path is a template (config.json + tokenizer, no weights): the run starts from weights initialised with train.seed (transformers' init), saved in <run>/init"),
    lora: loraSchema.prefault({}),
  })
  .describe("The model to fine-tune");

const earlyStoppingSchema = z
  .strictObject({
    patience: z.number().int().min(0).default(0).describe("Stop after this many evaluations without improvement of metric_for_best_model (0: never stop early)"),
    threshold: z.number().min(0).default(0).describe("How much better than the best an evaluation must be to count as an improvement"),
  })
  .describe("Early stopping on metric_for_best_model");

// null keeps what the model folder's generation_config.json says (else transformers' default).
const evalGenerationSchema = z
  .strictObject({
    max_new_tokens: z.number().int().positive().nullable().default(null).describe("Tokens generated at most per example (null: data.max_target_length)"),
    num_beams: z.number().int().positive().nullable().default(null).describe("Beam search with this many beams (1: greedy or sampling)"),
    do_sample: z.boolean().nullable().default(null).describe("Sample from the distribution instead of taking the best token"),
    temperature: z.number().positive().nullable().default(null).describe("Sampling: logits are divided by this"),
    top_k: z.number().int().nonnegative().nullable().default(null).describe("Sampling: keep the k most likely tokens (0: off)"),
    top_p: z.number().gt(0).max(1).nullable().default(null).describe("Sampling: keep the smallest set of tokens whose probability adds up to top_p"),
    repetition_penalty: z.number().positive().nullable().default(null).describe("Penalty on tokens already in the sequence (1: off)"),
    no_repeat_ngram_size: z.number().int().nonnegative().nullable().default(null).describe("No n-gram of this size occurs twice (0: off)"),
    length_penalty: z.number().finite().nullable().default(null).describe("Beam search: scores are divided by length ** length_penalty"),
    seed: z.number().int().min(0).nullable().default(null).describe("Seed of sampling (null: train.seed)"),
  })
  .describe("How evaluation generates for eval_metrics (transformers' names and meaning; null: the model's generation_config.json)");

const metricNamesSchema = z.array(z.string().min(1)).superRefine((names, ctx) => {
  try {
    parseMetricNames(names);
  } catch (e) {
    ctx.addIssue({ code: "custom", message: (e as Error).message });
  }
});

// torch.cuda.amp.GradScaler's arguments, under their names; HF Trainer uses the defaults.
const lossScalingSchema = z
  .strictObject({
    init_scale: z.number().positive().default(65536).describe("Starting loss scale (2^16)"),
    growth_factor: z.number().gt(1).default(2).describe("The scale is multiplied by this after growth_interval steps without overflow"),
    backoff_factor: z.number().gt(0).lt(1).default(0.5).describe("The scale is multiplied by this when a step's gradients overflow (the step is skipped)"),
    growth_interval: z.number().int().positive().default(2000).describe("Steps without overflow before the scale grows"),
  })
  .describe("Dynamic loss scaling of float16 training (model.dtype float16 only; torch GradScaler's meaning)");

const trainSchema = z
  .strictObject({
    epochs: z.number().int().positive().default(3).describe("Passes over the training data (ignored when max_steps is set)"),
    max_steps: z.number().int().positive().nullable().default(null).describe("Optimizer steps to take; overrides epochs when set"),
    gradient_accumulation_steps: z.number().int().positive().default(1).describe("Micro-batches per optimizer step; the loss is normalised over all their counted tokens"),
    gradient_checkpointing: z.boolean().default(false).describe("Recompute each transformer block in the backward instead of keeping its activations (transformers' gradient_checkpointing): much less memory, about a third slower, the same gradients"),
    chunked_loss: z.boolean().default(false).describe("Run the LM head and the loss a chunk of tokens at a time, so the (tokens x vocabulary) logits and their gradient never exist whole (a large vocabulary's biggest activations): much less memory for a few percent of step time (smaller chunks cost more), the same loss and gradients up to rounding"),
    lr: z.number().min(0).default(5e-5).describe("Peak learning rate (AdamW)"),
    weight_decay: z.number().min(0).default(0).describe("AdamW weight decay (not applied to biases and norm weights)"),
    betas: z.tuple([z.number().min(0).lt(1), z.number().min(0).lt(1)]).default([0.9, 0.999]).describe("AdamW beta1, beta2"),
    eps: z.number().positive().default(1e-8).describe("AdamW epsilon"),
    scheduler: z.enum(["constant", "linear", "cosine"]).default("linear").describe("Learning-rate schedule after warmup (transformers' curves)"),
    warmup_steps: z.number().int().min(0).default(0).describe("Steps of linear warmup from 0 to lr"),
    warmup_ratio: z.number().min(0).max(1).default(0).describe("Warmup as a share of all steps (rounded up); use either this or warmup_steps"),
    max_grad_norm: z.number().min(0).default(1).describe("Clip the global gradient norm to this (0: no clipping)"),
    seed: z.number().int().min(0).default(42).describe("Seed of data order, dropout and LoRA initialisation"),
    logging_steps: z.number().int().positive().default(10).describe("Write a line to logs/train.csv every this many steps"),
    eval_steps: z.number().int().positive().nullable().default(null).describe("Evaluate every this many steps (null: at the end of each epoch); also at the last step"),
    eval_batch_size: z.number().int().positive().nullable().default(null).describe("Examples per evaluation batch (null: data.batch_size)"),
    eval_metrics: metricNamesSchema.default([]).describe("Generation metrics computed at each evaluation (bleu, chrf, rouge, rouge1, rouge2, rougeL, rougeLsum, em, f1, soft_em); [] for the loss only"),
    max_eval_samples: z.number().int().positive().nullable().default(null).describe("Validation examples generated for eval_metrics, the first ones of the validation set (null: all)"),
    eval_generation: evalGenerationSchema.prefault({}),
    save_steps: z.number().int().positive().nullable().default(null).describe("Save a checkpoint every this many steps (null: at the end of each epoch); also at the last step"),
    save_total_limit: z.number().int().positive().nullable().default(null).describe("Keep at most this many checkpoints, never deleting the best one (null: keep all)"),
    load_best_model_at_end: z.boolean().default(false).describe("Write the best checkpoint (by metric_for_best_model) to final/ instead of the last one"),
    metric_for_best_model: z.string().min(1).default("eval_loss").describe("Evaluation metric that defines the best checkpoint: eval_loss, perplexity or a generation metric"),
    greater_is_better: z.boolean().nullable().default(null).describe("Whether a larger metric is better (null: false for eval_loss and perplexity, true otherwise)"),
    early_stopping: earlyStoppingSchema.prefault({}),
    threads: z.number().int().positive().nullable().default(null).describe("Threads for the native core (null: S2S_NUM_THREADS or every logical core)"),
    loss_scaling: lossScalingSchema.prefault({}),
  })
  .describe("The training loop");

const outputSchema = z
  .strictObject({
    dir: z.string().min(1).default("runs/default").describe("Run folder: config.yaml, checkpoints/, logs/, final/"),
  })
  .describe("Where the run writes");

export const trainConfigSchema = z
  .strictObject({
    model: modelSchema,
    data: dataConfigSchema,
    train: trainSchema.prefault({}),
    output: outputSchema.prefault({}),
    tracking: trackingConfigSchema.prefault({}),
  })
  .superRefine((c, ctx) => {
    if (c.model.from_scratch && c.model.method !== "full") {
      ctx.addIssue({ code: "custom", path: ["model", "from_scratch"], message: "a model trained from scratch needs method: full (LoRA on random weights learns nothing useful)" });
    }
    if (c.train.warmup_steps > 0 && c.train.warmup_ratio > 0) {
      ctx.addIssue({ code: "custom", path: ["train", "warmup_ratio"], message: "set either warmup_steps or warmup_ratio, not both" });
    }
    if (c.train.load_best_model_at_end && c.train.save_steps !== null && c.train.eval_steps !== null &&
        c.train.save_steps % c.train.eval_steps !== 0) {
      ctx.addIssue({
        code: "custom", path: ["train", "save_steps"],
        message: `with load_best_model_at_end, save_steps (${c.train.save_steps}) must be a multiple of eval_steps (${c.train.eval_steps}) so that every best evaluation has a checkpoint`,
      });
    }
    const best = c.train.metric_for_best_model;
    if (c.train.eval_metrics.length > 0 && best !== "eval_loss" && best !== "perplexity") {
      const names: string[] = parseMetricNames(c.train.eval_metrics);
      if (!names.includes(best.replace(/^eval_/, ""))) {
        ctx.addIssue({
          code: "custom", path: ["train", "metric_for_best_model"],
          message: `"${best}" is not computed: expected eval_loss, perplexity or one of train.eval_metrics (${names.join(", ")})`,
        });
      }
    }
    if ((c.train.save_steps === null) !== (c.train.eval_steps === null) && c.train.load_best_model_at_end) {
      ctx.addIssue({
        code: "custom", path: ["train", c.train.save_steps === null ? "save_steps" : "eval_steps"],
        message: "with load_best_model_at_end, set both eval_steps and save_steps, or neither (then both happen at each epoch's end)",
      });
    }
  })
  .describe("s2s-train training config");

/** The resolved config, as the trainer uses it. */
export type TrainConfig = z.infer<typeof trainConfigSchema>;
/** The config as written in a file: every key with a default may be left out. */
export type TrainConfigInput = z.input<typeof trainConfigSchema>;

/** Keys whose values are paths: relative to the config file in a file, to the working folder on the command line. */
export const PATH_KEYS = ["model.path", "data.train_file", "data.valid_file", "output.dir"] as const;
