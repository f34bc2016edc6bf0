/**
 * The Agent against a small scripted master: a real ws server on loopback, the protocol's own codec
 * and validation (WsConnection), and assertions on exactly what the agent says.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { WebSocketServer, type WebSocket } from 'ws';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { Agent, type AgentOptions } from '../../agent/agent.ts';
import { CheckpointStore } from '../../agent/checkpoint.ts';
import { processStartTime } from '../../agent/containerizers/process.ts';
import { SimulatedContainerizer } from '../../agent/containerizers/simulated.ts';
import { Endpoint, Inbound, PROTOCOL_VERSION, WsConnection, type AgentMessage, type MasterToAgent } from '../../master/protocol/index.ts';

const quiet = pino({ level: process.env.AGORA_TEST_LOG ?? 'silent' });
const root = mkdtempSync(path.join(os.tmpdir(), 'agora-agent-e2e-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

type StatusUpdate = Extract<AgentMessage, { type: 'STATUS_UPDATE' }>;

/** A master that records every message and lets the test speak for it. */
class ScriptedMaster {
  readonly server: WebSocketServer;
  readonly received: AgentMessage[] = [];
  connection: WsConnection<AgentMessage, MasterToAgent> | undefined;
  connections = 0;
  /** Acknowledge every status update as it arrives. */
  autoAck = false;
  private waiters: Array<() => void> = [];

  private constructor(server: WebSocketServer) {
    this.server = server;
    server.on('connection', (ws: WebSocket, request: IncomingMessage) => {
      if (request.url !== Endpoint.agent) {
        ws.close(1008, 'wrong endpoint');
        return;
      }
      this.connections++;
      const connection = new WsConnection<AgentMessage, MasterToAgent>(ws, { ...Inbound.agentMessages, pingIntervalMs: 200 });
      this.connection = connection;
      connection.onMessage = (message) => {
        this.received.push(message);
        if (this.autoAck && message.type === 'STATUS_UPDATE') {
          connection.send({ type: 'ACKNOWLEDGE_UPDATE', frameworkId: message.status.frameworkId, taskId: message.status.taskId, uuid: message.status.uuid });
        }
        for (const wake of this.waiters.splice(0)) wake();
      };
    });
  }

  static start(port = 0): Promise<ScriptedMaster> {
    return new Promise((resolve) => {
      const server: WebSocketServer = new WebSocketServer({ host: '127.0.0.1', port }, () => resolve(new ScriptedMaster(server)));
    });
  }

  get url(): string {
    const address = this.server.address();
    if (typeof address === 'string' || address === null) throw new Error('no address');
    return `ws://127.0.0.1:${address.port}`;
  }

  send(message: MasterToAgent): void {
    this.connection!.send(message);
  }

  updates(taskId?: string): StatusUpdate['status'][] {
    return this.received.filter((m): m is StatusUpdate => m.type === 'STATUS_UPDATE').map((m) => m.status).filter((s) => taskId === undefined || s.taskId === taskId);
  }

  registrations(): Extract<AgentMessage, { type: 'REGISTER' }>[] {
    return this.received.filter((m): m is Extract<AgentMessage, { type: 'REGISTER' }> => m.type === 'REGISTER');
  }

  /** Resolves once `predicate` holds over what has been received (or on disk: it is also polled). */
  until<T>(predicate: () => T | undefined | false, what: string, timeoutMs = 15_000): Promise<T> {
    return new Promise((resolve, reject) => {
      let done = false;
      const finish = (value: T) => {
        done = true;
        clearTimeout(timer);
        clearInterval(poll);
        resolve(value);
      };
      const timer = setTimeout(() => {
        done = true;
        clearInterval(poll);
        reject(new Error(`timed out waiting for ${what}; received ${JSON.stringify(this.received.map((m) => m.type))}`));
      }, timeoutMs);
      const check = () => {
        if (done) return;
        const value = predicate();
        if (value) finish(value);
        else this.waiters.push(check);
      };
      const poll = setInterval(() => {
        if (done) return;
        const value = predicate();
        if (value) finish(value);
      }, 20);
      check();
    });
  }

  close(): Promise<void> {
    for (const client of this.server.clients) client.terminate();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

const agents: Agent[] = [];
const masters: ScriptedMaster[] = [];
afterEach(async () => {
  await Promise.all(agents.splice(0).map((agent) => agent.stop({ killTasks: true })));
  await Promise.all(masters.splice(0).map((master) => master.close()));
});

let n = 0;
async function setup(options: Partial<AgentOptions> = {}) {
  const master = await ScriptedMaster.start();
  masters.push(master);
  const workDir = path.join(root, `agent${++n}`);
  const agent = new Agent({
    master: master.url,
    workDir,
    resources: { cpus: 2, mem: 1024, ports: [[31000, 31009]] },
    attributes: { rack: 'r1' },
    hostname: 'test-host',
    logger: quiet,
    reconnect: { initialMs: 20, maxMs: 200 },
    statusUpdateRetry: { initialMs: 100, maxMs: 400 },
    ...options,
  });
  agents.push(agent);
  await agent.start();
  return { master, agent, workDir };
}

const sleepTask = (taskId: string, command = 'sleep 30') => ({ taskId, resources: { cpus: 0.1, mem: 32 }, command: { value: command }, killPolicy: { gracePeriodMs: 1000 } });

describe('Agent against a scripted master', () => {
  it('registers with its resources, attributes and hostname, and keeps the id it is given', async () => {
    const { master, agent, workDir } = await setup();
    const register = await master.until(() => master.registrations()[0], 'REGISTER');
    expect(register).toEqual({
      type: 'REGISTER',
      protocolVersion: PROTOCOL_VERSION,
      hostname: 'test-host',
      resources: expect.objectContaining({ cpus: 2, mem: 1024, ports: [[31000, 31009]] }),
      attributes: { rack: 'r1' },
      tasks: [],
    });
    expect(register.agentId).toBeUndefined();
    expect(register.resources.disk).toBeGreaterThan(0); // detected, not overridden
    master.send({ type: 'REGISTERED', agentId: 'agent-1', masterId: 'm1' });
    await expect(agent.registered()).resolves.toBe('agent-1');
    expect(agent.agentId).toBe('agent-1');
    expect(JSON.parse(readFileSync(path.join(workDir, 'meta', 'agent.json'), 'utf8'))).toEqual({ agentId: 'agent-1' });
  });

  it('runs a task: RUNNING then FINISHED, each resent until acknowledged, then forgets it', async () => {
    const { master, workDir } = await setup();
    await master.until(() => master.registrations()[0], 'REGISTER');
    master.send({ type: 'REGISTERED', agentId: 'agent-1', masterId: 'm1' });
    master.send({ type: 'RUN_TASK', frameworkId: 'fw1', task: { taskId: 't1', resources: { cpus: 0.1 }, command: { value: 'echo hi' } } });

    const running = await master.until(() => master.updates('t1')[0], 'RUNNING');
    expect(running).toMatchObject({ taskId: 't1', frameworkId: 'fw1', agentId: 'agent-1', state: 'RUNNING', source: 'EXECUTOR' });
    // Not acknowledged: it comes again, and FINISHED waits behind it.
    await master.until(() => master.updates('t1').length >= 2, 'a resend of RUNNING');
    expect(master.updates('t1').every((s) => s.uuid === running.uuid)).toBe(true);

    master.send({ type: 'ACKNOWLEDGE_UPDATE', frameworkId: 'fw1', taskId: 't1', uuid: running.uuid });
    const finished = await master.until(() => master.updates('t1').find((s) => s.state === 'FINISHED'), 'FINISHED');
    expect(finished).toMatchObject({ state: 'FINISHED', exitCode: 0, agentId: 'agent-1' });
    const sandbox = path.join(workDir, 'sandboxes', 'fw1', 't1');
    expect(readFileSync(path.join(sandbox, 'stdout'), 'utf8')).toBe('hi\n');
    // Checkpointed until the FINISHED update is acknowledged (read by a second, read-only store).
    const checkpointed = () => new CheckpointStore(path.join(workDir, 'meta')).readAll().some((t) => t.frameworkId === 'fw1' && t.taskId === 't1');
    expect(checkpointed()).toBe(true);

    await master.until(() => master.updates('t1').filter((s) => s.uuid === finished.uuid).length >= 2, 'a resend of FINISHED');
    master.send({ type: 'ACKNOWLEDGE_UPDATE', frameworkId: 'fw1', taskId: 't1', uuid: finished.uuid });
    await master.until(() => !checkpointed() || undefined, 'the checkpoint to be removed');
    expect(existsSync(sandbox)).toBe(true); // sandboxes outlive their tasks
  });

  it('re-registers with its running tasks after the connection drops, and resends unacknowledged updates', async () => {
    const { master, agent } = await setup();
    await master.until(() => master.registrations()[0], 'REGISTER');
    master.send({ type: 'REGISTERED', agentId: 'agent-1', masterId: 'm1' });
    await agent.registered();
    master.send({ type: 'RUN_TASK', frameworkId: 'fw1', task: sleepTask('long') });
    const running = await master.until(() => master.updates('long')[0], 'RUNNING');

    master.connection!.terminate();
    const again = await master.until(() => master.registrations()[1], 'a second REGISTER');
    expect(again.agentId).toBe('agent-1');
    expect(again.tasks).toEqual([{ frameworkId: 'fw1', task: sleepTask('long'), state: 'RUNNING' }]);
    const before = master.updates('long').length;
    master.send({ type: 'REGISTERED', agentId: 'agent-1', masterId: 'm2' });
    await master.until(() => master.updates('long').length > before, 'the head resent on re-registration');
    expect(master.updates('long').at(-1)!.uuid).toBe(running.uuid);
  });

  it('kills a task on KILL_TASK (KILLED), answers a kill of an unknown task with LOST, and refuses a duplicate id', async () => {
    const { master } = await setup();
    await master.until(() => master.registrations()[0], 'REGISTER');
    master.send({ type: 'REGISTERED', agentId: 'agent-1', masterId: 'm1' });
    master.send({ type: 'RUN_TASK', frameworkId: 'fw1', task: sleepTask('k1') });
    const running = await master.until(() => master.updates('k1')[0], 'RUNNING');
    master.send({ type: 'ACKNOWLEDGE_UPDATE', frameworkId: 'fw1', taskId: 'k1', uuid: running.uuid });

    master.send({ type: 'RUN_TASK', frameworkId: 'fw1', task: sleepTask('k1') });
    const duplicate = await master.until(() => master.updates('k1').find((s) => s.state === 'FAILED'), 'FAILED for the duplicate');
    expect(duplicate).toMatchObject({ reason: 'TASK_INVALID', source: 'AGENT' });
    master.send({ type: 'ACKNOWLEDGE_UPDATE', frameworkId: 'fw1', taskId: 'k1', uuid: duplicate.uuid });

    master.send({ type: 'KILL_TASK', frameworkId: 'fw1', taskId: 'k1' });
    const killed = await master.until(() => master.updates('k1').find((s) => s.state === 'KILLED'), 'KILLED');
    expect(killed.reason).toBe('TASK_KILLED');

    master.send({ type: 'KILL_TASK', frameworkId: 'fw1', taskId: 'ghost' });
    const lost = await master.until(() => master.updates('ghost')[0], 'LOST');
    expect(lost.state).toBe('LOST');
    expect(lost.message).toMatch(/does not know/);
  });

  it('kills every task of a framework on SHUTDOWN_FRAMEWORK and leaves other frameworks alone', async () => {
    const { master } = await setup();
    await master.until(() => master.registrations()[0], 'REGISTER');
    master.send({ type: 'REGISTERED', agentId: 'agent-1', masterId: 'm1' });
    for (const [fw, id] of [['fw1', 'a'], ['fw1', 'b'], ['fw2', 'c']] as const) master.send({ type: 'RUN_TASK', frameworkId: fw, task: sleepTask(id) });
    for (const id of ['a', 'b', 'c']) {
      const running = await master.until(() => master.updates(id)[0], `RUNNING of ${id}`);
      master.send({ type: 'ACKNOWLEDGE_UPDATE', frameworkId: running.frameworkId, taskId: id, uuid: running.uuid });
    }
    master.send({ type: 'SHUTDOWN_FRAMEWORK', frameworkId: 'fw1' });
    await master.until(() => master.updates('a').some((s) => s.state === 'KILLED') && master.updates('b').some((s) => s.state === 'KILLED'), 'both fw1 tasks KILLED');
    // Only RUNNING for the other framework's task (possibly resent, if the ack was slower than a retry).
    expect(new Set(master.updates('c').map((s) => s.state))).toEqual(new Set(['RUNNING']));
  });

  it('kills its tasks on stop({killTasks}), even when a plain stop began first', async () => {
    const { master, agent, workDir } = await setup();
    await master.until(() => master.registrations()[0], 'REGISTER');
    master.send({ type: 'REGISTERED', agentId: 'agent-1', masterId: 'm1' });
    master.send({ type: 'RUN_TASK', frameworkId: 'fw1', task: sleepTask('doomed', 'echo $$ > pid; exec sleep 30') });
    await master.until(() => master.updates('doomed')[0], 'RUNNING');
    const pidFile = path.join(workDir, 'sandboxes', 'fw1', 'doomed', 'pid');
    await master.until(() => (existsSync(pidFile) && readFileSync(pidFile, 'utf8').trim() !== '') || undefined, 'the pid file');
    const pid = Number(readFileSync(pidFile, 'utf8'));
    await Promise.all([agent.stop(), agent.stop({ killTasks: true })]);
    expect(processStartTime(pid)).toBeUndefined();
  });

  it('keeps retrying the connection until a master is there', async () => {
    const master = await ScriptedMaster.start();
    const url = master.url;
    await master.close();
    const agent = new Agent({ master: url, workDir: path.join(root, 'late'), logger: quiet, checkpoint: false, containerizer: new SimulatedContainerizer(), reconnect: { initialMs: 20, maxMs: 100 } });
    agents.push(agent);
    await agent.start();
    await new Promise((resolve) => setTimeout(resolve, 200));
    const port = Number(new URL(url).port);
    const late = await ScriptedMaster.start(port);
    masters.push(late);
    await late.until(() => late.registrations()[0], 'REGISTER after the master appears');
  });

  it('reports a checkpointed task that ended while the agent was down as FAILED (AGENT_RESTARTED)', async () => {
    const { master, agent, workDir } = await setup();
    await master.until(() => master.registrations()[0], 'REGISTER');
    master.send({ type: 'REGISTERED', agentId: 'agent-1', masterId: 'm1' });
    master.send({ type: 'RUN_TASK', frameworkId: 'fw1', task: sleepTask('gone', 'echo $$ > pid; exec sleep 30') });
    const running = await master.until(() => master.updates('gone')[0], 'RUNNING');
    master.send({ type: 'ACKNOWLEDGE_UPDATE', frameworkId: 'fw1', taskId: 'gone', uuid: running.uuid });
    await master.until(() => existsSync(path.join(workDir, 'sandboxes', 'fw1', 'gone', 'pid')) || undefined, 'the pid file');
    await new Promise((resolve) => setTimeout(resolve, 50));
    await agent.stop(); // leaves the task running, like Mesos
    agents.splice(agents.indexOf(agent), 1);
    process.kill(-Number(readFileSync(path.join(workDir, 'sandboxes', 'fw1', 'gone', 'pid'), 'utf8')), 'SIGKILL');
    await new Promise((resolve) => setTimeout(resolve, 100));

    const restarted = new Agent({ master: master.url, workDir, logger: quiet, reconnect: { initialMs: 20, maxMs: 200 } });
    agents.push(restarted);
    await restarted.start();
    const register = await master.until(() => master.registrations()[1], 'the second REGISTER');
    expect(register.agentId).toBe('agent-1');
    expect(register.tasks).toEqual([]);
    master.send({ type: 'REGISTERED', agentId: 'agent-1', masterId: 'm1' });
    const failed = await master.until(() => master.updates('gone').find((s) => s.state === 'FAILED'), 'FAILED');
    expect(failed).toMatchObject({ reason: 'AGENT_RESTARTED', source: 'AGENT' });
    expect(failed.message).toMatch(/exit status is unknown/);
  });
});

describe('an agent process killed with SIGKILL', () => {
  const ROOT = fileURLToPath(new URL('../..', import.meta.url));
  const children: ChildProcess[] = [];
  afterEach(() => {
    for (const child of children.splice(0)) {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  });

  /** `npx tsx agent/main.ts` in its own process group, so the whole npx → tsx → node chain dies at once. */
  function startAgentProcess(masterUrl: string, workDir: string): ChildProcess {
    const child = spawn('npx', ['tsx', 'agent/main.ts', '--master', masterUrl, '--work-dir', workDir, '--resources', 'cpus:2;mem:1024'], {
      cwd: ROOT,
      detached: true,
      stdio: ['ignore', 'ignore', process.env.AGORA_TEST_LOG ? 'inherit' : 'ignore'],
      env: { ...process.env, AGORA_LOG_LEVEL: process.env.AGORA_TEST_LOG ?? 'warn' },
    });
    children.push(child);
    return child;
  }

  it('re-adopts its running task on restart: re-registers with it RUNNING, same pid, and can still kill it', async () => {
    const master = await ScriptedMaster.start();
    masters.push(master);
    const workDir = path.join(root, 'restart');
    const first = startAgentProcess(master.url, workDir);
    await master.until(() => master.registrations()[0], 'REGISTER from the agent process', 25_000);
    master.send({ type: 'REGISTERED', agentId: 'agent-9', masterId: 'm1' });
    const task = sleepTask('survivor', 'echo $$ > pid; exec sleep 30');
    master.send({ type: 'RUN_TASK', frameworkId: 'fw1', task });
    const running = await master.until(() => master.updates('survivor')[0], 'RUNNING');
    master.send({ type: 'ACKNOWLEDGE_UPDATE', frameworkId: 'fw1', taskId: 'survivor', uuid: running.uuid });
    // A second launch of the same task id is refused; the refusal shares the task's records but is
    // not its state, so the restarted agent must still re-adopt the task.
    master.send({ type: 'RUN_TASK', frameworkId: 'fw1', task });
    const refused = await master.until(() => master.updates('survivor').find((s) => s.state === 'FAILED'), 'the refusal of the duplicate launch');
    expect(refused.message).toMatch(/already on this agent/);
    master.send({ type: 'ACKNOWLEDGE_UPDATE', frameworkId: 'fw1', taskId: 'survivor', uuid: refused.uuid });
    const pidFile = path.join(workDir, 'sandboxes', 'fw1', 'survivor', 'pid');
    await master.until(() => (existsSync(pidFile) && readFileSync(pidFile, 'utf8').trim() !== '') || undefined, 'the task to write its pid');
    const pid = Number(readFileSync(pidFile, 'utf8'));
    const startTime = processStartTime(pid);
    expect(startTime).toBeDefined();

    process.kill(-first.pid!, 'SIGKILL');
    await master.until(() => first.exitCode !== null || first.signalCode !== null || undefined, 'the agent process to die');
    expect(processStartTime(pid)).toBe(startTime); // the task outlived its agent

    startAgentProcess(master.url, workDir);
    const register = await master.until(() => master.registrations()[1], 'REGISTER from the restarted agent', 25_000);
    expect(register.agentId).toBe('agent-9');
    expect(register.tasks).toEqual([{ frameworkId: 'fw1', task, state: 'RUNNING' }]);
    expect(Number(readFileSync(pidFile, 'utf8'))).toBe(pid); // not restarted
    expect(processStartTime(pid)).toBe(startTime);

    // RUNNING may come again (its ack may not have reached the first agent before it died).
    master.autoAck = true;
    master.send({ type: 'REGISTERED', agentId: 'agent-9', masterId: 'm1' });
    master.send({ type: 'KILL_TASK', frameworkId: 'fw1', taskId: 'survivor' });
    const killed = await master.until(() => master.updates('survivor').find((s) => s.state === 'KILLED'), 'KILLED from the re-adopted task');
    expect(killed.reason).toBe('TASK_KILLED');
    expect(processStartTime(pid)).toBeUndefined();
  });
});
