/**
 * Request bodies for the frameworks' HTTP APIs (services, batch): read with a size limit, parsed as
 * JSON or YAML by content-type. Problems become an HttpError the router turns into a status code,
 * never a crash.
 */
import type { IncomingMessage } from 'node:http';
import { parse as parseYaml, YAMLParseError } from 'yaml';

/** 1 MiB: an app definition or a job spec is a few KB; anything near this is a mistake or an attack. */
export const MAX_BODY_BYTES = 1024 * 1024;

/** A refusal with its status code and a body a person can act on. */
export class HttpError extends Error {
  override name = 'HttpError';
  constructor(
    readonly status: number,
    message: string,
    readonly extra: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

export async function readBody(req: IncomingMessage, limitBytes = MAX_BODY_BYTES): Promise<string> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limitBytes) {
    throw new HttpError(413, `the body is ${declared} bytes; the limit is ${describeBytes(limitBytes)}`);
  }
  // Listeners rather than for-await: leaving a for-await destroys the socket, and the client
  // would see a reset instead of the 413.
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limitBytes) {
        req.off('data', onData);
        req.pause();
        reject(new HttpError(413, `the body is over the limit of ${describeBytes(limitBytes)}`));
        return;
      }
      chunks.push(chunk);
    };
    req.on('data', onData);
    req.once('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.once('error', reject);
  });
}

/** The request's body read (up to `limitBytes`) and parsed by its content-type; undefined when empty. */
export async function readParsedBody(req: IncomingMessage, limitBytes = MAX_BODY_BYTES): Promise<unknown> {
  return parseBody(await readBody(req, limitBytes), req.headers['content-type']);
}

function describeBytes(bytes: number): string {
  return bytes % (1024 * 1024) === 0 ? `${bytes} bytes (${bytes / (1024 * 1024)} MiB)` : `${bytes} bytes`;
}

const YAML_TYPES = new Set(['application/yaml', 'application/x-yaml', 'text/yaml', 'text/x-yaml']);

/**
 * JSON for application/json, YAML for the YAML types; without a content-type, text starting with
 * `{` or `[` is JSON and anything else YAML. An empty body is undefined.
 */
export function parseBody(text: string, contentType: string | undefined): unknown {
  if (text.trim() === '') return undefined;
  const mediaType = (contentType ?? '').split(';')[0]!.trim().toLowerCase();
  const yaml = YAML_TYPES.has(mediaType) || (mediaType !== 'application/json' && !text.trimStart().startsWith('{') && !text.trimStart().startsWith('['));
  if (!yaml) {
    try {
      return JSON.parse(text) as unknown;
    } catch (error) {
      throw new HttpError(400, `the body is not valid JSON: ${(error as Error).message}`);
    }
  }
  try {
    return parseYaml(text) as unknown;
  } catch (error) {
    if (error instanceof YAMLParseError) {
      const at = error.linePos?.[0];
      const firstLine = error.message.split('\n')[0] ?? error.message;
      throw new HttpError(400, `the body is not valid YAML${at ? ` (line ${at.line}, column ${at.col})` : ''}: ${firstLine}`);
    }
    throw new HttpError(400, `the body is not valid YAML: ${(error as Error).message}`);
  }
}
