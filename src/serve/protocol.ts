// Request validation for the OpenAI-compatible endpoints. Every field we act on is checked (a 400 with a message
// naming the field otherwise); fields we cannot honour are refused when they would change the answer
// (refusedFields); harmless extras (user, metadata, ...) are accepted.
import { z } from 'zod';

export const MAX_N = 64;
export const MAX_TOP_LOGPROBS = 20;

const stop = z.union([z.string().min(1), z.array(z.string().min(1)).max(4)]).nullish();

const sampling = {
  model: z.string().min(1),
  n: z.number().int().min(1).max(MAX_N).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().gt(0).max(1).nullish(),
  max_tokens: z.number().int().min(1).nullish(),
  seed: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).nullish(),
  stop,
  stream: z.boolean().nullish(),
  stream_options: z.looseObject({ include_usage: z.boolean().nullish() }).nullish(),
  // vLLM's sampling extensions
  top_k: z.number().int().min(-1).nullish(),
  min_p: z.number().min(0).max(1).nullish(),
  repetition_penalty: z.number().gt(0).max(10).nullish(),
  logit_bias: z.record(z.string().regex(/^\d+$/, 'keys must be token ids'), z.number().min(-100).max(100)).nullish(),
  frequency_penalty: z.literal(0).nullish(),
  presence_penalty: z.literal(0).nullish(),
};

const textPart = z.object({ type: z.literal('text'), text: z.string() });

export const chatRequest = z.looseObject({
  ...sampling,
  max_completion_tokens: z.number().int().min(1).nullish(),
  logprobs: z.boolean().nullish(),
  top_logprobs: z.number().int().min(0).max(MAX_TOP_LOGPROBS).nullish(),
  messages: z
    .array(
      z.looseObject({
        role: z.enum(['system', 'developer', 'user', 'assistant']),
        // content as a string or a list of text parts (what the openai client sends for multi-part messages)
        content: z.union([z.string(), z.array(textPart)]),
      }),
    )
    .min(1),
});

const tokenIds = z.array(z.number().int().min(0)).min(1);

export const completionRequest = z.looseObject({
  ...sampling,
  // OpenAI's forms: text, a list of texts, token ids, a list of token-id lists
  prompt: z.union([z.string(), z.array(z.string()).min(1), tokenIds, z.array(tokenIds).min(1)]),
  // 0 only with echo (score the prompt, generate nothing)
  max_tokens: z.number().int().min(0).nullish(),
  logprobs: z.number().int().min(0).max(MAX_TOP_LOGPROBS).nullish(),
  echo: z.boolean().nullish(),
  best_of: z.number().int().min(1).nullish(),
});

export type ChatRequest = z.infer<typeof chatRequest>;
export type CompletionRequest = z.infer<typeof completionRequest>;

/**
 * Fields that would change the answer and that this server cannot honour: a 400 naming the field when present
 * with anything but its neutral value. (best_of is checked separately: best_of = n is the same as n samples.)
 */
const refused: Array<[string, (v: unknown) => boolean, string]> = [
  ['tools', (v) => v !== undefined, 'tools are not supported'],
  ['functions', (v) => v !== undefined, 'functions are not supported'],
  ['function_call', (v) => v !== undefined && v !== 'none', 'function calling is not supported'],
  ['tool_choice', (v) => v !== undefined && v !== 'none', 'tool_choice is not supported (no tools)'],
  ['response_format', (v) => v !== undefined && !(typeof v === 'object' && v !== null && (v as { type?: unknown }).type === 'text'), 'only response_format {"type": "text"} is supported'],
  ['suffix', (v) => v !== undefined && v !== '', 'suffix (insertion) is not supported'],
  ['prediction', (v) => v !== undefined, 'prediction is not supported'],
  ['audio', (v) => v !== undefined, 'audio output is not supported'],
  ['modalities', (v) => v !== undefined && !(Array.isArray(v) && v.every((m) => m === 'text')), 'only text output is supported'],
  ['reasoning_effort', (v) => v !== undefined, 'reasoning_effort is not supported'],
  ['ignore_eos', (v) => v !== undefined && v !== false, 'ignore_eos is not supported'],
  ['min_tokens', (v) => v !== undefined && v !== 0, 'min_tokens is not supported'],
  ['stop_token_ids', (v) => v !== undefined && !(Array.isArray(v) && v.length === 0), 'stop_token_ids is not supported'],
  ['include_stop_str_in_output', (v) => v !== undefined && v !== false, 'include_stop_str_in_output is not supported'],
  ['skip_special_tokens', (v) => v !== undefined && v !== true, 'skip_special_tokens=false is not supported'],
  ['use_beam_search', (v) => v !== undefined && v !== false, 'beam search is not supported'],
  ['length_penalty', (v) => v !== undefined && v !== 1, 'length_penalty is not supported'],
  ['prompt_logprobs', (v) => v !== undefined && v !== null, 'prompt_logprobs is not supported (use /v1/completions with echo and logprobs)'],
  ['guided_json', (v) => v !== undefined, 'guided decoding is not supported'],
  ['guided_regex', (v) => v !== undefined, 'guided decoding is not supported'],
  ['guided_choice', (v) => v !== undefined, 'guided decoding is not supported'],
  ['guided_grammar', (v) => v !== undefined, 'guided decoding is not supported'],
  ['truncate_prompt_tokens', (v) => v !== undefined && v !== null, 'truncate_prompt_tokens is not supported'],
  ['continue_final_message', (v) => v !== undefined && v !== false, 'continue_final_message is not supported'],
  ['add_generation_prompt', (v) => v !== undefined && v !== true, 'add_generation_prompt=false is not supported'],
];

/** The first refused field present in the body, as {param, message}, or null. */
export function refusedField(body: Record<string, unknown>): { param: string; message: string } | null {
  for (const [key, bad, message] of refused) {
    const v = body[key] === null ? undefined : body[key];
    if (bad(v)) return { param: key, message: `${key}: ${message}` };
  }
  return null;
}

/** zod issues -> one line naming the fields ("messages.0.role: ..."). */
export function describeIssues(err: z.ZodError): { message: string; param: string | null } {
  const first = err.issues[0];
  const param = first && first.path.length ? first.path.join('.') : null;
  const message = err.issues
    .slice(0, 3)
    .map((i) => `${i.path.length ? i.path.join('.') : 'body'}: ${i.message}`)
    .join('; ');
  return { message, param };
}

export function messageText(content: string | Array<{ type: 'text'; text: string }>): string {
  return typeof content === 'string' ? content : content.map((p) => p.text).join('');
}
