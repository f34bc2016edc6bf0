/**
 * The batch REST API, its event stream and its client end to end, with nothing faked: a master and
 * an agent on loopback, the real batch scheduler (in-memory store), and its HTTP API. Tasks are
 * real shell processes; their logs are read through the master from the agent's sandbox.
 */
import { connect, type AddressInfo } from 'node:net';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from '../../agent/agent.ts';
import type { MasterServer } from '../../master/http/server.ts';
import type { BatchEvent, RunSummary, RunView } from '../../frameworks/batch/batch-api.ts';
import { BatchClient, BatchHttpError, BatchUnreachableError, followRun, startBatchHttp, type BatchHttp } from '../../frameworks/batch/http/index.ts';
import { startBatchFramework, type BatchFramework } from '../../frameworks/batch/main.ts';
import { serveBatch } from '../../frameworks/batch/serve.ts';
import { freePort, quiet, readEventStream, startAgent, startMaster, waitFor } from './helpers.ts';

interface Reply {
  status: number;
  headers: Headers;
  body: any;
}

describe('batch HTTP API over the real scheduler and a real cluster', () => {
  let master: MasterServer;
  let agent: Agent;
  let batch: BatchFramework;
  let http: BatchHttp;
  let client: BatchClient;

  beforeAll(async () => {
    master = await startMaster();
    agent = await startAgent(master, { hostname: '127.0.0.1' });
    batch = await startBatchFramework({
      master: master.wsUrl,
      store: 'memory:',
      logger: quiet,
      scheduler: { declineRefuseSeconds: 1, reconnect: { initialMs: 50, maxMs: 500 } },
    });
    http = await startBatchHttp({ api: batch.api, port: 0, heartbeatMs: 200 });
    client = new BatchClient(http.url);
  });
  afterAll(async () => {
    await http?.close();
    await batch?.close();
    await agent?.stop({ killTasks: true });
    await master?.close();
  });

  async function call(method: string, path: string, body?: string, contentType?: string): Promise<Reply> {
    const res = await fetch(`${http.url}${path}`, {
      method,
      ...(body !== undefined && { body, headers: contentType ? { 'content-type': contentType } : {} }),
    });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      // raw bytes (logs)
    }
    return { status: res.status, headers: res.headers, body: parsed };
  }

  async function ended(runId: string, timeoutMs = 20_000): Promise<RunView> {
    let last: RunView | undefined;
    return waitFor(
      async () => {
        last = (await call('GET', `/v1/runs/${runId}`)).body as RunView;
        return last.finishedAtMs !== undefined ? last : undefined;
      },
      () => `run ${runId} to end; last seen ${JSON.stringify(last)}`,
      timeoutMs,
    );
  }

  async function submit(yaml: string): Promise<Reply> {
    return call('POST', '/v1/jobs', yaml, 'application/yaml');
  }

  /** A run of a job whose single task sleeps, once it is running. */
  async function sleepingRun(jobId: string): Promise<RunSummary> {
    expect((await submit(`id: ${jobId}\ncmd: exec sleep 60\ncpus: 0.1\nmem: 32\nkillGracePeriodSeconds: 1\n`)).status).toBeLessThan(300);
    const run = (await call('POST', `/v1/jobs/${jobId}/runs`)).body as RunSummary;
    await waitFor(async () => ((await call('GET', `/v1/runs/${run.id}`)).body as RunView).taskList[0]?.attempts[0]?.startedAtMs !== undefined, `run ${run.id}'s task to start`, 15_000);
    return run;
  }

  it('answers /health', async () => {
    const reply = await call('GET', '/health');
    expect(reply.status).toBe(200);
    expect(reply.body).toEqual({ status: 'ok' });
  });

  describe('jobs', () => {
    it('creates a job from YAML (201), replaces it (200), lists and reads it back', async () => {
      const yaml = 'id: http.hello\ncmd: echo hello\ncpus: 0.1\nmem: 32\n';
      const created = await submit(yaml);
      expect(created.status).toBe(201);
      expect(created.headers.get('location')).toBe('/v1/jobs/http.hello');
      expect(created.body.created).toBe(true);
      expect(created.body.job.spec).toMatchObject({ id: 'http.hello', cmd: 'echo hello', cpus: 0.1, mem: 32 });

      const replaced = await submit(yaml.replace('echo hello', 'echo hello again'));
      expect(replaced.status).toBe(200);
      expect(replaced.body.created).toBe(false);
      expect(replaced.body.job.spec.cmd).toBe('echo hello again');

      const list = await call('GET', '/v1/jobs');
      expect(list.status).toBe(200);
      expect(list.body.jobs.map((j: any) => j.spec.id)).toContain('http.hello');
      const one = await call('GET', '/v1/jobs/http.hello');
      expect(one.status).toBe(200);
      expect(one.body).toMatchObject({ spec: { id: 'http.hello', cmd: 'echo hello again' }, activeRuns: 0 });
    });

    it('takes JSON too, and PUT with the id in the path (body id left out or matching)', async () => {
      const created = await call('POST', '/v1/jobs', JSON.stringify({ id: 'http.json', cmd: 'true', cpus: 0.1, mem: 16 }), 'application/json');
      expect(created.status).toBe(201);
      const put = await call('PUT', '/v1/jobs/http.json', JSON.stringify({ cmd: 'false', cpus: 0.1, mem: 16 }), 'application/json');
      expect(put.status).toBe(200);
      expect(put.body.job.spec).toMatchObject({ id: 'http.json', cmd: 'false' });
      const putNew = await call('PUT', '/v1/jobs/http.put-new', 'id: http.put-new\ncmd: "true"\n', 'application/yaml');
      expect(putNew.status).toBe(201);
      expect(putNew.body.created).toBe(true);
    });

    it('shows a spec as written, so what GET returns can be PUT back unchanged', async () => {
      const yaml = [
        'id: http.roundtrip',
        'cmd: echo $AGORA_TASK_INDEX',
        'array: "0-9,20-29%3"',
        'constraints: [["hostname", "like", "127.*"]]',
        'retries: {count: 2, backoffSeconds: 1s}',
        'timeoutSeconds: 2m',
        'schedule: {cron: "0 2 * * *", timezone: Europe/Berlin, concurrencyPolicy: forbid}',
        'dependencies: [http.hello]',
      ].join('\n');
      expect((await submit(yaml)).status).toBe(201);
      const { body: view } = await call('GET', '/v1/jobs/http.roundtrip');
      expect(view.spec.array).toBe('0-9,20-29%3');
      expect(view.spec.constraints).toEqual([['hostname', 'LIKE', '127.*']]);
      expect(view.spec.timeoutSeconds).toBe(120);
      expect(view.schedule.nextSlotMs).toBeGreaterThan(Date.now());
      const back = await call('PUT', '/v1/jobs/http.roundtrip', JSON.stringify(view.spec), 'application/json');
      expect(back.status, JSON.stringify(back.body)).toBe(200);
      expect(back.body.job.spec).toEqual(view.spec);
    });

    it('refuses a bad spec with 422 naming every bad field, and stores nothing', async () => {
      const before = (await call('GET', '/v1/jobs')).body.jobs.length;
      const bad = await submit('id: Bad_Job\ncmd: echo hi\ncpu: 2\narray: "5-1"\nretries: {count: -1}\n');
      expect(bad.status).toBe(422);
      expect(bad.body.error).toMatch(/invalid job spec/);
      const fields = (bad.body.problems as Array<{ field: string; message: string }>).map((p) => p.field);
      expect(fields).toEqual(expect.arrayContaining(['id', 'cpu', 'array', 'retries.count']));
      expect(bad.body.problems.find((p: any) => p.field === 'cpu').message).toMatch(/did you mean cpus/);
      expect(bad.body.problems.find((p: any) => p.field === 'array').message).toMatch(/backwards/);

      const missing = await submit('id: http.nothing-to-run\ncpus: 1\n');
      expect(missing.status).toBe(422);
      expect(missing.body.problems).toEqual([{ field: 'cmd', message: expect.stringMatching(/say what to run/) }]);

      const unknownDependency = await submit('id: http.orphan\ncmd: "true"\ndependencies: [http.no-such-job]\n');
      expect(unknownDependency.status).toBe(422);
      expect(unknownDependency.body.problems[0]).toMatchObject({ field: 'dependencies[0].job' });

      const mismatch = await call('PUT', '/v1/jobs/http.one', JSON.stringify({ id: 'http.two', cmd: 'true' }), 'application/json');
      expect(mismatch.status).toBe(422);
      expect(mismatch.body.problems).toEqual([{ field: 'id', message: expect.stringMatching(/must be http.one/) }]);

      expect((await call('GET', '/v1/jobs')).body.jobs.length).toBe(before);
      for (const id of ['Bad_Job', 'http.nothing-to-run', 'http.orphan', 'http.one', 'http.two']) expect((await call('GET', `/v1/jobs/${id}`)).status).toBe(404);
    });

    it('answers 400 for a body it cannot read and 413 for one too big', async () => {
      const yaml = await submit('id: [unclosed\n');
      expect(yaml.status).toBe(400);
      expect(yaml.body.error).toMatch(/not valid YAML \(line \d+, column \d+\)/);
      const json = await call('POST', '/v1/jobs', '{"id": "x",', 'application/json');
      expect(json.status).toBe(400);
      expect(json.body.error).toMatch(/not valid JSON/);
      const empty = await call('POST', '/v1/jobs', '', 'application/json');
      expect(empty.status).toBe(400);
      expect(empty.body.error).toMatch(/empty/);
      const list = await call('POST', '/v1/jobs', '[1, 2]', 'application/json');
      expect(list.status).toBe(422);
      const big = await call('POST', '/v1/jobs', JSON.stringify({ id: 'big', cmd: 'x'.repeat(1024 * 1024 + 10) }), 'application/json');
      expect(big.status).toBe(413);
      expect(big.body.error).toMatch(/limit/);
    });
  });

  describe('runs', () => {
    let runId: string;

    it('triggers a run (201) that succeeds, with each task\'s attempts, agent and exit code', async () => {
      expect((await submit('id: http.echo\ncmd: echo hi; echo err >&2\ncpus: 0.1\nmem: 32\n')).status).toBe(201);
      const triggered = await call('POST', '/v1/jobs/http.echo/runs');
      expect(triggered.status).toBe(201);
      const summary = triggered.body as RunSummary;
      expect(summary).toMatchObject({ jobId: 'http.echo', trigger: 'api', tasks: 1 });
      expect(['queued', 'running']).toContain(summary.state);
      expect(triggered.headers.get('location')).toBe(`/v1/runs/${summary.id}`);
      runId = summary.id;

      const run = await ended(runId);
      expect(run.state).toBe('succeeded');
      expect(run.counts).toMatchObject({ succeeded: 1, failed: 0, active: 0, pending: 0 });
      expect(run.taskList).toHaveLength(1);
      const [task] = run.taskList;
      expect(task).toMatchObject({ index: 0, state: 'succeeded' });
      expect(task!.attempts).toHaveLength(1);
      expect(task!.attempts[0]).toMatchObject({ attempt: 1, exitCode: 0, outcome: 'succeeded', agentId: agent.agentId, host: '127.0.0.1' });
      expect(task!.attempts[0]!.endedAtMs).toBeGreaterThanOrEqual(task!.attempts[0]!.launchedAtMs);

      const summaryOnly = await call('GET', `/v1/runs/${runId}?summary=true`);
      const { taskList: _tasks, ...expected } = run;
      expect(summaryOnly.body).toEqual(expected);
      expect(await client.getRunSummary(runId)).toEqual(expected);

      const tasks = await call('GET', `/v1/runs/${runId}/tasks`);
      expect(tasks.body).toEqual({ runId, tasks: run.taskList });
      const one = await call('GET', `/v1/runs/${runId}/tasks/0`);
      expect(one.body).toEqual({ runId, ...run.taskList[0] });

      const listed = await call('GET', '/v1/runs?job=http.echo');
      expect(listed.body.runs.map((r: RunSummary) => r.id)).toEqual([runId]);
      expect(listed.body.runs[0]).not.toHaveProperty('taskList');
      expect((await call('GET', '/v1/jobs/http.echo/runs')).body.runs.map((r: RunSummary) => r.id)).toEqual([runId]);
      expect((await call('GET', '/v1/runs?job=http.echo&active=true')).body.runs).toEqual([]);
      expect((await call('GET', '/v1/runs?limit=1')).body.runs).toHaveLength(1);
      expect((await call('GET', '/v1/jobs/http.echo')).body.latestRun).toMatchObject({ id: runId, state: 'succeeded' });
    });

    it('serves a task\'s stdout and stderr as bytes with their position in headers, and pages by offset', async () => {
      const stdout = await call('GET', `/v1/runs/${runId}/tasks/0/logs?file=stdout`);
      expect(stdout.status, JSON.stringify(stdout.body)).toBe(200);
      expect(stdout.headers.get('content-type')).toBe('application/octet-stream');
      expect(stdout.body).toBe('hi\n');
      expect(stdout.headers.get('x-agora-file-size')).toBe('3');
      expect(stdout.headers.get('x-agora-offset')).toBe('0');
      expect(stdout.headers.get('x-agora-attempt')).toBe('1');
      expect(stdout.headers.get('x-agora-ended')).toBe('true');
      const run = (await call('GET', `/v1/runs/${runId}`)).body as RunView;
      expect(stdout.headers.get('x-agora-task-id')).toBe(run.taskList[0]!.attempts[0]!.taskId);

      const byDefault = await call('GET', `/v1/runs/${runId}/tasks/0/logs`);
      expect(byDefault.body).toBe('hi\n');
      const stderr = await call('GET', `/v1/runs/${runId}/tasks/0/logs?file=stderr&attempt=1`);
      expect(stderr.body).toBe('err\n');
      expect(stderr.headers.get('x-agora-file-size')).toBe('4');

      const page = await call('GET', `/v1/runs/${runId}/tasks/0/logs?offset=1&length=1`);
      expect(page.body).toBe('i');
      expect(page.headers.get('x-agora-offset')).toBe('1');
      expect(page.headers.get('x-agora-file-size')).toBe('3');
      const rest = await call('GET', `/v1/runs/${runId}/tasks/0/logs?offset=2`);
      expect(rest.body).toBe('\n');
      const capped = await call('GET', `/v1/runs/${runId}/tasks/0/logs?length=99999999`);
      expect(capped.status, JSON.stringify(capped.body)).toBe(200);
      expect(capped.body).toBe('hi\n');
      const past = await call('GET', `/v1/runs/${runId}/tasks/0/logs?offset=3`);
      expect(past.status).toBe(200);
      expect(past.body).toBe('');

      const chunk = await client.taskLog(runId, 0, { file: 'stderr', offset: 1 });
      expect(chunk).toMatchObject({ runId, index: 0, attempt: 1, file: 'stderr', offset: 1, size: 4, ended: true });
      expect(chunk.data.toString()).toBe('rr\n');
    });

    it('answers 404 with what exists for unknown jobs, runs, tasks and routes', async () => {
      const job = await call('GET', '/v1/jobs/http.no-such-job');
      expect(job.status).toBe(404);
      expect(job.body.error).toMatch(/no job http.no-such-job; GET \/v1\/jobs lists them/);
      for (const [method, path] of [
        ['GET', '/v1/runs/no-such-run'],
        ['POST', '/v1/runs/no-such-run/cancel'],
        ['DELETE', '/v1/runs/no-such-run'],
        ['GET', '/v1/runs/no-such-run/tasks/0/logs'],
      ] as const) {
        const reply = await call(method, path);
        expect(reply.status, `${method} ${path}`).toBe(404);
        expect(reply.body.error).toMatch(/no run no-such-run/);
      }
      expect((await call('POST', '/v1/jobs/http.no-such-job/runs')).status).toBe(404);
      expect((await call('DELETE', '/v1/jobs/http.no-such-job')).status).toBe(404);
      const task = await call('GET', `/v1/runs/${runId}/tasks/7/logs`);
      expect(task.status).toBe(404);
      expect(task.body.error).toMatch(/has no task 7; its tasks are 0/);
      expect((await call('GET', `/v1/runs/${runId}/tasks/7`)).status).toBe(404);
      const attempt = await call('GET', `/v1/runs/${runId}/tasks/0/logs?attempt=5`);
      expect(attempt.status).toBe(404);
      expect(attempt.body.error).toMatch(/no attempt 5/);
      const route = await call('GET', '/v1/nothing/here');
      expect(route.status).toBe(404);
      expect(route.body.error).toBe('no route GET /v1/nothing/here');
      expect(route.body.routes).toEqual(expect.arrayContaining([expect.stringMatching(/^GET +\/v1\/runs\/\{runId\}\/tasks\/\{index\}\/logs/)]));
      const method = await call('PATCH', '/v1/jobs/http.echo');
      expect(method.status).toBe(405);
      expect(method.headers.get('allow')).toBe('GET, PUT, DELETE');
    });

    it('answers 400 naming the parameter and what it takes for bad query values', async () => {
      const cases: Array<[string, RegExp]> = [
        ['/v1/runs?limit=abc', /limit must be a whole number, 1 or more.*"abc"/],
        ['/v1/runs?limit=0', /limit must be a whole number, 1 or more/],
        ['/v1/runs?limit=1.5', /limit/],
        ['/v1/runs?active=maybe', /active must be true or false, got "maybe"/],
        ['/v1/runs?job=', /job must be a job id/],
        [`/v1/runs/${runId}?summary=yes`, /summary must be true or false, got "yes"/],
        [`/v1/runs/${runId}/tasks/-1/logs`, /task index in the path must be a whole number, 0 or more; got "-1"/],
        [`/v1/runs/${runId}/tasks/one`, /task index/],
        [`/v1/runs/${runId}/tasks/0/logs?file=foo`, /file must be stdout or stderr, got "foo"/],
        [`/v1/runs/${runId}/tasks/0/logs?attempt=0`, /attempt must be a whole number, 1 or more/],
        [`/v1/runs/${runId}/tasks/0/logs?offset=-5`, /offset must be a whole number, 0 or more/],
        [`/v1/runs/${runId}/tasks/0/logs?length=lots`, /length must be a whole number, 1 or more/],
        [`/v1/runs/${runId}/tasks/0/logs?length=0`, /length must be a whole number, 1 or more/],
        ['/v1/events?type=run,nope', /type must be a comma-separated list of job_changed, run, task, schedule_skipped; "nope" is not one/],
        ['/v1/jobs/http.echo?force=perhaps', /./], // GET ignores force
      ];
      for (const [path, message] of cases.slice(0, -1)) {
        const reply = await call('GET', path);
        expect(reply.status, path).toBe(400);
        expect(reply.body.error, path).toMatch(message);
      }
      const force = await call('DELETE', '/v1/jobs/http.echo?force=perhaps');
      expect(force.status).toBe(400);
      expect(force.body.error).toMatch(/force must be true or false/);
      expect((await call('GET', '/v1/jobs/http.echo')).status).toBe(200); // nothing deleted
    });

    it('survives garbage on the socket and bad percent-encoding', async () => {
      const raw = await new Promise<string>((resolve, reject) => {
        const socket = connect(http.port, '127.0.0.1', () => socket.write('NOT HTTP AT ALL\r\n\r\n'));
        let text = '';
        socket.on('data', (d) => (text += d.toString()));
        socket.on('end', () => resolve(text));
        socket.on('error', reject);
      });
      expect(raw).toMatch(/^HTTP\/1.1 400/);
      expect((await call('GET', '/v1/jobs/%E0%A4%A')).status).toBe(400);
      expect((await call('GET', '/health')).status).toBe(200);
    });

    it('cancels a running run (it ends cancelled, its task killed); cancelling again is a conflict', async () => {
      const run = await sleepingRun('http.sleeper');
      const cancelled = await call('POST', `/v1/runs/${run.id}/cancel`);
      expect(cancelled.status).toBe(200);
      expect(cancelled.body).toMatchObject({ id: run.id, jobId: 'http.sleeper' });
      const final = await ended(run.id);
      expect(final.state).toBe('cancelled');
      expect(final.taskList[0]).toMatchObject({ state: 'cancelled' });
      expect(final.taskList[0]!.attempts[0]!.outcome).toBe('killed');
      const again = await call('DELETE', `/v1/runs/${run.id}`);
      expect(again.status).toBe(409);
      expect(again.body.error).toMatch(/already ended/);

      const second = await sleepingRun('http.sleeper');
      expect((await call('DELETE', `/v1/runs/${second.id}`)).status).toBe(200);
      expect((await ended(second.id)).state).toBe('cancelled');
    });

    it('refuses to delete a job with an active run (409) until forced, which cancels the run', async () => {
      const run = await sleepingRun('http.doomed');
      const refused = await call('DELETE', '/v1/jobs/http.doomed');
      expect(refused.status).toBe(409);
      expect(refused.body.error).toMatch(new RegExp(`run\\(s\\) still going \\(${run.id}\\)`));
      expect(refused.body.code).toBe('CONFLICT');
      expect((await call('GET', '/v1/jobs/http.doomed')).status).toBe(200);

      const forced = await call('DELETE', '/v1/jobs/http.doomed?force=true');
      expect(forced.status).toBe(200);
      expect(forced.body).toEqual({ jobId: 'http.doomed', deleted: true });
      expect((await call('GET', '/v1/jobs/http.doomed')).status).toBe(404);
      await waitFor(async () => {
        const reply = await call('GET', `/v1/runs/${run.id}`);
        return reply.status === 404 || (reply.body as RunView).state === 'cancelled';
      }, `run ${run.id} to be cancelled`, 15_000);
    });
  });

  describe('events', () => {
    it('streams a job\'s run and task events as server-sent events named by type', async () => {
      expect((await submit('id: http.evented\ncmd: echo evented\ncpus: 0.1\nmem: 32\n')).status).toBe(201);
      const stream = readEventStream(`${http.url}/v1/events?job=http.evented`);
      try {
        await waitFor(() => stream.connected, 'the event stream to open');
        const run = (await call('POST', '/v1/jobs/http.evented/runs')).body as RunSummary;
        await waitFor(() => stream.events.some((e) => e.name === 'run' && e.data.run.id === run.id && e.data.run.state === 'succeeded'), () => `a succeeded run event; got ${JSON.stringify(stream.events)}`, 20_000);
        for (const e of stream.events) expect(e.name).toBe(e.data.type);
        const states = stream.events.filter((e) => e.name === 'run').map((e) => e.data.run.state);
        expect(states.at(-1)).toBe('succeeded');
        const taskEvents = stream.events.filter((e) => e.name === 'task');
        expect(taskEvents.length).toBeGreaterThan(0);
        expect(taskEvents.every((e) => e.data.runId === run.id && e.data.jobId === 'http.evented')).toBe(true);
        expect(taskEvents.at(-1)!.data.task).toMatchObject({ index: 0, state: 'succeeded' });
        expect(stream.events.every((e) => (e.data.jobId ?? e.data.run?.jobId) === 'http.evented')).toBe(true);
        expect(stream.comments).toBeGreaterThan(0); // the `connected` line, then heartbeats
      } finally {
        stream.close();
      }
    });

    it('opens a run\'s stream with its current summary, and answers 404 for an unknown run', async () => {
      const runs = (await call('GET', '/v1/runs?job=http.evented')).body.runs as RunSummary[];
      const stream = readEventStream(`${http.url}/v1/events?run=${runs[0]!.id}`);
      try {
        await waitFor(() => stream.events.length > 0, 'the snapshot event');
        expect(stream.events[0]).toMatchObject({ name: 'run', data: { type: 'run', run: { id: runs[0]!.id, state: 'succeeded' } } });
        expect(stream.events[0]!.data.run).not.toHaveProperty('taskList');
      } finally {
        stream.close();
      }
      const unknown = await call('GET', '/v1/events?run=no-such-run');
      expect(unknown.status).toBe(404);
    });

    it('tells job changes to a job_changed subscriber, with the spec as written', async () => {
      const received: BatchEvent[] = [];
      const controller = new AbortController();
      let opened = false;
      const done = client.events((e) => received.push(e), { job: 'http.changing', types: ['job_changed'], signal: controller.signal, onOpen: () => (opened = true) });
      await waitFor(() => opened, 'the stream to open');
      await submit('id: http.changing\ncmd: "true"\narray: 0-3%2\n');
      await call('DELETE', '/v1/jobs/http.changing');
      await waitFor(() => received.length >= 2, () => `two job_changed events; got ${JSON.stringify(received)}`);
      controller.abort();
      await done;
      expect(received[0]).toMatchObject({ type: 'job_changed', jobId: 'http.changing', job: { spec: { id: 'http.changing', array: { indices: [0, 1, 2, 3], throttle: 2 } } } });
      expect(received[1]).toEqual({ type: 'job_changed', jobId: 'http.changing' });
    });
  });

  it('serveBatch runs the framework and its API together, and closes both', async () => {
    const served = await serveBatch({ master: master.wsUrl, store: 'memory:', port: 0, logger: quiet });
    try {
      expect(served.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      expect(served.frameworkId).not.toBe(batch.frameworkId);
      const own = new BatchClient(served.url);
      expect(await own.listJobs()).toEqual([]); // its own store, not the suite's
      await own.submitJob('id: served.hello\ncmd: echo served\ncpus: 0.1\nmem: 16\n');
      const final = await followRun(own, (await own.triggerRun('served.hello')).id, () => {}, { pollMs: 300 });
      expect(final.state).toBe('succeeded');
      expect((await own.taskLog(final.id, 0)).data.toString()).toBe('served\n');
    } finally {
      await served.close();
    }
    await expect(new BatchClient(served.url).listJobs()).rejects.toBeInstanceOf(BatchUnreachableError);
  });

  describe('BatchClient', () => {
    it('submits, reads, triggers, follows to the end and reads logs', async () => {
      const { job, created } = await client.submitJob('id: client.array\ncmd: echo task $AGORA_TASK_INDEX\narray: 0-3%2\ncpus: 0.1\nmem: 16\n');
      expect(created).toBe(true);
      expect(job.spec.array).toEqual({ indices: [0, 1, 2, 3], throttle: 2 });
      expect((await client.getJob('client.array'))?.spec.cmd).toBe('echo task $AGORA_TASK_INDEX');
      expect(await client.getJob('client.no-such-job')).toBeUndefined();
      expect((await client.listJobs()).map((j) => j.spec.id)).toContain('client.array');

      // A JobSpec read back goes back in as it is.
      const replaced = await client.putJob({ ...job.spec, cmd: 'echo task $AGORA_TASK_INDEX; echo to stderr >&2' });
      expect(replaced.created).toBe(false);
      expect(replaced.job.spec.array).toEqual({ indices: [0, 1, 2, 3], throttle: 2 });

      const run = await client.triggerRun('client.array');
      const seen: RunSummary[] = [];
      const final = await followRun(client, run.id, (r) => seen.push(r), { pollMs: 500 });
      expect(final).toMatchObject({ id: run.id, state: 'succeeded', counts: { succeeded: 4 } });
      expect(seen.length).toBeGreaterThan(0);
      expect(seen.at(-1)).toEqual(final);
      expect(seen.every((r, i) => i === 0 || JSON.stringify(r.counts) !== JSON.stringify(seen[i - 1]!.counts) || r.state !== seen[i - 1]!.state)).toBe(true);

      const view = await client.getRun(run.id);
      expect(view?.taskList.map((t) => t.state)).toEqual(['succeeded', 'succeeded', 'succeeded', 'succeeded']);
      expect(await client.getRun('no-such-run')).toBeUndefined();
      expect(await client.getTask(run.id, 2)).toEqual(view?.taskList[2]);
      expect(await client.getTask(run.id, 99)).toBeUndefined();
      expect(await client.getTask('no-such-run', 0)).toBeUndefined();
      expect((await client.listRuns({ jobId: 'client.array', limit: 5 })).map((r) => r.id)).toEqual([run.id]);
      expect((await client.taskLog(run.id, 2)).data.toString()).toBe('task 2\n');
      expect((await client.taskLog(run.id, 3, { file: 'stderr' })).data.toString()).toBe('to stderr\n');

      await expect(client.cancelRun(run.id)).rejects.toMatchObject({ name: 'BatchHttpError', status: 409, code: 'CONFLICT' });
      await client.deleteJob('client.array');
      expect(await client.getJob('client.array')).toBeUndefined();
    });

    it('carries the server\'s problems for a bad spec, and 409 for deleting a busy job', async () => {
      const error = await client.submitJob('{"id": "client.bad", "cmd": "true", "retries": {"cont": 1}}', 'json').catch((e: unknown) => e);
      expect(error).toBeInstanceOf(BatchHttpError);
      expect((error as BatchHttpError).status).toBe(422);
      expect((error as BatchHttpError).problems).toEqual([{ field: 'retries.cont', message: expect.stringMatching(/did you mean count/) }]);
      await expect(client.putJob({ id: 'client.bad', cmd: 'true', cpus: -1 })).rejects.toMatchObject({ status: 422, problems: [expect.objectContaining({ field: 'cpus' })] });
      await expect(client.putJob({ cmd: 'true' })).rejects.toMatchObject({ status: 422, problems: [expect.objectContaining({ field: 'id' })] });
      expect(await client.getJob('client.bad')).toBeUndefined();

      await client.submitJob('id: client.busy\ncmd: exec sleep 60\ncpus: 0.1\nmem: 16\nkillGracePeriodSeconds: 1\n', 'yaml');
      const run = await client.triggerRun('client.busy');
      await expect(client.deleteJob('client.busy')).rejects.toMatchObject({ status: 409 });
      const cancelled = await client.cancelRun(run.id);
      expect(cancelled.id).toBe(run.id);
      const final = await followRun(client, run.id, () => {}, { pollMs: 500 });
      expect(final.state).toBe('cancelled');
      await client.deleteJob('client.busy', { force: true });
    });

    it('follows a run across the API going away and coming back', async () => {
      const port = await freePort();
      let flaky = await startBatchHttp({ api: batch.api, port, heartbeatMs: 200 });
      const flakyClient = new BatchClient(flaky.url, { timeoutMs: 2000 });
      await flakyClient.submitJob('id: client.slow\ncmd: sleep 2; echo done\ncpus: 0.1\nmem: 16\n');
      const run = await flakyClient.triggerRun('client.slow');
      const seen: RunSummary[] = [];
      const following = followRun(flakyClient, run.id, (r) => seen.push(r), { pollMs: 300, reconnectMs: 100 });
      try {
        await waitFor(() => seen.length > 0, 'the first progress report');
        await flaky.close(); // drops the event stream and refuses polls for a while
        await new Promise((resolve) => setTimeout(resolve, 700));
        flaky = await startBatchHttp({ api: batch.api, port, heartbeatMs: 200 });
        const final = await following;
        expect(final.state).toBe('succeeded');
        expect(seen.at(-1)!.state).toBe('succeeded');
      } finally {
        await flaky.close();
      }
    });

    it('says the API cannot be reached, and how to fix it, on a closed port', async () => {
      const port = await freePort();
      const nowhere = new BatchClient(`http://127.0.0.1:${port}`);
      const error = await nowhere.listJobs().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(BatchUnreachableError);
      expect((error as Error).message).toBe(`cannot reach the batch API at http://127.0.0.1:${port} (ECONNREFUSED) — is \`agora up\` running? set --api or AGORA_BATCH_API`);
      await expect(nowhere.events(() => {})).rejects.toBeInstanceOf(BatchUnreachableError);
      await expect(followRun(nowhere, 'r', () => {}, { unreachableMs: 300, pollMs: 100, reconnectMs: 100 })).rejects.toBeInstanceOf(BatchUnreachableError);
      const aborted = new AbortController();
      const following = followRun(nowhere, 'r', () => {}, { signal: aborted.signal });
      aborted.abort(new Error('stop'));
      await expect(following).rejects.toThrow('stop');
    });
  });
});


/**
 * How BatchClient reads event streams, against a hand-written server that sends exactly the bytes
 * a test needs (line endings, split chunks, silence): parsing only, so no scheduler is involved.
 */
describe('BatchClient reading an event stream', () => {
  async function serve(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<{ url: string; close(): Promise<void> }> {
    const server = createServer(handler);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    return {
      url: `http://127.0.0.1:${port}`,
      close: async () => {
        server.closeAllConnections();
        await new Promise<void>((resolve) => server.close(() => resolve()));
      },
    };
  }

  it('reads CRLF and LF lines, events split across chunks and multi-line data, and skips comments and unknown events', async () => {
    const run = { id: 'r1', jobId: 'j', state: 'running', trigger: 'api', priority: 0, createdAtMs: 1, counts: { pending: 0, active: 1, succeeded: 0, failed: 0, cancelled: 0 }, tasks: 1 };
    const json = JSON.stringify({ type: 'run', run });
    const server = await serve(async (req, res) => {
      expect(req.url).toBe('/v1/events?run=r1&type=run%2Ctask');
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const parts = [
        'retry: 1000\r\n: connected\r\n\r\n',
        `event: run\r\ndata: ${json.slice(0, 10)}`,
        `${json.slice(10)}\r\n\r`,
        '\nevent: mystery\ndata: {"type":"mystery"}\n\n',
        `event: task\ndata: {"type":"task","runId":"r1",\ndata: "jobId":"j","task":{"index":0,"state":"active","attempts":[]}}\n\n`,
        'event: run\ndata: {not json}\n\n',
        `event: run\ndata: ${json}\n`, // never finished by a blank line: not delivered
      ];
      for (const part of parts) {
        res.write(part);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      res.end();
    });
    try {
      const events: BatchEvent[] = [];
      await new BatchClient(server.url).events((e) => events.push(e), { run: 'r1', types: ['run', 'task'] });
      expect(events).toEqual([
        { type: 'run', run },
        { type: 'task', runId: 'r1', jobId: 'j', task: { index: 0, state: 'active', attempts: [] } },
      ]);
    } finally {
      await server.close();
    }
  });

  it('gives up on a stream that goes silent, and reports a refusal with the server\'s message', async () => {
    const server = await serve((req, res) => {
      if (req.url?.includes('run=gone')) {
        res.writeHead(404, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: 'no run gone', code: 'NOT_FOUND' }));
        return;
      }
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(': connected\n\n'); // and then nothing, not even heartbeats
    });
    try {
      const client = new BatchClient(server.url);
      const silent = await client.events(() => {}, { idleTimeoutMs: 200 }).catch((e: unknown) => e);
      expect(silent).toBeInstanceOf(BatchUnreachableError);
      expect((silent as Error).message).toMatch(/silent for 200 ms/);
      await expect(client.events(() => {}, { run: 'gone' })).rejects.toMatchObject({ name: 'BatchHttpError', status: 404, code: 'NOT_FOUND', message: 'no run gone' });
      await expect(followRun(client, 'gone', () => {})).rejects.toMatchObject({ status: 404 });
    } finally {
      await server.close();
    }
  });
});
