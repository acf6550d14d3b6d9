// `s2s-train serve --model DIR [--adapter DIR] [--host 127.0.0.1] [--port 8080]`
import type { CommandModule } from "yargs";
import type { ComputeDTypeName, DeviceName } from "../../../bindings/native.js";
import { runServe } from "../../serve/server.js";
import { modelRunFlagOptions } from "../model-flags.js";

interface ServeArgs {
  model: string;
  adapter?: string;
  host: string;
  port: number;
  "served-model-name"?: string;
  "max-queue": number;
  "max-body-bytes": number;
  "api-key"?: string;
  dtype: ComputeDTypeName;
  device: DeviceName;
  tf32: boolean;
  threads?: number;
}

export const serveCommand: CommandModule<object, ServeArgs> = {
  command: "serve",
  describe: "Serve a model (+ LoRA adapter) over an OpenAI-compatible HTTP API (/v1/completions, /v1/chat/completions, /v1/models)",
  builder: (y) =>
    y
      .option("model", { type: "string", demandOption: true, describe: "Hugging Face model folder" })
      .option("adapter", { type: "string", describe: "PEFT LoRA adapter folder trained on --model (merged at load)" })
      .option("host", { type: "string", default: "127.0.0.1", describe: "Address to listen on (0.0.0.0: every interface; set --api-key then)" })
      .option("port", { type: "number", default: 8080, describe: "Port (0: any free port)" })
      .option("served-model-name", { type: "string", describe: "The model id clients send (default: the folder's name)" })
      .option("max-queue", { type: "number", default: 16, describe: "Requests that may wait while one generates; more get HTTP 429" })
      .option("max-body-bytes", { type: "number", default: 1024 * 1024, describe: "Largest request body; larger gets HTTP 413" })
      .option("api-key", { type: "string", describe: "Require Authorization: Bearer <key> (default: $S2S_API_KEY, else none)" })
      .options(modelRunFlagOptions)
      .option("threads", { type: "number", describe: "Native threads (default: all cores)" }) as never,
  handler: async (args) => {
    const apiKey = args["api-key"] ?? process.env.S2S_API_KEY;
    await runServe({
      model: args.model,
      ...(args.adapter !== undefined ? { adapter: args.adapter } : {}),
      host: args.host,
      port: args.port,
      ...(args["served-model-name"] !== undefined ? { modelName: args["served-model-name"] } : {}),
      maxQueue: args["max-queue"],
      maxBodyBytes: args["max-body-bytes"],
      ...(apiKey ? { apiKey } : {}),
      dtype: args.dtype,
      device: args.device,
      tf32: args.tf32,
      ...(args.threads !== undefined ? { threads: args.threads } : {}),
    });
  },
};
