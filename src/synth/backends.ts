// The LLM backend a config names: its endpoints as one pool, or the local engine.
import type { LlmConfig } from "./config.js";
import { EndpointPool } from "../llm/endpoint-pool.js";
import { OpenAiEndpoint } from "../llm/openai-endpoint.js";
import type { LlmBackend } from "../llm/types.js";
import type { LocalBackendLoader } from "./curate.js";

export interface ConfiguredBackend {
  backend: LlmBackend;
  /** How many requests it can usefully have in flight. */
  capacity: number;
  pool?: EndpointPool;
}

export async function createBackend(config: Partial<LlmConfig>, where: string, loadLocal: LocalBackendLoader): Promise<ConfiguredBackend> {
  if (config.local) {
    return { backend: await loadLocal(config.local.model, config.local.adapter), capacity: 1 };
  }
  const endpoints = config.endpoints ?? [];
  if (endpoints.length === 0) {
    throw new Error(`${where}.endpoints: list at least one OpenAI-compatible endpoint (url, model), or give ${where}.local`);
  }
  const members = endpoints.map((e, i) => {
    let apiKey: string | undefined;
    if (e.api_key_env) {
      apiKey = process.env[e.api_key_env];
      if (!apiKey) throw new Error(`${where}.endpoints[${i}].api_key_env: the environment variable ${e.api_key_env} is not set`);
    }
    const endpoint = new OpenAiEndpoint({
      url: e.url, model: e.model, timeoutMs: e.timeout_s * 1000, structuredOutput: e.structured_output,
      name: `${e.url} (${e.model})`, ...(apiKey ? { apiKey } : {}),
    });
    return { backend: endpoint, concurrency: e.concurrency };
  });
  const pool = new EndpointPool(members, { maxAttempts: config.max_attempts ?? 5 });
  return { backend: pool, capacity: pool.capacity, pool };
}
