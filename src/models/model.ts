// Model: a Hugging Face folder loaded into the native core, with the calls a training loop makes.
// The loop itself (schedules, accumulation over micro-batches, checkpoints) belongs to the
// trainer; this class is one micro-batch forward/backward and one optimizer step at a time.
import {
  addon, withCallerStack, type ComputeDTypeName, type DeviceName, type ModelMemory, type NativeBatch, type NativeModel, type OptimizerStepOptions,
} from "../../bindings/native.js";
import { runGenerate, runGenerateStream, type GenerateContext } from "../generate/generate.js";
import type {
  GenerateInput, GenerateOptions, GenerateResult, GenerateStreamOptions, GenerationStream,
} from "../generate/options.js";
import { generationConfigSchema } from "./generation-config.js";
import { modelConfigSchema } from "./hf-config.js";
import { validate } from "./json-file.js";
import { inspectModelFolder, type ModelFolder } from "./model-folder.js";
import { loadTokenizer, type Tokenizer } from "./tokenizer.js";

export type { NativeBatch as Batch, OptimizerStepOptions, ComputeDTypeName, DeviceName };

export interface CreateModelOptions {
  /** Seed of the random initialisation (default 0): the same seed gives the same weights. */
  seed?: number;
  /** The linear layers' matmul dtype (default "float32"). */
  computeDtype?: ComputeDTypeName;
  /** Where the model runs (default "auto"); as LoadModelOptions.device. */
  device?: DeviceName;
  /** As LoadModelOptions.tf32. */
  tf32?: boolean;
}

export interface LoadModelOptions {
  /** Keep frozen linear/embedding weights as bf16/f32 views of the mapped files (LoRA). */
  keepFrozenInFileDtype?: boolean;
  /**
   * The linear layers' matmul dtype (default "float32"). "bfloat16": bf16 matmuls with fp32
   * accumulation; master weights, gradients and AdamW state stay fp32. "float16": fp16 matmuls
   * (fp32 accumulation) with a dynamic loss scale in training (lossScaler()).
   */
  computeDtype?: ComputeDTypeName;
  /**
   * Where the model runs (default "auto": GPU 0 when the addon has the CUDA backend and the
   * runtime sees a usable GPU, else the CPU). "cuda" is GPU 0, "cuda:N" GPU N (numbered after
   * CUDA_VISIBLE_DEVICES); either rejects with S2S_DEVICE when it is not usable ("CUDA backend
   * not built into this binary", or "no usable CUDA device: ..."). On a GPU, training,
   * forward/eval loss, LoRA, saving and generation (KV cache and forward there) run there.
   */
  device?: DeviceName;
  /**
   * On a GPU, float32 matmuls on the TF32 tensor cores (torch.backends.cuda.matmul.allow_tf32):
   * inputs rounded to 10 mantissa bits, fp32 accumulation, several times the fp32 speed. Default
   * false; bfloat16/float16 compute and the CPU ignore it.
   */
  tf32?: boolean;
  /** Make every parameter trainable (full fine-tuning). Default false. */
  trainable?: boolean;
}

/** LoRA settings with PEFT's meaning (written to adapter_config.json in PEFT's names). */
export interface LoraOptions {
  r: number;
  alpha: number;
  dropout?: number;
  /** Module names matched against the end of each module path (PEFT), or "all-linear". */
  targetModules?: string[] | "all-linear";
  /** alpha / sqrt(r) instead of alpha / r. */
  useRslora?: boolean;
  /** Seed of the Kaiming-uniform A initialisation. */
  seed?: number;
}

export class Model {
  private constructor(readonly folder: ModelFolder, private readonly native: NativeModel) {}

  /** Validates the folder (errors name the file and field), then loads it natively. */
  static async load(dir: string, options: LoadModelOptions = {}): Promise<Model> {
    const folder = inspectModelFolder(dir);
    const native = await withCallerStack(() =>
      addon().loadModel(dir, {
        keepFrozenInFileDtype: options.keepFrozenInFileDtype ?? false,
        computeDtype: options.computeDtype ?? "float32",
        device: options.device ?? "auto",
        tf32: options.tf32 ?? false,
      }),
    );
    const model = new Model(folder, native);
    if (options.trainable) model.setTrainable(true);
    return model;
  }

  /**
   * A new model initialised from scratch: `config` is a config.json object (validated like a
   * folder's); every parameter is trainable and drawn with the family's transformers init scheme.
   * `save(dir)` writes it as a Hugging Face folder.
   */
  static async create(config: Record<string, unknown>, options: CreateModelOptions = {}): Promise<Model> {
    const source = "config (Model.create)";
    const parsed = validate(modelConfigSchema, config, source);
    const configText = JSON.stringify(config, null, 2) + "\n";
    const native = await withCallerStack(() =>
      addon().createModel(configText, {
        seed: options.seed ?? 0, computeDtype: options.computeDtype ?? "float32", device: options.device ?? "auto",
        tf32: options.tf32 ?? false,
      }),
    );
    const folder: ModelFolder = {
      dir: "", config: parsed, configText, weightFiles: [], generationConfig: generationConfigSchema.parse({}),
    };
    return new Model(folder, native);
  }

  get config() {
    return this.folder.config;
  }

  /** The folder's tokenizer.json, loaded on first use; undefined when the folder has none. */
  get tokenizer(): Tokenizer | undefined {
    if (this.tokenizerLoaded === undefined) {
      this.tokenizerLoaded = this.folder.tokenizerFile ? loadTokenizer(this.folder.dir) : null;
    }
    return this.tokenizerLoaded ?? undefined;
  }

  /**
   * Generates from one prompt or a batch (text through the folder's tokenizer, or token ids),
   * with transformers' generate semantics: greedy, sampling or beam search as the options and
   * generation_config.json say. Returns numReturnSequences sequences per input, with token ids,
   * text and scores. Aborting `options.signal` stops after the current step.
   */
  generate(inputs: GenerateInput | readonly GenerateInput[], options: GenerateOptions = {}): Promise<GenerateResult> {
    return runGenerate(this.generateContext(), inputs, options);
  }

  /** One prompt's tokens as they are generated ({tokenId, text} chunks); `result` settles at the end. */
  generateStream(prompt: GenerateInput, options: GenerateStreamOptions = {}): GenerationStream {
    return runGenerateStream(this.generateContext(), prompt, options);
  }

  private generateContext(): GenerateContext {
    return { native: this.native, folder: this.folder, tokenizer: () => this.tokenizer };
  }

  private tokenizerLoaded: Tokenizer | null | undefined;

  info() {
    return this.native.info();
  }

  /**
   * Where the model's memory goes, in bytes: parameters, gradients, AdamW state, bf16/f16 copies,
   * the activations' high-water mark since loading (or the last `resetPeak`) and, on a GPU, the
   * device's total and free memory. `resetPeak: true` starts the next high-water mark from now
   * (the trainer does at every log line, so each reports its own window's peak).
   */
  memory(options: { resetPeak?: boolean } = {}): ModelMemory {
    return this.native.memory(options);
  }

  setTrainable(all: boolean): void {
    this.native.setTrainable(all);
  }

  /**
   * Gradient checkpointing (transformers' `gradient_checkpointing_enable()`): in training each
   * transformer block keeps only its input, and the backward runs the block's forward again
   * before back-propagating through it. Much less activation memory for about one more forward
   * of the blocks in time; losses and gradients are bit-identical. Default off.
   */
  setGradientCheckpointing(on: boolean): void {
    this.native.setGradientCheckpointing(on);
  }

  get gradientCheckpointing(): boolean {
    return this.native.info().gradientCheckpointing;
  }

  /**
   * Chunked loss: in training and evaluation the LM head and the loss run a chunk of rows at a
   * time (64 MiB of logits; at least 4096 rows on a GPU, where each chunk's update of the
   * head's gradient would otherwise cost more than its GEMMs), so the (tokens x vocab) logits and
   * their gradient, a model's largest
   * activations, never exist whole. `accumulate` and `trainStep` know the backward's seed before
   * the forward, so each chunk's gradients are made as it goes, at the plain path's GEMM count.
   * The same loss and gradients up to rounding. `forward` asked for logits takes the plain path.
   * Default off.
   */
  setChunkedLoss(on: boolean): void {
    this.native.setChunkedLoss(on);
  }

  get chunkedLoss(): boolean {
    return this.native.info().chunkedLoss;
  }

  /** Loss (mean over counted tokens by default) and optionally the logits (rows x vocab). */
  forward(batch: NativeBatch, options: { reduction?: "mean" | "sum"; logits?: boolean } = {}) {
    return withCallerStack(() => this.native.forward(batch, options));
  }

  /** Forward with the summed loss and backward: gradients add up until optimizerStep. */
  accumulate(batch: NativeBatch, options: { training?: boolean; dropoutSeed?: number; stepTokens?: number } = {}) {
    return withCallerStack(() => this.native.accumulate(batch, options));
  }

  /** Scale (float16: unscale), clip, AdamW, zero the gradients; a non-finite gradient skips the step. */
  optimizerStep(options: OptimizerStepOptions) {
    return withCallerStack(() => this.native.optimizerStep(options));
  }

  /** float16 compute: the dynamic loss scale training multiplies the loss by (disabled otherwise). */
  lossScaler() {
    return this.native.lossScaler();
  }

  /** Replaces the loss scaler with one of these GradScaler arguments (float16 models). */
  configureLossScaler(options: { initScale?: number; growthFactor?: number; backoffFactor?: number; growthInterval?: number }): void {
    this.native.configureLossScaler(options);
  }

  /** Restores a checkpointed loss scale (float16 models). */
  setLossScaler(state: { scale: number; growthTracker: number }): void {
    this.native.setLossScaler(state);
  }

  /** Writes the AdamW moments of the trainable params and the last step taken (safetensors). */
  saveOptimizerState(file: string, step: number) {
    return withCallerStack(() => this.native.saveOptimizerState(file, step));
  }

  /** Restores what saveOptimizerState wrote; returns its step. */
  loadOptimizerState(file: string) {
    return withCallerStack(() => this.native.loadOptimizerState(file));
  }

  /** Attaches LoRA adapters (B = 0, so outputs are unchanged until trained); freezes the base. */
  applyLora(options: LoraOptions): void {
    const config = {
      peft_type: "LORA",
      task_type: this.config.model_type === "t5" ? "SEQ_2_SEQ_LM" : "CAUSAL_LM",
      r: options.r,
      lora_alpha: options.alpha,
      lora_dropout: options.dropout ?? 0,
      target_modules: options.targetModules ?? null,
      use_rslora: options.useRslora ?? false,
      bias: "none",
      base_model_name_or_path: this.folder.dir || null,
    };
    this.native.applyLora(JSON.stringify(config), options.seed ?? 0);
  }

  loadAdapter(dir: string) {
    return withCallerStack(() => this.native.loadAdapter(dir));
  }

  saveAdapter(dir: string) {
    return withCallerStack(() => this.native.saveAdapter(dir));
  }

  mergeLora() {
    return withCallerStack(() => this.native.mergeLora());
  }

  detachLora(): void {
    this.native.detachLora();
  }

  /** Exports the model (after mergeLora, the merged one) as a Hugging Face folder. */
  save(dir: string) {
    return withCallerStack(() => this.native.saveModel(dir));
  }

  /**
   * One update in one native call: forward and backward of the batch (or of each micro-batch of
   * an array, gradients adding up; then dropoutSeed is an array too), clip, AdamW. The loss is
   * the mean over the counted tokens of all the batches. Waits for a GPU once, at the end.
   */
  async trainStep(batch: NativeBatch | NativeBatch[], options: Omit<OptimizerStepOptions, "gradScale"> & { training?: boolean; dropoutSeed?: number | number[] }) {
    const r = await withCallerStack(() => this.native.trainStep(batch, options));
    return { ...r, loss: r.loss ?? Number.NaN };
  }
}
