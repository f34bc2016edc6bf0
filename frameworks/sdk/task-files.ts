/**
 * Reading a task's stdout or stderr through the master, from wherever its agent runs (the master
 * asks the agent over the agent's own socket; see master/http/task-files.ts).
 *
 * ```ts
 * let offset = 0;
 * for (;;) {
 *   const { data, size } = await readTaskFile('ws://127.0.0.1:5050', frameworkId, taskId, 'stdout', { offset });
 *   process.stdout.write(data);
 *   offset += data.length;
 *   if (offset >= size) break;
 * }
 * ```
 */
import { MAX_FILE_READ_BYTES, TASK_FILES, type TaskFileName } from '../../master/protocol/messages.ts';

export { MAX_FILE_READ_BYTES, TASK_FILES, type TaskFileName };

export interface ReadTaskFileOptions {
  /** Where to start, in bytes. @default 0 */
  offset?: number;
  /** At most this many bytes (1 to 1 MiB). @default 1 MiB */
  length?: number;
  /** Give up after this long (the master itself gives up on a silent agent after 10 s). @default 30_000 */
  timeoutMs?: number;
}

export interface TaskFileChunk {
  data: Buffer;
  /** The file's size when it was read; a running task's file grows. */
  size: number;
  /** Where `data` starts in the file. */
  offset: number;
}

/** The master answered, but not with the file: `status` is its HTTP status, `reason` its own words. */
export class TaskFileError extends Error {
  override name = 'TaskFileError';
  constructor(
    /** 400 bad request, 404 unknown task or sandbox gone, 503 agent not connected, 504 agent too slow, … */
    readonly status: number,
    readonly reason: string,
    readonly url: string,
  ) {
    super(`${reason} (HTTP ${status} from ${url})`);
  }
}

/** No answer from the master at all (not running, wrong address, or too slow). */
export class MasterUnreachableError extends Error {
  override name = 'MasterUnreachableError';
  constructor(
    readonly url: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** The HTTP base URL of a master given as ws://, wss://, http:// or https:// (a path after the host is dropped). */
export function masterHttpUrl(masterUrl: string): string {
  let url: URL;
  try {
    url = new URL(masterUrl);
  } catch {
    throw new TypeError(`"${masterUrl}" is not a master URL; give one like ws://127.0.0.1:5050 or http://127.0.0.1:5050`);
  }
  const protocol = { 'ws:': 'http:', 'wss:': 'https:', 'http:': 'http:', 'https:': 'https:' }[url.protocol];
  if (!protocol) throw new TypeError(`"${masterUrl}" is not a master URL: use ws://, wss://, http:// or https://`);
  return `${protocol}//${url.host}`;
}

/**
 * Reads part of a task's stdout or stderr through the master: a running task's, or an ended one's
 * while the master remembers the task and its agent keeps the sandbox. Returns at most `length`
 * bytes from `offset` (fewer at the end of the file; none past it) and the file's size.
 * Throws TaskFileError when the master refuses (its message says why) and MasterUnreachableError
 * when it does not answer.
 */
export async function readTaskFile(
  masterUrl: string,
  frameworkId: string,
  taskId: string,
  file: TaskFileName,
  options: ReadTaskFileOptions = {},
): Promise<TaskFileChunk> {
  const base = masterHttpUrl(masterUrl);
  const query = new URLSearchParams();
  if (options.offset !== undefined) query.set('offset', String(options.offset));
  if (options.length !== undefined) query.set('length', String(options.length));
  const url = `${base}/api/v1/frameworks/${encodeURIComponent(frameworkId)}/tasks/${encodeURIComponent(taskId)}/files/${encodeURIComponent(file)}${query.size > 0 ? `?${query}` : ''}`;
  const timeoutMs = options.timeoutMs ?? 30_000;

  let response: Response;
  let body: Buffer;
  try {
    response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    body = Buffer.from(await response.arrayBuffer());
  } catch (error) {
    const why = (error as Error).name === 'TimeoutError' ? `no answer within ${timeoutMs} ms` : describeFetchError(error);
    throw new MasterUnreachableError(url, `cannot reach the master at ${base} to read the ${file} of task ${taskId}: ${why}; is the master running there?`, { cause: error });
  }
  if (response.status !== 200) throw new TaskFileError(response.status, errorText(body, response.status), url);

  const size = Number(response.headers.get('x-agora-file-size'));
  const offset = Number(response.headers.get('x-agora-offset'));
  if (!Number.isSafeInteger(size) || !Number.isSafeInteger(offset)) {
    throw new TaskFileError(response.status, `the answer lacks the X-Agora-File-Size and X-Agora-Offset headers; is ${base} an Agora master?`, url);
  }
  return { data: body, size, offset };
}

/** The master's `{error}` message, or the body itself when it is not that JSON (a proxy's page). */
function errorText(body: Buffer, status: number): string {
  const text = body.toString('utf8');
  try {
    const parsed = JSON.parse(text) as { error?: unknown };
    if (typeof parsed.error === 'string') return parsed.error;
  } catch {
    // not JSON
  }
  return text.trim().slice(0, 500) || `the master answered HTTP ${status} with no explanation`;
}

/** fetch() hides the socket error (ECONNREFUSED, ENOTFOUND) in `cause`. */
function describeFetchError(error: unknown): string {
  const cause = (error as { cause?: { code?: string; message?: string } }).cause;
  if (cause?.code) return `${cause.code}${cause.message ? ` (${cause.message})` : ''}`;
  return (error as Error).message;
}
