/**
 * The real probes against real sockets on 127.0.0.1, and COMMAND checks run by the process
 * containerizer in a task's sandbox.
 */
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { ProcessContainerizer, processStartTime } from '../../agent/containerizers/process.ts';
import type { ContainerStatus } from '../../agent/containerizers/containerizer.ts';
import { commandProbe, httpProbe, tcpProbe } from '../../agent/health/probes.ts';
import type { TaskInfo } from '../../master/protocol/messages.ts';
import { isTerminal } from '../../master/protocol/messages.ts';
import { tempDir, waitFor } from './helpers.ts';

const root = tempDir('agora-probes-');
afterAll(() => rmSync(root, { recursive: true, force: true }));

const closers: Array<() => void> = [];
afterEach(() => {
  for (const close of closers.splice(0)) close();
});

async function listen(server: net.Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  closers.push(() => server.close());
  return (server.address() as net.AddressInfo).port;
}

/** A port that was free a moment ago and has no listener. */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('httpProbe', () => {
  it('is healthy on 200 to 399 and names the status otherwise', async () => {
    let status = 200;
    const paths: string[] = [];
    const port = await listen(
      http.createServer((req, res) => {
        paths.push(req.url ?? '');
        res.writeHead(status);
        res.end();
      }),
    );
    const probe = httpProbe('127.0.0.1', port, '/health?deep=1');
    expect(await probe.run(2000)).toEqual({ healthy: true });
    status = 302;
    expect(await probe.run(2000)).toEqual({ healthy: true });
    status = 503;
    expect(await probe.run(2000)).toEqual({ healthy: false, message: `HTTP GET http://127.0.0.1:${port}/health?deep=1 returned 503` });
    status = 199;
    expect((await probe.run(2000)).healthy).toBe(false);
    expect(paths).toEqual(['/health?deep=1', '/health?deep=1', '/health?deep=1', '/health?deep=1']);
  });

  it('says "connection refused" when nothing listens', async () => {
    const port = await closedPort();
    expect(await httpProbe('127.0.0.1', port, '/').run(2000)).toEqual({ healthy: false, message: `HTTP GET http://127.0.0.1:${port}/: connection refused` });
  });

  it('gives up after its timeout on a server that accepts but never answers', async () => {
    const sockets: net.Socket[] = [];
    const port = await listen(net.createServer((socket) => sockets.push(socket)));
    closers.push(() => sockets.forEach((s) => s.destroy()));
    expect(await httpProbe('127.0.0.1', port, '/').run(200)).toEqual({ healthy: false, message: `HTTP GET http://127.0.0.1:${port}/ timed out after 0.2 s` });
  });
});

describe('tcpProbe', () => {
  it('is healthy when a connect succeeds and names the error when it does not', async () => {
    const port = await listen(net.createServer((socket) => socket.end()));
    expect(await tcpProbe('127.0.0.1', port).run(2000)).toEqual({ healthy: true });
    const closed = await closedPort();
    expect(await tcpProbe('127.0.0.1', closed).run(2000)).toEqual({ healthy: false, message: `TCP connect to 127.0.0.1:${closed}: connection refused` });
  });
});

describe('COMMAND checks in the process containerizer', () => {
  const containerizer = new ProcessContainerizer({ cgroups: false });

  function launch(task: TaskInfo) {
    const sandbox = path.join(root, 'sandboxes', task.taskId);
    mkdirSync(sandbox, { recursive: true });
    const statuses: ContainerStatus[] = [];
    const container = containerizer.launch({ frameworkId: 'fw', task, sandbox }, (status) => statuses.push(status));
    closers.push(() => container.kill(0));
    return { container, statuses, sandbox };
  }

  it("runs `sh -c` in the task's sandbox with the task's environment and resolves with the exit code", async () => {
    const run = launch({ taskId: 'env', resources: { ports: [[31000, 31001]] }, command: { value: 'exec sleep 30', environment: { GREETING: 'hi' } } });
    await waitFor(() => run.statuses.some((s) => s.state === 'RUNNING'), 'the task to run');
    const probe = commandProbe('test "$PWD" = "$AGORA_SANDBOX" && test "$GREETING" = hi && test "$PORT1" = 31001 && touch checked', () => run.container, 'process');
    expect(await probe.run(5000)).toEqual({ healthy: true });
    expect(existsSync(path.join(run.sandbox, 'checked'))).toBe(true);
    expect(await run.container.runCheckCommand!('exit 7', 5000)).toBe(7);
    expect(await commandProbe('exit 7', () => run.container, 'process').run(5000)).toEqual({ healthy: false, message: 'health check command `exit 7` exited with code 7' });
  });

  it('kills a check that outlives its timeout, with what it started, and rejects', async () => {
    const run = launch({ taskId: 'slow-check', resources: {}, command: { value: 'exec sleep 30' } });
    await waitFor(() => run.statuses.some((s) => s.state === 'RUNNING'), 'the task to run');
    const pidFile = path.join(run.sandbox, 'check.pid');
    await expect(run.container.runCheckCommand!(`sleep 30 & echo $! > ${pidFile}; wait`, 300)).rejects.toThrow('timed out after 0.3 s');
    const pid = Number(readFileSync(pidFile, 'utf8'));
    // Gone, or a zombie waiting for init to reap it.
    await waitFor(() => processStartTime(pid) === undefined, "the check's child to be killed");
  });

  it('refuses to run a check once the task has ended', async () => {
    const run = launch({ taskId: 'ended', resources: {}, command: { value: 'true' } });
    await waitFor(() => run.statuses.some((s) => isTerminal(s.state)), 'the task to end');
    await expect(run.container.runCheckCommand!('true', 1000)).rejects.toThrow('the task has ended');
  });
});
