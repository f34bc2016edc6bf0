/**
 * Frames are msgpack. One frame holds one message, or an array of messages when a connection
 * flushes several at once (see Connection: outbound messages are batched per event-loop turn).
 *
 * Each connection gets its own Unpackr: msgpackr's record and structure state is per stream, and a
 * peer must not be able to poison another peer's decoder. Records are off so every frame stands
 * alone and decodes to plain objects.
 */
import { Packr, Unpackr } from 'msgpackr';
import type { z } from 'zod';
import { describeZodError, ErrorCode } from './messages.ts';

export function createPackr(): Packr {
  return new Packr({ useRecords: false, structuredClone: false });
}

export function createUnpackr(): Unpackr {
  return new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number', structuredClone: false });
}

export class DecodeError extends Error {
  override name = 'DecodeError';
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** Splits a decoded frame into its messages (a batch is an array). */
export function framesToMessages(decoded: unknown): unknown[] {
  return Array.isArray(decoded) ? decoded : [decoded];
}

/**
 * Validates one decoded message against a discriminated union. Returns the typed message or throws
 * a DecodeError whose message names the field that is wrong and what was expected.
 */
export function validateMessage<T extends { type: string }>(
  schema: z.ZodType<T>,
  knownTypes: ReadonlySet<string>,
  value: unknown,
): T {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new DecodeError(ErrorCode.INVALID_MESSAGE, `expected a message object with a "type" field, got ${Array.isArray(value) ? 'an array' : value === null ? 'null' : typeof value}`);
  }
  const type = (value as { type?: unknown }).type;
  if (typeof type !== 'string') {
    throw new DecodeError(ErrorCode.INVALID_MESSAGE, 'message has no "type" field (a string naming the message, e.g. "SUBSCRIBE")');
  }
  if (!knownTypes.has(type)) {
    throw new DecodeError(ErrorCode.UNKNOWN_TYPE, `unknown message type "${type.slice(0, 50)}"; expected one of ${[...knownTypes].join(', ')}`);
  }
  const result = schema.safeParse(value);
  if (!result.success) throw new DecodeError(ErrorCode.INVALID_MESSAGE, describeZodError(result.error, type));
  return result.data;
}

/** The `type` values a discriminated union accepts, for "expected one of …" errors. */
export function typesOf(schema: { options: readonly { shape: { type: { value: unknown } } }[] }): ReadonlySet<string> {
  return new Set(schema.options.map((option) => String(option.shape.type.value)));
}
