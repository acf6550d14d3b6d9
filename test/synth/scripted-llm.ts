// A scripted LLM for the pipeline tests: it reads the bundled prompts' fields (document title,
// entity, questions) out of each request and answers from tables the test writes, the way a
// deterministic model would. Requests are recognised by their schema name in response_format.
import { schemaName, userText, type ChatBody, type Reply } from "./fake-servers.js";

export interface MhqaScript {
  /** The raw answer to the entity/Q1 prompt for a D1 title. */
  entityQ1(title: string): string;
  /** The raw answer to the Q2 prompt for a D2 title and entity. */
  q2(title: string, entity: string): string;
}

function field(text: string, pattern: RegExp): string {
  const m = pattern.exec(text);
  if (!m) throw new Error(`scripted LLM: ${pattern} not found in the prompt:\n${text}`);
  return m[1]!.trim();
}

/** Merges like a model would: Q2 with the entity replaced by a description taken from Q1. */
export function mergeQuestions(q1: string, q2: string, entity: string): string {
  return q2.replace(entity, `the answer to "${q1.replace(/\?$/, "")}"`);
}

/** The (step, key) a request belongs to, to find repeated work. */
export function requestKey(body: ChatBody): string {
  const text = userText(body);
  const name = schemaName(body) ?? "text";
  const title = /Document title: (.*)/.exec(text)?.[1] ?? /Question 1: (.*)/.exec(text)?.[1] ?? text.slice(0, 80);
  const entity = /about "(.*?)"/.exec(text)?.[1] ?? "";
  return `${name}|${title}|${entity}`;
}

export function mhqaResponder(script: MhqaScript, delayMs = 0): (body: ChatBody) => Reply {
  return (body) => {
    const text = userText(body);
    const name = schemaName(body);
    let content: string;
    if (name === "entity_q1") {
      content = script.entityQ1(field(text, /Document title: (.*)/));
    } else if (name === "q2") {
      content = script.q2(field(text, /Document title: (.*)/), field(text, /about "(.*?)"/));
    } else if (name === "merge") {
      const q1 = field(text, /Question 1: (.*)/);
      const q2 = field(text, /Question 2: (.*)/);
      const entity = field(text, /Its answer: (.*)/);
      content = JSON.stringify({ question: mergeQuestions(q1, q2, entity) });
    } else {
      throw new Error(`scripted LLM: unexpected request ${name ?? "(no schema)"}:\n${text}`);
    }
    return { content, delayMs };
  };
}

/** A small world of local documents where every seed makes a kept two-hop question. */
export const names = ["Amber", "Birch", "Cedar", "Dune", "Elm", "Fern", "Garnet", "Heath"];

export function townWorldDocuments(): { id: string; title: string; text: string }[] {
  return names.flatMap((n, i) => [
    { id: `town-${n}`, title: `Town ${n}`,
      text: `Town ${n} is a market town on the coast. It was founded by Person ${n} in ${1700 + i * 10}. The town has ${1200 + i} inhabitants.` },
    { id: `person-${n}`, title: `Person ${n}`,
      text: `Person ${n} was an engineer who founded Town ${n}. Person ${n} later crossed River ${n} on foot.` },
  ]);
}

export const townWorldScript: MhqaScript = {
  entityQ1(title) {
    const [kind, n] = title.split(" ");
    return JSON.stringify(kind === "Town"
      ? { entity: `Person ${n}`, question: `Who founded the market town ${title}?` }
      : { entity: `Town ${n}`, question: `Which town was founded by ${title}?` });
  },
  q2(title, entity) {
    const [kind, n] = entity.split(" ");
    const i = names.indexOf(n!);
    return JSON.stringify(kind === "Person"
      ? { question: `Which river did ${entity} cross on foot?`, answer: `River ${n}` }
      : { question: `How many inhabitants does ${entity} have?`, answer: String(1200 + i) });
  },
};
