/**
 * Reading a task's stdout/stderr through the master (GET /api/v1/frameworks/{id}/tasks/{id}/files/
 * {stdout|stderr}): real master, real agents running real processes, and a raw agent for the
 * answers a real agent never gives (silence, late or bogus FILE_DATA, an older agent).
 */
import type { ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from '../../agent/agent.ts';
import type { MasterServer } from '../../master/http/server.ts';
import { Endpoint, MAX_FILE_DATA_BYTES, MAX_FILE_READ_BYTES, PROTOCOL_VERSION } from '../../master/protocol/index.ts';
import { MasterUnreachableError, readTaskFile, TaskFileError } from '../../frameworks/sdk/index.ts';
import { freePort, RawClient, removeDir, shellTask, startAgent, startAgentProcess, startMaster, tempDir, TestScheduler, waitFor } from './helpers.ts';

function filePath(frameworkId: string, taskId: string, file: string, query = ''): string {
  return `/api/v1/frameworks/${frameworkId}/tasks/${taskId}/files/${file}${query}`;
}

async function get(master: MasterServer, path: string): Promise<{ status: number; headers: Headers; body: Buffer; error: string | undefined }> {
  const response = await fetch(`${master.url}${path}`);
  const body = Buffer.from(await response.arrayBuffer());
  const error = response.headers.get('content-type') === 'application/json' ? (JSON.parse(body.toString()) as { error?: string }).error : undefined;
  return { status: response.status, headers: response.headers, body, error };
}

describe('task files through the master, from a real agent', () => {
  let master: MasterServer;
  let agent: Agent;
  let agentDir: string;
  let scheduler: TestScheduler;
  let frameworkId: string;

  beforeAll(async () => {
    master = await startMaster();
    agentDir = tempDir('agora-task-files-');
    agent = await startAgent(master, { workDir: agentDir });
    scheduler = new TestScheduler(master, { name: 'task-files' });
    frameworkId = await scheduler.start();
  });
  afterAll(async () => {
    await scheduler?.driver.stop({ teardown: true }).catch(() => {});
    await agent?.stop({ killTasks: true });
    await master?.close();
    removeDir(agentDir);
  });

  it('reads the stdout and stderr of a running task, with the size and offset headers', async () => {
    scheduler.launchOnNextOffer(shellTask('talker', 'echo to-stdout; echo to-stderr >&2; exec sleep 60'));
    await scheduler.waitForUpdate('talker', 'RUNNING');

    // The ws:// URL the driver uses works as well as the http:// one.
    const out = await waitFor(async () => {
      const chunk = await readTaskFile(master.wsUrl, frameworkId, 'talker', 'stdout');
      return chunk.data.toString() === 'to-stdout\n' && chunk;
    }, 'the running task to have written its stdout');
    expect(out).toMatchObject({ size: 10, offset: 0 });

    const err = await waitFor(async () => {
      const answer = await get(master, filePath(frameworkId, 'talker', 'stderr'));
      return answer.body.toString() === 'to-stderr\n' && answer;
    }, 'the running task to have written its stderr');
    expect(err.status).toBe(200);
    expect(err.headers.get('content-type')).toBe('application/octet-stream');
    expect(err.headers.get('x-agora-file-size')).toBe('10');
    expect(err.headers.get('x-agora-offset')).toBe('0');

    // A part of it, by offset and length.
    const part = await readTaskFile(master.url, frameworkId, 'talker', 'stderr', { offset: 3, length: 6 });
    expect(part).toMatchObject({ size: 10, offset: 3 });
    expect(part.data.toString()).toBe('stderr');

    scheduler.driver.kill('talker', { gracePeriodMs: 0 });
    await scheduler.waitForUpdate('talker', 'KILLED');
  });

  it('pages through 3 MB of output, more than one 1 MiB read and one agent answer', async () => {
    const count = 450_000;
    const expected = Buffer.from(Array.from({ length: count }, (_, i) => `${i + 1}\n`).join(''));
    expect(expected.length).toBeGreaterThan(3 * MAX_FILE_READ_BYTES - 200_000); // ≈ 3 MB
    scheduler.launchOnNextOffer(shellTask('counter', `seq 1 ${count}`));
    await scheduler.waitForUpdate('counter', 'FINISHED');

    const pages: Buffer[] = [];
    let offset = 0;
    for (;;) {
      const chunk = await readTaskFile(master.url, frameworkId, 'counter', 'stdout', { offset, length: MAX_FILE_READ_BYTES });
      expect(chunk.size).toBe(expected.length);
      expect(chunk.offset).toBe(offset);
      if (chunk.data.length === 0) break;
      pages.push(chunk.data);
      offset += chunk.data.length;
    }
    expect(pages.map((p) => p.length)).toEqual([MAX_FILE_READ_BYTES, MAX_FILE_READ_BYTES, expected.length - 2 * MAX_FILE_READ_BYTES]);
    expect(Buffer.concat(pages).equals(expected)).toBe(true);

    // Without a length, a read is 1 MiB; a piece that straddles the agent's answer size comes back whole.
    const whole = await get(master, filePath(frameworkId, 'counter', 'stdout', '?offset=1000'));
    expect(whole.body.equals(expected.subarray(1000, 1000 + MAX_FILE_READ_BYTES))).toBe(true);
    const straddling = await readTaskFile(master.url, frameworkId, 'counter', 'stdout', { offset: MAX_FILE_DATA_BYTES - 5, length: 12 });
    expect(straddling.data.equals(expected.subarray(MAX_FILE_DATA_BYTES - 5, MAX_FILE_DATA_BYTES + 7))).toBe(true);

    // Past the end: no bytes, and the size says where the end is.
    const past = await get(master, filePath(frameworkId, 'counter', 'stdout', `?offset=${expected.length + 10}&length=100`));
    expect(past.status).toBe(200);
    expect(past.body.length).toBe(0);
    expect(past.headers.get('x-agora-file-size')).toBe(String(expected.length));
  });

  it('reads an ended task the agent has forgotten, until its sandbox is removed', async () => {
    scheduler.launchOnNextOffer(shellTask('short', 'echo bye; echo gone >&2'));
    await scheduler.waitForUpdate('short', 'FINISHED');
    // Acknowledged: the master moved it to its history, the agent dropped its record.
    await waitFor(() => master.master.completedTasks.find((t) => t.taskId === 'short'), 'the master to move the task to its history');
    const agentTasks = (agent as unknown as { tasks: Map<string, unknown> }).tasks;
    await waitFor(() => !agentTasks.has(`${frameworkId}/short`), 'the agent to forget the ended task');

    expect((await readTaskFile(master.url, frameworkId, 'short', 'stdout')).data.toString()).toBe('bye\n');
    expect((await readTaskFile(master.url, frameworkId, 'short', 'stderr')).data.toString()).toBe('gone\n');

    rmSync(join(agentDir, 'sandboxes', frameworkId, 'short'), { recursive: true, force: true });
    const gone = await get(master, filePath(frameworkId, 'short', 'stdout'));
    expect(gone.status).toBe(404);
    expect(gone.error).toBe('the sandbox of task short is gone (garbage-collected or never created)');
  });

  it('answers 404 for an unknown task or framework', async () => {
    const task = await get(master, filePath(frameworkId, 'no-such-task', 'stdout'));
    expect(task.status).toBe(404);
    expect(task.error).toMatch(new RegExp(`framework ${frameworkId} has no task no-such-task`));
    const framework = await get(master, filePath('no-such-framework', 'talker', 'stdout'));
    expect(framework.status).toBe(404);
    expect(framework.error).toMatch(/unknown framework no-such-framework; GET \/state lists/);
  });

  it('answers 400, naming what is wrong, for a bad file name, offset, length or id', async () => {
    const cases: [string, RegExp][] = [
      [filePath(frameworkId, 'talker', 'passwd'), /unknown file "passwd"; a task's files are stdout and stderr/],
      [filePath(frameworkId, 'talker', '..%2F..%2Fetc%2Fpasswd'), /unknown file "..\/..\/etc\/passwd"/],
      [filePath(frameworkId, 'talker', 'stdout', '?offset=-1'), /offset must be a whole number of bytes, 0 or more; got "-1"/],
      [filePath(frameworkId, 'talker', 'stdout', '?offset=ten'), /offset must be a whole number/],
      [filePath(frameworkId, 'talker', 'stdout', '?length=0'), /length must be a whole number of bytes from 1 to 1048576 \(1 MiB\); got "0"/],
      [filePath(frameworkId, 'talker', 'stdout', `?length=${MAX_FILE_READ_BYTES + 1}`), /length must be/],
      [filePath(frameworkId, 'a%2Fb', 'stdout'), /the task id "a\/b" must be 1-200 characters/],
      [filePath(frameworkId, '%E0%A4%A', 'stdout'), /the task id "%E0%A4%A" is not valid URL encoding/],
    ];
    for (const [path, error] of cases) {
      const answer = await get(master, path);
      expect({ path, status: answer.status }).toEqual({ path, status: 400 });
      expect(answer.error).toMatch(error);
    }
  });

  it('decodes URL-encoded ids', async () => {
    const answer = await get(master, filePath(encodeURIComponent(frameworkId).replace(/-/g, '%2D'), 'counter', 'stdout', '?length=2'));
    expect(answer.status).toBe(200);
    expect(answer.body.toString()).toBe('1\n');
  });

  it('readTaskFile throws TaskFileError with the status and the master’s words, and says when the master is unreachable', async () => {
    const notFound = await readTaskFile(master.url, frameworkId, 'no-such-task', 'stdout').catch((e: unknown) => e);
    expect(notFound).toBeInstanceOf(TaskFileError);
    expect((notFound as TaskFileError).status).toBe(404);
    expect((notFound as TaskFileError).reason).toMatch(/has no task no-such-task/);

    const badOffset = await readTaskFile(master.url, frameworkId, 'counter', 'stdout', { offset: -5 }).catch((e: unknown) => e);
    expect(badOffset).toBeInstanceOf(TaskFileError);
    expect((badOffset as TaskFileError).status).toBe(400);

    const port = await freePort();
    const unreachable = await readTaskFile(`ws://127.0.0.1:${port}`, frameworkId, 'counter', 'stdout').catch((e: unknown) => e);
    expect(unreachable).toBeInstanceOf(MasterUnreachableError);
    expect((unreachable as Error).message).toMatch(new RegExp(`cannot reach the master at http://127.0.0.1:${port} .*ECONNREFUSED.*is the master running there\\?`));

    await expect(readTaskFile('127.0.0.1:5050', frameworkId, 'counter', 'stdout')).rejects.toThrow(/not a master URL/);
  });
});

describe('task files when the agent cannot answer', () => {
  it('answers 503 while the task’s agent is killed, and reads again once it is back', async () => {
    const master = await startMaster();
    const workDir = tempDir('agora-task-files-killed-');
    const scheduler = new TestScheduler(master, { name: 'task-files-killed' });
    let child: ChildProcess | undefined;
    let again: Agent | undefined;
    try {
      child = startAgentProcess(master.wsUrl, workDir);
      await waitFor(() => master.master.agents.size === 1, 'the agent process to register', 20_000);
      const frameworkId = await scheduler.start();
      scheduler.launchOnNextOffer(shellTask('sleeper', 'echo still-here; exec sleep 60'));
      await scheduler.waitForUpdate('sleeper', 'RUNNING');
      await waitFor(async () => (await readTaskFile(master.url, frameworkId, 'sleeper', 'stdout')).data.toString() === 'still-here\n', 'the task’s stdout');

      child.kill('SIGKILL');
      const agentId = [...master.master.agents.keys()][0]!;
      await waitFor(() => master.master.agents.get(agentId)!.status !== 'ACTIVE', 'the master to notice the agent is gone');
      const started = Date.now();
      const answer = await get(master, filePath(frameworkId, 'sleeper', 'stdout'));
      expect(Date.now() - started).toBeLessThan(1000);
      expect(answer.status).toBe(503);
      expect(answer.error).toMatch(new RegExp(`agent ${agentId} \\(.+\\), which has the sandbox of task sleeper, is not connected to the master; it may come back`));

      // Past its re-register timeout it is unreachable; still 503, still "may come back".
      await waitFor(() => master.master.agents.get(agentId)!.status === 'UNREACHABLE', 'the agent to become unreachable');
      expect((await get(master, filePath(frameworkId, 'sleeper', 'stdout'))).error).toMatch(/is unreachable; it may come back/);

      // It comes back (an agent on the same work dir re-adopts the task) and the file reads again.
      again = await startAgent(master, { workDir });
      await waitFor(() => master.master.agents.get(agentId)!.status === 'ACTIVE', 'the agent to re-register');
      expect((await readTaskFile(master.url, frameworkId, 'sleeper', 'stdout')).data.toString()).toBe('still-here\n');
    } finally {
      child?.kill('SIGKILL');
      await again?.stop({ killTasks: true });
      await scheduler.driver.stop({ teardown: true }).catch(() => {});
      await master.close();
      removeDir(workDir);
    }
  }, 40_000);

  describe('with a raw agent', () => {
    const fileReadTimeoutMs = 1500;
    let master: MasterServer;
    let scheduler: TestScheduler;
    let raw: RawClient;
    let frameworkId: string;

    beforeAll(async () => {
      master = await startMaster({ fileReadTimeoutMs });
      raw = await RawClient.connect(`${master.wsUrl}${Endpoint.agent}`);
      raw.send({ type: 'REGISTER', protocolVersion: PROTOCOL_VERSION, hostname: 'raw-host', resources: { cpus: 1, mem: 256 }, attributes: {}, tasks: [] });
      const agentId = (await raw.take('REGISTERED')).agentId as string;
      scheduler = new TestScheduler(master, { name: 'task-files-raw' });
      frameworkId = await scheduler.start();
      scheduler.launchOnNextOffer(shellTask('ghost', 'true'));
      await raw.take('RUN_TASK');
      raw.send({ type: 'STATUS_UPDATE', status: { taskId: 'ghost', frameworkId, agentId, state: 'RUNNING', source: 'EXECUTOR', uuid: 'u-1', timestampMs: Date.now() } });
      await scheduler.waitForUpdate('ghost', 'RUNNING');
    });
    afterAll(async () => {
      raw?.close();
      await scheduler?.driver.stop({ teardown: true }).catch(() => {});
      await master?.close();
    });

    /** Starts an HTTP read and hands back the READ_FILE the agent got for it. */
    async function startRead(query = ''): Promise<{ answer: ReturnType<typeof get>; request: Record<string, unknown> }> {
      const answer = get(master, filePath(frameworkId, 'ghost', 'stdout', query));
      const request = await raw.take('READ_FILE');
      return { answer, request };
    }

    it('relays the agent’s bytes, asking in pieces no bigger than one FILE_DATA may carry', async () => {
      const { answer, request } = await startRead('?offset=7');
      expect(request).toMatchObject({ frameworkId, taskId: 'ghost', file: 'stdout', offset: 7, length: MAX_FILE_DATA_BYTES });
      raw.send({ type: 'FILE_DATA', requestId: request.requestId, data: Buffer.alloc(MAX_FILE_DATA_BYTES, 'a'), size: 2_000_000 });
      const second = await raw.take('READ_FILE');
      expect(second).toMatchObject({ offset: 7 + MAX_FILE_DATA_BYTES, length: MAX_FILE_DATA_BYTES });
      raw.send({ type: 'FILE_DATA', requestId: second.requestId, data: Buffer.from('the end'), size: 2_000_001 });
      const got = await answer;
      expect(got.status).toBe(200);
      expect(got.body.length).toBe(MAX_FILE_DATA_BYTES + 7);
      expect(got.body.subarray(-7).toString()).toBe('the end');
      expect(got.headers.get('x-agora-file-size')).toBe('2000001');
      expect(got.headers.get('x-agora-offset')).toBe('7');
    });

    it('passes the agent’s NOT_FOUND on as 404 with its message', async () => {
      const { answer, request } = await startRead();
      raw.send({ type: 'FILE_DATA', requestId: request.requestId, error: { code: 'NOT_FOUND', message: 'the sandbox of task ghost is gone (garbage-collected or never created)' } });
      expect(await answer).toMatchObject({ status: 404, error: 'the sandbox of task ghost is gone (garbage-collected or never created)' });
    });

    it('answers 504 when the agent stays silent, then ignores its late answer and bogus ones', async () => {
      const { answer, request } = await startRead();
      const started = Date.now();
      const got = await answer;
      expect(Date.now() - started).toBeGreaterThanOrEqual(fileReadTimeoutMs - 100);
      expect(got.status).toBe(504);
      expect(got.error).toMatch(/agent .* \(raw-host\) did not answer a read of the stdout of task ghost within 1500 ms/);

      raw.send({ type: 'FILE_DATA', requestId: request.requestId, data: Buffer.from('late'), size: 4 });
      raw.send({ type: 'FILE_DATA', requestId: 'never-asked', data: Buffer.from('bogus'), size: 5 });
      raw.send({ type: 'FILE_DATA', requestId: 'x', data: 'not bytes' });
      expect((await raw.take('ERROR')).message).toMatch(/FILE_DATA\.data: must be binary data/);
      expect((await get(master, '/health')).status).toBe(200);
      expect(raw.closed).toBeUndefined();
    });

    it('answers 501 at once when the agent is too old to know READ_FILE', async () => {
      const { answer } = await startRead();
      raw.send({ type: 'ERROR', code: 'UNKNOWN_TYPE', message: 'unknown message type "READ_FILE"; expected one of REGISTERED, RUN_TASK' });
      expect(await answer).toMatchObject({ status: 501, error: expect.stringMatching(/runs an older Agora that cannot serve task files; upgrade that agent/) });
    });

    it('fails a pending read at once when the agent disconnects, then answers 503', async () => {
      const { answer } = await startRead();
      const started = Date.now();
      raw.close();
      const got = await answer;
      expect(Date.now() - started).toBeLessThan(fileReadTimeoutMs / 2);
      expect(got.status).toBe(503);
      expect(got.error).toMatch(/disconnected before answering .*; it may come back/);
      const after = await get(master, filePath(frameworkId, 'ghost', 'stdout'));
      expect(after.status).toBe(503);
    });
  });
});
