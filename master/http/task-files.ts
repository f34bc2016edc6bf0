/**
 * `GET /api/v1/frameworks/{frameworkId}/tasks/{taskId}/files/{stdout|stderr}?offset=N&length=M`:
 * part of a task's stdout or stderr, read from its agent's sandbox through the master (Mesos'
 * /files/read). 200 carries the raw bytes with `X-Agora-File-Size` (the file's size when read) and
 * `X-Agora-Offset` (where the bytes start); page on with `offset + bytes received` until it reaches
 * the size. Errors are JSON `{error}`.
 *
 * The parsing is pure (parseTaskFileRequest) so every bad-input case is unit-tested without sockets.
 */
import type { ServerResponse } from 'node:http';
import type { TaskFileErrorKind } from '../file-reads.ts';
import { TaskFileReadError } from '../file-reads.ts';
import type { Master } from '../master.ts';
import { idSchema, MAX_FILE_READ_BYTES, TASK_FILES, type TaskFileName } from '../protocol/messages.ts';

export const TASK_FILE_ROUTE = '/api/v1/frameworks/{frameworkId}/tasks/{taskId}/files/{stdout|stderr}';
export const FILE_SIZE_HEADER = 'X-Agora-File-Size';
export const OFFSET_HEADER = 'X-Agora-Offset';

export interface TaskFileRequest {
  frameworkId: string;
  taskId: string;
  file: TaskFileName;
  offset: number;
  length: number;
}

export type ParsedTaskFileRequest = { ok: true; request: TaskFileRequest } | { ok: false; status: 400; error: string };

const ROUTE = /^\/api\/v1\/frameworks\/([^/]+)\/tasks\/([^/]+)\/files\/([^/]+)$/;

/** Whether a path is this route at all (then parseTaskFileRequest says whether it is well-formed). */
export function isTaskFilePath(pathname: string): boolean {
  return ROUTE.test(pathname);
}

/**
 * Parses the route's path (still URL-encoded: ids are decoded per segment, so an encoded "/" stays
 * inside its id and is refused there) and its query.
 */
export function parseTaskFileRequest(pathname: string, query: URLSearchParams): ParsedTaskFileRequest {
  const bad = (error: string): ParsedTaskFileRequest => ({ ok: false, status: 400, error });
  const match = ROUTE.exec(pathname);
  if (!match) return bad(`not a task file path; use ${TASK_FILE_ROUTE}`);
  const segments: string[] = [];
  for (const [name, raw] of [['framework id', match[1]!], ['task id', match[2]!], ['file name', match[3]!]] as const) {
    try {
      segments.push(decodeURIComponent(raw));
    } catch {
      return bad(`the ${name} "${raw}" is not valid URL encoding`);
    }
  }
  const [frameworkId, taskId, file] = segments as [string, string, string];
  for (const [name, id] of [['framework id', frameworkId], ['task id', taskId]] as const) {
    const checked = idSchema.safeParse(id);
    if (!checked.success) return bad(`the ${name} "${id.slice(0, 200)}" ${checked.error.issues[0]?.message ?? 'is not valid'}`);
  }
  if (!(TASK_FILES as readonly string[]).includes(file)) return bad(`unknown file "${file.slice(0, 100)}"; a task's files are ${TASK_FILES.join(' and ')}`);

  const offset = wholeNumber(query.get('offset'), 0);
  if (offset === undefined) return bad(`offset must be a whole number of bytes, 0 or more; got "${(query.get('offset') ?? '').slice(0, 40)}"`);
  const length = wholeNumber(query.get('length'), MAX_FILE_READ_BYTES);
  if (length === undefined || length < 1 || length > MAX_FILE_READ_BYTES) {
    return bad(`length must be a whole number of bytes from 1 to ${MAX_FILE_READ_BYTES} (1 MiB); got "${(query.get('length') ?? '').slice(0, 40)}"`);
  }
  return { ok: true, request: { frameworkId, taskId, file: file as TaskFileName, offset, length } };
}

/** A query value of decimal digits as a safe integer; `fallback` when absent; undefined when malformed. */
function wholeNumber(value: string | null, fallback: number): number | undefined {
  if (value === null) return fallback;
  if (!/^\d{1,16}$/.test(value)) return undefined;
  const n = Number(value);
  return Number.isSafeInteger(n) ? n : undefined;
}

/** The HTTP status for each way a read can fail. */
export function statusForKind(kind: TaskFileErrorKind): number {
  switch (kind) {
    case 'INVALID':
      return 400;
    case 'NOT_FOUND':
      return 404;
    case 'UNAVAILABLE':
      return 503;
    case 'TIMEOUT':
      return 504;
    case 'UNSUPPORTED':
      return 501;
    case 'FAILED':
      return 502;
  }
}

/** Serves the route; never throws (a failure becomes a JSON error answer). */
export async function serveTaskFile(master: Master, pathname: string, query: URLSearchParams, res: ServerResponse): Promise<void> {
  const parsed = parseTaskFileRequest(pathname, query);
  if (!parsed.ok) return sendError(res, parsed.status, parsed.error);
  const { frameworkId, taskId, file, offset, length } = parsed.request;
  try {
    const read = await master.readTaskFile(frameworkId, taskId, file, offset, length);
    res.writeHead(200, {
      'content-type': 'application/octet-stream',
      'content-length': read.data.length,
      'cache-control': 'no-store',
      [FILE_SIZE_HEADER]: String(read.size),
      [OFFSET_HEADER]: String(read.offset),
    });
    res.end(read.data);
  } catch (error) {
    if (error instanceof TaskFileReadError) return sendError(res, statusForKind(error.kind), error.message);
    sendError(res, 500, `reading the ${file} of task ${taskId} failed inside the master: ${(error as Error).message}`);
  }
}

function sendError(res: ServerResponse, status: number, error: string): void {
  if (res.headersSent || res.destroyed) return;
  const text = JSON.stringify({ error });
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}
