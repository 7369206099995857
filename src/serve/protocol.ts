// Request validation for the OpenAI-compatible endpoints. Every field we act on is checked (a 400 with a message
// naming the field otherwise); fields we cannot honour are refused rather than silently ignored when they would
// change the answer (stream, logprobs, n > limit, tools); harmless extras (user, metadata, ...) are accepted.
import { z } from 'zod';

export const MAX_N = 64;

const stop = z.union([z.string().min(1), z.array(z.string().min(1)).max(4)]).nullish();

const sampling = {
  model: z.string().min(1),
  n: z.number().int().min(1).max(MAX_N).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().gt(0).max(1).nullish(),
  max_tokens: z.number().int().min(1).nullish(),
  seed: z.number().int().min(0).max(2 ** 31 - 1).nullish(),
  stop,
  stream: z.literal(false).nullish(),
  logprobs: z.literal(false).nullish(),
  frequency_penalty: z.literal(0).nullish(),
  presence_penalty: z.literal(0).nullish(),
};

const textPart = z.object({ type: z.literal('text'), text: z.string() });

export const chatRequest = z.looseObject({
  ...sampling,
  max_completion_tokens: z.number().int().min(1).nullish(),
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

export const completionRequest = z.looseObject({
  ...sampling,
  prompt: z.union([z.string(), z.array(z.string()).length(1)]),
  echo: z.literal(false).nullish(),
});

export type ChatRequest = z.infer<typeof chatRequest>;
export type CompletionRequest = z.infer<typeof completionRequest>;

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
