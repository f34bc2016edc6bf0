/**
 * The batch framework's REST API (JSON) and its event stream, over node:http, on a `BatchApi`.
 *
 * Jobs are definitions (`/v1/jobs/{id}`), runs are their executions (`/v1/runs/{runId}`). Lists come
 * wrapped (`{jobs: […]}`, `{runs: […]}`), single objects bare. A job's spec is shown as it is
 * written (array `"0-99%10"`, constraints `["hostname", "UNIQUE"]`), so a GET can be edited and PUT
 * back. Task logs are raw bytes with their position in `X-Agora-*` headers. Errors are
 * `{error, …}` with a status a client can branch on: 400 unreadable body or bad query value,
 * 404 no such thing (with the routes when the path itself is unknown), 405 wrong method, 409
 * conflict, 413 body too big, 422 invalid (`problems: [{field, message}]` for job specs), 503 the
 * cluster cannot answer now.
 */
import type { Logger } from 'pino';
import { HttpError, MAX_BODY_BYTES, readParsedBody } from '../../sdk/http/body.ts';
import { notFound, only, sendJson, startApiServer, type ApiRequest, type ApiServer, type ErrorAnswer } from '../../sdk/http/server-kit.ts';
import { SseStreams, streamHeld } from '../../sdk/http/sse.ts';
import { BatchError, type BatchApi, type BatchEvent, type ListRunsOptions, type RunSummary, type RunView, type TaskLogFile, type TaskLogRequest } from '../batch-api.ts';
import type { JobSpec } from '../job-spec.ts';
import { JobSpecError, validateJobSpec, type FieldProblem } from '../parse-job-spec.ts';
import { eventToWire, jobViewToWire } from './wire.ts';

export interface BatchHttpOptions {
  api: BatchApi;
  /** @default '127.0.0.1' */
  host?: string;
  /** 0 picks a free port. @default 5052 */
  port?: number;
  /** Comment lines on idle event streams. @default 15000 */
  heartbeatMs?: number;
  /** @default 1 MiB */
  maxBodyBytes?: number;
  logger?: Logger;
}

export type BatchHttp = ApiServer;

export const DEFAULT_BATCH_PORT = 5052;

/** What a 404 lists, so a person who guessed a path sees the real ones. */
export const ROUTES = [
  'GET    /health',
  'GET    /v1/jobs',
  'POST   /v1/jobs                        (JSON or YAML job spec; creates or replaces)',
  'GET    /v1/jobs/{id}',
  'PUT    /v1/jobs/{id}                   (creates or replaces; the body\'s id must match or be left out)',
  'DELETE /v1/jobs/{id}[?force=true]      (force cancels its active runs)',
  'POST   /v1/jobs/{id}/runs              (starts a run now)',
  'GET    /v1/jobs/{id}/runs[?active=true&limit=N]',
  'GET    /v1/runs[?job={id}&active=true&limit=N]',
  'GET    /v1/runs/{runId}[?summary=true]  (summary: without the tasks)',
  'POST   /v1/runs/{runId}/cancel',
  'DELETE /v1/runs/{runId}                (cancels)',
  'GET    /v1/runs/{runId}/tasks',
  'GET    /v1/runs/{runId}/tasks/{index}',
  'GET    /v1/runs/{runId}/tasks/{index}/logs[?file=stdout|stderr&attempt=N&offset=N&length=N]',
  'GET    /v1/events[?run={runId}|job={id}&type=run,task,job_changed,schedule_skipped]  (server-sent events)',
];

/** The most a task log read returns (TaskLogRequest.length's cap). */
const MAX_LOG_CHUNK_BYTES = 1024 * 1024;

const EVENT_TYPES: ReadonlyArray<BatchEvent['type']> = ['job_changed', 'run', 'task', 'schedule_skipped'];
const LOG_FILES: readonly TaskLogFile[] = ['stdout', 'stderr'];

export async function startBatchHttp(options: BatchHttpOptions): Promise<BatchHttp> {
  const streams = new SseStreams(options.heartbeatMs ?? 15_000);
  const context: Context = { api: options.api, maxBodyBytes: options.maxBodyBytes ?? MAX_BODY_BYTES, streams };
  return startApiServer({
    name: 'batch API',
    host: options.host ?? '127.0.0.1',
    port: options.port ?? DEFAULT_BATCH_PORT,
    handle: (r) => handle(context, r),
    answerError,
    streams,
    logger: options.logger,
  });
}

interface Context {
  api: BatchApi;
  maxBodyBytes: number;
  streams: SseStreams;
}

async function handle(ctx: Context, r: ApiRequest): Promise<void> {
  const [first, second, ...rest] = r.segments;

  if (first === 'health' && second === undefined) return only(r, ['GET'], () => sendJson(r.res, 200, { status: 'ok' }));
  if (first !== 'v1') return notFound(r, ROUTES);
  switch (second) {
    case 'jobs':
      return routeJobs(ctx, r, rest);
    case 'runs':
      return routeRuns(ctx, r, rest);
    case 'events':
      if (rest.length > 0) return notFound(r, ROUTES);
      return only(r, ['GET'], () => streamEvents(ctx, r));
    default:
      return notFound(r, ROUTES);
  }
}

async function routeJobs(ctx: Context, r: ApiRequest, path: string[]): Promise<void> {
  const { api } = ctx;
  const { res } = r;
  if (path.length === 0) {
    return only(r, ['GET', 'POST'], async () => {
      if (r.method === 'GET') return sendJson(res, 200, { jobs: (await api.listJobs()).map(jobViewToWire) });
      return putJob(ctx, r, await readJobSpec(ctx, r, undefined));
    });
  }
  const [jobId, sub, ...more] = path as [string, ...string[]];
  if (sub === undefined) {
    return only(r, ['GET', 'PUT', 'DELETE'], async () => {
      if (r.method === 'GET') return sendJson(res, 200, jobViewToWire(await needJob(api, jobId)));
      if (r.method === 'PUT') return putJob(ctx, r, await readJobSpec(ctx, r, jobId));
      await needJob(api, jobId);
      await api.deleteJob(jobId, { force: booleanParam(r.query, 'force') ?? false });
      return sendJson(res, 200, { jobId, deleted: true });
    });
  }
  if (sub === 'runs' && more.length === 0) {
    return only(r, ['GET', 'POST'], async () => {
      if (r.method === 'GET') {
        await needJob(api, jobId);
        return sendJson(res, 200, { runs: await api.listRuns({ ...listRunsOptions(r.query), jobId }) });
      }
      await needJob(api, jobId);
      const run = await api.triggerRun(jobId);
      res.setHeader('location', `/v1/runs/${encodeURIComponent(run.id)}`);
      return sendJson(res, 201, run);
    });
  }
  return notFound(r, ROUTES);
}

async function putJob(ctx: Context, r: ApiRequest, spec: JobSpec): Promise<void> {
  const { job, created } = await ctx.api.putJob(spec);
  if (created) r.res.setHeader('location', `/v1/jobs/${encodeURIComponent(spec.id)}`);
  sendJson(r.res, created ? 201 : 200, { job: jobViewToWire(job), created });
}

async function routeRuns(ctx: Context, r: ApiRequest, path: string[]): Promise<void> {
  const { api } = ctx;
  const { res } = r;
  if (path.length === 0) return only(r, ['GET'], async () => sendJson(res, 200, { runs: await api.listRuns(listRunsOptions(r.query)) }));
  const [runId, sub, index, leaf, ...more] = path as [string, ...string[]];
  if (sub === undefined) {
    return only(r, ['GET', 'DELETE'], async () => {
      if (r.method === 'GET') {
        const run = await needRun(api, runId);
        // A big array's view is megabytes; followers polling for progress only need the summary.
        return sendJson(res, 200, booleanParam(r.query, 'summary') ? summaryOf(run) : run);
      }
      return cancel(api, r, runId);
    });
  }
  if (sub === 'cancel' && index === undefined) return only(r, ['POST'], () => cancel(api, r, runId));
  if (sub !== 'tasks' || more.length > 0) return notFound(r, ROUTES);
  if (index === undefined) return only(r, ['GET'], async () => sendJson(res, 200, { runId, tasks: (await needRun(api, runId)).taskList }));
  if (leaf !== undefined && leaf !== 'logs') return notFound(r, ROUTES);
  return only(r, ['GET'], async () => {
    const taskIndex = wholeNumber(index, 'the task index in the path', 0);
    if (leaf === undefined) {
      const task = await api.getTask(runId, taskIndex);
      if (!task) {
        const run = await needRun(api, runId);
        throw new BatchError('NOT_FOUND', `run ${runId} has no task ${taskIndex}; its tasks are ${describeIndices(run)}`);
      }
      return sendJson(res, 200, { runId, ...task });
    }
    const request: TaskLogRequest = {};
    const file = r.query.get('file');
    if (file !== null) {
      if (!LOG_FILES.includes(file as TaskLogFile)) throw new HttpError(400, `file must be stdout or stderr, got ${JSON.stringify(file)}`);
      request.file = file as TaskLogFile;
    }
    const attempt = numberParam(r.query, 'attempt', 1, 'the latest attempt');
    if (attempt !== undefined) request.attempt = attempt;
    const offset = numberParam(r.query, 'offset', 0, '0');
    if (offset !== undefined) request.offset = offset;
    const length = numberParam(r.query, 'length', 1, '1 MiB');
    if (length !== undefined) request.length = Math.min(length, MAX_LOG_CHUNK_BYTES); // the contract's cap
    const chunk = await api.taskLog(runId, taskIndex, request);
    res.writeHead(200, {
      'content-type': 'application/octet-stream',
      'content-length': chunk.data.length,
      'cache-control': 'no-store',
      'x-agora-file': chunk.file,
      'x-agora-file-size': String(chunk.size),
      'x-agora-offset': String(chunk.offset),
      'x-agora-task-id': chunk.taskId,
      'x-agora-attempt': String(chunk.attempt),
      'x-agora-ended': String(chunk.ended),
    });
    res.end(chunk.data);
  });
}

async function cancel(api: BatchApi, r: ApiRequest, runId: string): Promise<void> {
  await needRun(api, runId);
  sendJson(r.res, 200, await api.cancelRun(runId));
}

/** `?job=&active=&limit=` for run lists. */
function listRunsOptions(query: URLSearchParams): ListRunsOptions {
  const options: ListRunsOptions = {};
  const jobId = query.get('job');
  if (jobId !== null) {
    if (jobId === '') throw new HttpError(400, 'job must be a job id, e.g. ?job=nightly-report; leave it out for all jobs');
    options.jobId = jobId;
  }
  const active = booleanParam(query, 'active');
  if (active !== undefined) options.active = active;
  const limit = numberParam(query, 'limit', 1, '100');
  if (limit !== undefined) options.limit = limit;
  return options;
}

/**
 * Reads a job spec body; with `pathId` (PUT), the body's id may be left out but must match.
 * Syntax errors are 400; a spec that parses but is wrong is 422 with every bad field.
 */
async function readJobSpec(ctx: Context, r: ApiRequest, pathId: string | undefined): Promise<JobSpec> {
  const data = await readParsedBody(r.req, ctx.maxBodyBytes);
  if (data === undefined) throw new HttpError(400, 'the body is empty; send a job spec as JSON or YAML, e.g. {"id": "hello", "cmd": "echo hello"}');
  if (pathId !== undefined && typeof data === 'object' && data !== null && !Array.isArray(data)) {
    const fields = data as Record<string, unknown>;
    if (fields.id === undefined) {
      fields.id = pathId;
    } else if (fields.id !== pathId) {
      throw new HttpError(422, `the body's id ${JSON.stringify(fields.id)} does not match the path's ${pathId}`, {
        problems: [{ field: 'id', message: `must be ${pathId} (the id in the path) or left out` }],
      });
    }
  }
  return validateJobSpec(data);
}

/**
 * Events as they happen, filtered by `?run=`, `?job=` and `?type=`. With `?run=` the stream opens
 * with the run's current summary (a `run` event), so a follower needs no separate GET and misses
 * nothing between the two: it subscribes before reading the run and holds events until then.
 */
async function streamEvents(ctx: Context, r: ApiRequest): Promise<void> {
  const runId = nonEmptyParam(r.query, 'run', 'a run id');
  const jobId = nonEmptyParam(r.query, 'job', 'a job id');
  const typeText = r.query.get('type');
  let types: Set<string> | undefined;
  if (typeText !== null) {
    types = new Set(typeText.split(',').map((t) => t.trim()).filter(Boolean));
    const unknown = [...types].filter((t) => !EVENT_TYPES.includes(t as BatchEvent['type']));
    if (unknown.length > 0 || types.size === 0) {
      throw new HttpError(400, `type must be a comma-separated list of ${EVENT_TYPES.join(', ')}${unknown.length > 0 ? `; ${unknown.map((t) => JSON.stringify(t)).join(', ')} is not one` : ''}`);
    }
  }
  const accept = (event: BatchEvent): boolean => {
    if (types && !types.has(event.type)) return false;
    if (runId !== undefined) {
      if (event.type === 'run') return event.run.id === runId;
      if (event.type === 'task') return event.runId === runId;
      return false;
    }
    if (jobId !== undefined) {
      if (event.type === 'run') return event.run.jobId === jobId;
      return event.jobId === jobId;
    }
    return true;
  };

  return streamHeld<BatchEvent>(ctx.streams, r.res, {
    subscribe: (listener) =>
      ctx.api.subscribe((event) => {
        if (accept(event)) listener(event);
      }),
    snapshot: async () => {
      if (runId === undefined) return [];
      const run = summaryOf(await needRun(ctx.api, runId));
      return !types || types.has('run') ? [{ type: 'run', run }] : [];
    },
    toWire: eventToWire,
  });
}

function summaryOf(run: RunView): RunSummary {
  const { taskList: _tasks, ...summary } = run;
  return summary;
}

async function needJob(api: BatchApi, jobId: string) {
  const job = await api.getJob(jobId);
  if (!job) throw new BatchError('NOT_FOUND', `no job ${jobId}; GET /v1/jobs lists them`);
  return job;
}

async function needRun(api: BatchApi, runId: string): Promise<RunView> {
  const run = await api.getRun(runId);
  if (!run) throw new BatchError('NOT_FOUND', `no run ${runId}; GET /v1/runs lists the latest (GET /v1/runs?job={id} those of one job)`);
  return run;
}

function describeIndices(run: RunView): string {
  const indices = run.taskList.map((t) => t.index);
  if (indices.length === 0) return 'none';
  if (indices.length <= 5) return indices.join(', ');
  return `${indices.slice(0, 3).join(', ')}, … ${indices[indices.length - 1]} (${indices.length} in all)`;
}

function booleanParam(query: URLSearchParams, name: string): boolean | undefined {
  const value = query.get(name);
  if (value === null) return undefined;
  if (value === '' || value === 'true' || value === '1') return true;
  if (value === 'false' || value === '0') return false;
  throw new HttpError(400, `${name} must be true or false, got ${JSON.stringify(value)}`);
}

function numberParam(query: URLSearchParams, name: string, minimum: number, byDefault: string): number | undefined {
  const value = query.get(name);
  if (value === null) return undefined;
  return wholeNumber(value, name, minimum, `, or left out for ${byDefault}`);
}

function wholeNumber(text: string, what: string, minimum: number, hint = ''): number {
  const value = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(value) || value < minimum) {
    throw new HttpError(400, `${what} must be a whole number, ${minimum} or more${hint}; got ${JSON.stringify(text)}`);
  }
  return value;
}

function nonEmptyParam(query: URLSearchParams, name: string, what: string): string | undefined {
  const value = query.get(name);
  if (value === null) return undefined;
  if (value === '') throw new HttpError(400, `${name} must be ${what}; leave it out for every event`);
  return value;
}

const STATUS_OF_CODE = { NOT_FOUND: 404, CONFLICT: 409, INVALID: 422, UNAVAILABLE: 503 } as const;

function answerError(error: unknown): ErrorAnswer | undefined {
  if (error instanceof JobSpecError) {
    return { status: 422, body: { error: 'invalid job spec; fix the fields named in problems', problems: error.problems } };
  }
  if (!(error instanceof BatchError)) return undefined;
  const status = STATUS_OF_CODE[error.code] ?? 500;
  const body: Record<string, unknown> = { error: error.message, code: error.code };
  const problems = problemsIn(error.details);
  if (problems) body.problems = problems;
  else if (error.details !== undefined) body.details = error.details;
  return { status, body, ...(status === 503 && { headers: { 'retry-after': '2' } }) };
}

/** `details` that are field problems (`[{field, message}]` or `{problems: […]}`) become `problems`. */
function problemsIn(details: unknown): FieldProblem[] | undefined {
  const list = Array.isArray(details) ? details : (details as { problems?: unknown } | undefined)?.problems;
  if (!Array.isArray(list) || list.length === 0) return undefined;
  const isProblem = (p: unknown) => typeof p === 'object' && p !== null && typeof (p as FieldProblem).field === 'string' && typeof (p as FieldProblem).message === 'string';
  return list.every(isProblem) ? (list as FieldProblem[]) : undefined;
}
