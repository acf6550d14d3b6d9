// Model: a Hugging Face folder loaded into the native core, with the calls a training loop makes.
// The loop itself (schedules, accumulation over micro-batches, checkpoints) belongs to the
// trainer; this class is one micro-batch forward/backward and one optimizer step at a time.
import {
  addon, withCallerStack, type ComputeDTypeName, type NativeBatch, type NativeModel, type OptimizerStepOptions,
} from "../../bindings/native.js";
import { inspectModelFolder, type ModelFolder } from "./model-folder.js";

export type { NativeBatch as Batch, OptimizerStepOptions, ComputeDTypeName };

export interface LoadModelOptions {
  /** Keep frozen linear/embedding weights as bf16/f32 views of the mapped files (LoRA). */
  keepFrozenInFileDtype?: boolean;
  /**
   * The linear layers' matmul dtype (default "float32"). "bfloat16": bf16 matmuls with fp32
   * accumulation; master weights, gradients and AdamW state stay fp32.
   */
  computeDtype?: ComputeDTypeName;
  /** Make every parameter trainable (full fine-tuning). Default false. */
  trainable?: boolean;
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
      }),
    );
    const model = new Model(folder, native);
    if (options.trainable) model.setTrainable(true);
    return model;
  }

  get config() {
    return this.folder.config;
  }

  info() {
    return this.native.info();
  }

  setTrainable(all: boolean): void {
    this.native.setTrainable(all);
  }

  /** Loss (mean over counted tokens by default) and optionally the logits (rows x vocab). */
  forward(batch: NativeBatch, options: { reduction?: "mean" | "sum"; logits?: boolean } = {}) {
    return withCallerStack(() => this.native.forward(batch, options));
  }

  /** Forward with the summed loss and backward: gradients add up until optimizerStep. */
  accumulate(batch: NativeBatch, options: { training?: boolean; dropoutSeed?: number } = {}) {
    return withCallerStack(() => this.native.accumulate(batch, options));
  }

  /** Scale, clip, AdamW, zero the gradients. */
  optimizerStep(options: OptimizerStepOptions) {
    return withCallerStack(() => this.native.optimizerStep(options));
  }

  /**
   * One batch, one update: the loss is the mean over the batch's counted tokens, exactly as the
   * summed loss divided by the count, which is also how accumulated micro-batches normalise.
   */
  async trainStep(batch: NativeBatch, options: Omit<OptimizerStepOptions, "gradScale"> & { training?: boolean }) {
    const { training, ...step } = options;
    const { lossSum, count } = await this.accumulate(batch, { training: training ?? true });
    const { gradNorm, finite } = await this.optimizerStep({ ...step, gradScale: count > 0 ? 1 / count : 1 });
    return { loss: count > 0 ? lossSum / count : Number.NaN, count, gradNorm, finite };
  }
}
