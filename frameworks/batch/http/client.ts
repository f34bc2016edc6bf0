/**
 * A typed client for the batch REST API (what `agora job …` uses), its event stream, and
 * `followRun`, which watches one run to its end. Errors carry the server's message and per-field
 * problems so a CLI can print them as they are.
 */
import type { BatchEvent, JobView, ListRunsOptions, RunSummary, RunTaskView, RunView, TaskLogChunk, TaskLogFile, TaskLogRequest } from '../batch-api.ts';
import type { JobSpec, JobSpecInput } from '../job-spec.ts';
import type { DefinitionFormat, FieldProblem } from '../parse-job-spec.ts';
import { TERMINAL_RUN_STATES } from '../run-state.ts';
import { eventFromWire, jobViewFromWire, specToWire } from './wire.ts';
import { ApiTransport, unreachableReason } from '../../sdk/http/client-kit.ts';

/** The API answered with an error status. */
export class BatchHttpError extends Error {
  override name = 'BatchHttpError';
  constructor(
    readonly status: number,
    message: string,
    readonly problems: readonly FieldProblem[] = [],
    /** The BatchError code behind it, when the scheduler refused (NOT_FOUND, CONFLICT, INVALID, UNAVAILABLE). */
    readonly code?: string,
  ) {
    super(message);
  }
}

/** Nothing answered at the address (not started, wrong port, firewall), or the connection broke. */
export class BatchUnreachableError extends Error {
  override name = 'BatchUnreachableError';
  constructor(
    readonly url: string,
    options: { cause: unknown },
  ) {
    super(`cannot reach the batch API at ${url} (${unreachableReason(options.cause)}) — is \`agora up\` running? set --api or AGORA_BATCH_API`, options);
  }
}

export interface PutJobResult {
  job: JobView;
  /** false: an existing job of that id was replaced. */
  created: boolean;
}

export interface EventsOptions {
  /** Only this run's events (`run` and `task`); the stream opens with the run's current summary. */
  run?: string;
  /** Only this job's events. */
  job?: string;
  types?: ReadonlyArray<BatchEvent['type']>;
  signal?: AbortSignal;
  /** Called once the server has accepted the subscription (events from then on are delivered). */
  onOpen?: () => void;
  /** The stream counts as broken after this long without a byte (the server sends a heartbeat every 15 s). @default 45000 */
  idleTimeoutMs?: number;
}

type Force = { force?: boolean };

export class BatchClient {
  readonly baseUrl: string;
  private readonly transport: ApiTransport;

  constructor(baseUrl: string, options: { timeoutMs?: number } = {}) {
    this.transport = new ApiTransport(baseUrl, {
      ...options,
      unreachable: (cause) => new BatchUnreachableError(this.baseUrl, { cause }),
      httpError: (status, message, problems, code) => new BatchHttpError(status, message, problems, code),
    });
    this.baseUrl = this.transport.baseUrl;
  }

  async listJobs(): Promise<JobView[]> {
    return (await this.transport.call<{ jobs: unknown[] }>('GET', '/v1/jobs')).jobs.map(jobViewFromWire);
  }
  async getJob(jobId: string): Promise<JobView | undefined> {
    const wire = await this.transport.find<unknown>('GET', `/v1/jobs/${encodeURIComponent(jobId)}`);
    return wire === undefined ? undefined : jobViewFromWire(wire);
  }
  /**
   * Creates or replaces a job from its YAML or JSON text, as written: the server parses it and
   * answers 422 with every bad field (a BatchHttpError with `problems`). Without `format`, text
   * starting with `{` is JSON and anything else YAML.
   */
  async submitJob(text: string, format?: DefinitionFormat): Promise<PutJobResult> {
    const contentType = format === 'json' ? 'application/json' : format === 'yaml' ? 'application/yaml' : 'text/plain; charset=utf-8';
    return this.putResult(await this.transport.call('POST', '/v1/jobs', { text, contentType }));
  }
  /** Creates or replaces a job from a spec object (a parsed JobSpec or what a person would write); the server validates it. */
  async putJob(spec: JobSpec | JobSpecInput | Record<string, unknown>): Promise<PutJobResult> {
    const id = (spec as { id?: unknown }).id;
    const json = { json: specToWire(spec as Record<string, unknown>) };
    // Without a usable id, POST it anyway: the server names what is wrong with it.
    if (typeof id !== 'string' || id === '') return this.putResult(await this.transport.call('POST', '/v1/jobs', json));
    return this.putResult(await this.transport.call('PUT', `/v1/jobs/${encodeURIComponent(id)}`, json));
  }
  /** CONFLICT (409) while runs of it are active, unless `force`, which cancels them. */
  async deleteJob(jobId: string, options: Force = {}): Promise<void> {
    await this.transport.call('DELETE', `/v1/jobs/${encodeURIComponent(jobId)}${options.force ? '?force=true' : ''}`);
  }
  triggerRun(jobId: string): Promise<RunSummary> {
    return this.transport.call('POST', `/v1/jobs/${encodeURIComponent(jobId)}/runs`);
  }
  /** Newest first. */
  async listRuns(options: ListRunsOptions = {}): Promise<RunSummary[]> {
    const query = new URLSearchParams();
    if (options.jobId !== undefined) query.set('job', options.jobId);
    if (options.active !== undefined) query.set('active', String(options.active));
    if (options.limit !== undefined) query.set('limit', String(options.limit));
    const text = query.toString();
    return (await this.transport.call<{ runs: RunSummary[] }>('GET', `/v1/runs${text ? `?${text}` : ''}`)).runs;
  }
  getRun(runId: string): Promise<RunView | undefined> {
    return this.transport.find<RunView>('GET', `/v1/runs/${encodeURIComponent(runId)}`);
  }
  /** The run without its tasks: what a progress display needs, small even for a 100000-task array. */
  getRunSummary(runId: string): Promise<RunSummary | undefined> {
    return this.transport.find<RunSummary>('GET', `/v1/runs/${encodeURIComponent(runId)}?summary=true`);
  }
  /** One task with its attempts; undefined when the run or the index is not there. */
  async getTask(runId: string, index: number): Promise<RunTaskView | undefined> {
    const found = await this.transport.find<RunTaskView & { runId: string }>('GET', `/v1/runs/${encodeURIComponent(runId)}/tasks/${index}`);
    if (!found) return undefined;
    const { runId: _runId, ...task } = found;
    return task;
  }
  /** CONFLICT (409) when the run has ended already. */
  cancelRun(runId: string): Promise<RunSummary> {
    return this.transport.call('POST', `/v1/runs/${encodeURIComponent(runId)}/cancel`);
  }

  /** A piece of a task's stdout or stderr; read on from `offset + data.length` while it is below `size` or the attempt has not ended. */
  async taskLog(runId: string, index: number, request: TaskLogRequest = {}): Promise<TaskLogChunk> {
    const query = new URLSearchParams();
    if (request.file !== undefined) query.set('file', request.file);
    if (request.attempt !== undefined) query.set('attempt', String(request.attempt));
    if (request.offset !== undefined) query.set('offset', String(request.offset));
    if (request.length !== undefined) query.set('length', String(request.length));
    const text = query.toString();
    const path = `/v1/runs/${encodeURIComponent(runId)}/tasks/${index}/logs${text ? `?${text}` : ''}`;
    const res = await this.transport.send('GET', path);
    if (!res.ok) throw await this.transport.errorOf(res, 'GET', path);
    let data: Buffer;
    try {
      data = Buffer.from(await res.arrayBuffer());
    } catch (error) {
      throw new BatchUnreachableError(this.baseUrl, { cause: error });
    }
    const header = (name: string) => res.headers.get(name) ?? '';
    return {
      runId,
      index,
      attempt: Number(header('x-agora-attempt')),
      taskId: header('x-agora-task-id'),
      file: (header('x-agora-file') || request.file || 'stdout') as TaskLogFile,
      offset: Number(header('x-agora-offset') || request.offset || 0),
      data,
      size: Number(header('x-agora-file-size')),
      ended: header('x-agora-ended') === 'true',
    };
  }

  /**
   * Delivers the server's events to `listener` until the signal aborts (resolves) or the server
   * ends the stream (resolves). Rejects with BatchUnreachableError when it cannot connect or the
   * stream breaks or goes silent, with BatchHttpError when the server refuses (404: no such run).
   * One connection: to keep following across drops, call it again (as `followRun` does).
   */
  async events(listener: (event: BatchEvent) => void, options: EventsOptions = {}): Promise<void> {
    const query = new URLSearchParams();
    if (options.run !== undefined) query.set('run', options.run);
    if (options.job !== undefined) query.set('job', options.job);
    if (options.types !== undefined) query.set('type', options.types.join(','));
    const text = query.toString();
    const path = `/v1/events${text ? `?${text}` : ''}`;
    if (options.signal?.aborted) return;

    const controller = new AbortController();
    const stop = () => controller.abort();
    options.signal?.addEventListener('abort', stop, { once: true });
    const idleMs = options.idleTimeoutMs ?? 45_000;
    let idle: NodeJS.Timeout | undefined;
    let silent = false;
    const touch = (ms: number) => {
      clearTimeout(idle);
      idle = setTimeout(() => {
        silent = true;
        controller.abort();
      }, ms);
    };
    const aborted = () => options.signal?.aborted === true;
    try {
      touch(this.transport.timeoutMs);
      let res: Response;
      try {
        res = await fetch(`${this.baseUrl}${path}`, { signal: controller.signal, headers: { accept: 'text/event-stream' } });
      } catch (error) {
        if (aborted()) return;
        throw new BatchUnreachableError(this.baseUrl, { cause: silent ? new Error(`no answer within ${this.transport.timeoutMs} ms`) : error });
      }
      if (!res.ok) throw await this.transport.errorOf(res, 'GET', path);
      if (!res.body) throw new BatchUnreachableError(this.baseUrl, { cause: new Error('the event stream has no body') });
      touch(idleMs);
      options.onOpen?.();
      const parser = new SseParser((name, data) => {
        if (!EVENT_NAMES.has(name)) return;
        let parsed: unknown;
        try {
          parsed = JSON.parse(data);
        } catch {
          return; // not ours to judge; a later event may be fine
        }
        listener(eventFromWire(parsed));
      });
      const decoder = new TextDecoder();
      try {
        for await (const chunk of res.body) {
          touch(idleMs);
          parser.push(decoder.decode(chunk, { stream: true }));
        }
      } catch (error) {
        if (aborted()) return;
        const cause = silent ? new Error(`the event stream was silent for ${idleMs} ms`) : error;
        throw new BatchUnreachableError(this.baseUrl, { cause });
      }
    } finally {
      clearTimeout(idle);
      options.signal?.removeEventListener('abort', stop);
      controller.abort();
    }
  }

  private async putResult(wire: unknown): Promise<PutJobResult> {
    const { job, created } = wire as { job: unknown; created: boolean };
    return { job: jobViewFromWire(job), created };
  }
}

const EVENT_NAMES = new Set<string>(['job_changed', 'run', 'task', 'schedule_skipped']);

/** The text/event-stream format: `event:` and `data:` lines, a blank line ends an event, `:` lines are comments. */
class SseParser {
  private buffer = '';
  private name = '';
  private data: string[] = [];

  constructor(private readonly dispatch: (name: string, data: string) => void) {}

  push(text: string): void {
    this.buffer += text;
    let at: number;
    while ((at = this.buffer.search(/\r\n|\r|\n/)) >= 0) {
      const line = this.buffer.slice(0, at);
      const breakLength = this.buffer.startsWith('\r\n', at) ? 2 : 1;
      // A lone \r at the end may be the first half of \r\n: wait for the next chunk.
      if (breakLength === 1 && this.buffer[at] === '\r' && at === this.buffer.length - 1) break;
      this.buffer = this.buffer.slice(at + breakLength);
      this.line(line);
    }
  }

  private line(line: string): void {
    if (line === '') {
      if (this.data.length > 0) this.dispatch(this.name || 'message', this.data.join('\n'));
      this.name = '';
      this.data = [];
      return;
    }
    if (line.startsWith(':')) return;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') this.name = value;
    else if (field === 'data') this.data.push(value);
  }
}

export function isRunEnded(run: Pick<RunSummary, 'state'>): boolean {
  return TERMINAL_RUN_STATES.includes(run.state);
}

export interface FollowRunOptions {
  signal?: AbortSignal;
  /** How often the run is also read with a GET, in case events are lost. @default 3000 */
  pollMs?: number;
  /** The wait before reconnecting a dropped event stream. @default 1000 */
  reconnectMs?: number;
  /** Give up (rejecting with the last error) after the API has been unreachable this long. @default 60000 */
  unreachableMs?: number;
}

/**
 * Follows a run until it ends and resolves with its final summary, calling `onProgress` whenever
 * its state or task counts change. Listens to the run's events and reads it every few seconds as
 * well, so a dropped stream (reconnected after a second) or a lost event only delays progress.
 * Rejects with a BatchHttpError (404) if the run is unknown, with the last BatchUnreachableError
 * if the API stays unreachable for `unreachableMs`, or with the signal's reason when aborted.
 */
export function followRun(client: BatchClient, runId: string, onProgress: (run: RunSummary) => void, options: FollowRunOptions = {}): Promise<RunSummary> {
  const pollMs = options.pollMs ?? 3000;
  const reconnectMs = options.reconnectMs ?? 1000;
  const unreachableMs = options.unreachableMs ?? 60_000;
  const outer = options.signal;
  if (outer?.aborted) return Promise.reject(abortReason(outer));

  const controller = new AbortController();
  const { signal } = controller;
  let latest: RunSummary | undefined;
  let lastKey = '';
  let unreachableSince: number | undefined;
  let resolveDone!: (run: RunSummary) => void;
  let rejectDone!: (error: unknown) => void;
  const done = new Promise<RunSummary>((resolve, reject) => {
    resolveDone = resolve;
    rejectDone = reject;
  });
  const finish = (error: unknown, run?: RunSummary) => {
    if (signal.aborted) return;
    controller.abort();
    outer?.removeEventListener('abort', onOuterAbort);
    if (run) resolveDone(run);
    else rejectDone(error);
  };
  const onOuterAbort = () => finish(abortReason(outer!));
  outer?.addEventListener('abort', onOuterAbort, { once: true });

  const see = (run: RunSummary) => {
    if (signal.aborted || run.id !== runId) return;
    if (latest && isBehind(run, latest)) return; // an older answer arriving after a newer event
    latest = run;
    const key = JSON.stringify([run.state, run.counts, run.tasks, run.waiting ?? '', run.reason ?? '']);
    if (key !== lastKey) {
      lastKey = key;
      try {
        onProgress(run);
      } catch (error) {
        finish(error);
        return;
      }
    }
    if (isRunEnded(run)) finish(undefined, run);
  };
  /** Unreachable or a server error: keep trying for a while. Anything else (404, 400): give up now. */
  const failed = (error: unknown) => {
    if (signal.aborted) return;
    const transient = error instanceof BatchUnreachableError || (error instanceof BatchHttpError && error.status >= 500);
    if (!transient) return finish(error);
    unreachableSince ??= Date.now();
    if (Date.now() - unreachableSince >= unreachableMs) finish(error);
  };
  const reached = () => {
    unreachableSince = undefined;
  };

  void (async () => {
    while (!signal.aborted) {
      try {
        await client.events(
          (event) => {
            if (event.type === 'run') see(event.run);
          },
          { run: runId, types: ['run'], signal, onOpen: reached },
        );
      } catch (error) {
        failed(error);
      }
      await sleep(reconnectMs, signal);
    }
  })();
  void (async () => {
    while (!signal.aborted) {
      try {
        const run = await client.getRunSummary(runId);
        reached();
        if (!run) finish(new BatchHttpError(404, latest ? `run ${runId} is gone: its job was deleted (\`agora job rm\`, or its ttlSecondsAfterFinished passed) before the run was seen to end` : `no run ${runId}`, [], 'NOT_FOUND'));
        else see(run);
      } catch (error) {
        failed(error);
      }
      await sleep(pollMs, signal);
    }
  })();
  return done;
}

const STATE_RANK: Record<RunSummary['state'], number> = { queued: 0, running: 1, succeeded: 2, failed: 2, cancelled: 2, timed_out: 2 };

/** `a` is an older view of the run than `b` (fewer tasks ended, or an earlier state). */
function isBehind(a: RunSummary, b: RunSummary): boolean {
  const rank = STATE_RANK[a.state] - STATE_RANK[b.state];
  if (rank !== 0) return rank < 0;
  const ended = (run: RunSummary) => run.counts.succeeded + run.counts.failed + run.counts.cancelled;
  return ended(a) < ended(b);
}

function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new Error('aborted');
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
