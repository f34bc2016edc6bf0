/**
 * Shared pieces for integration tests: real masters on loopback port 0, real agents (in-process or
 * as child processes), and a raw protocol client for poking the master with bad input.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { request } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { Redis } from 'ioredis';
import { WebSocket } from 'ws';
import { startMasterServer, type MasterServer, type MasterServerOptions } from '../../master/http/server.ts';
import { createPackr, createUnpackr } from '../../master/protocol/codec.ts';
import { Agent, type AgentOptions } from '../../agent/agent.ts';
import { SchedulerDriver, type Offer, type TaskInfo, type TaskStatus, type FrameworkInfo } from '../../frameworks/sdk/index.ts';

export const quiet = pino({ level: process.env.AGORA_TEST_LOG ?? 'silent' });
const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export function tempDir(prefix = 'agora-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** A master on a free loopback port with short timers so failure paths run in seconds. */
export async function startMaster(options: MasterServerOptions = {}): Promise<MasterServer> {
  return startMasterServer({
    port: 0,
    pingIntervalMs: 200,
    maxMissedPings: 3,
    allocationIntervalMs: 100,
    agentReregisterTimeoutMs: 1000,
    logger: quiet,
    ...options,
  });
}

/**
 * A block of 100 ports for an agent, picked by its work dir: test files run in parallel (and other
 * sessions may share the host), so agents must not all hand out 31000 to servers that really
 * listen. Below Linux's ephemeral range (32768+), so no outgoing connection takes one either.
 */
export function portBlock(workDir: string): [number, number] {
  let hash = 0;
  for (const c of workDir) hash = (hash * 31 + c.charCodeAt(0)) >>> 0;
  const base = 20000 + 100 * (hash % 120);
  return [base, base + 99];
}

export async function startAgent(master: MasterServer, options: Partial<AgentOptions> = {}): Promise<Agent> {
  const workDir = options.workDir ?? tempDir('agora-agent-');
  const agent = new Agent({
    master: master.wsUrl,
    workDir,
    resources: { cpus: 4, mem: 4096, disk: 10000, ports: [portBlock(workDir)] },
    logger: quiet,
    reconnect: { initialMs: 50, maxMs: 500 },
    ...options,
  });
  await agent.start();
  await agent.registered();
  return agent;
}

/** An agent in its own OS process (`agora agent`), so a test can SIGKILL it. */
export function startAgentProcess(masterWsUrl: string, workDir: string, extraArgs: string[] = []): ChildProcess {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', join(ROOT, 'bin/agora.ts'), 'agent', '--master', masterWsUrl, '--work-dir', workDir, '--resources', `cpus:2;mem:2048;disk:1000;ports:[${portBlock(workDir).join('-')}]`, ...extraArgs],
    { cwd: ROOT, stdio: ['ignore', 'ignore', process.env.AGORA_TEST_LOG ? 'inherit' : 'ignore'], env: { ...process.env, AGORA_LOG_LEVEL: process.env.AGORA_TEST_LOG ?? 'warn' } },
  );
  return child;
}

export async function waitFor<T>(probe: () => T | undefined | false | Promise<T | undefined | false>, what: string | (() => string), timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${typeof what === 'function' ? what() : what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

type Message = { type: string } & Record<string, unknown>;

/**
 * A raw protocol client: sends whatever a test wants (including garbage) and records every message
 * and the close code. It deliberately bypasses the SDK's validation.
 */
export class RawClient {
  readonly messages: Message[] = [];
  closed: { code: number; reason: string } | undefined;
  private readonly packr = createPackr();
  private readonly unpackr = createUnpackr();

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data: Buffer) => {
      const decoded = this.unpackr.unpack(data) as Message | Message[];
      for (const m of Array.isArray(decoded) ? decoded : [decoded]) this.messages.push(m);
    });
    ws.on('close', (code, reason) => (this.closed = { code, reason: reason.toString() }));
    ws.on('error', () => {});
  }

  /** `autoPong: false` makes a peer that stops answering the master's pings while its socket stays open. */
  static async connect(url: string, options: { autoPong?: boolean } = {}): Promise<RawClient> {
    const ws = new WebSocket(url, { perMessageDeflate: false, autoPong: options.autoPong ?? true });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    return new RawClient(ws);
  }

  send(message: unknown): void {
    this.ws.send(this.packr.pack(message));
  }

  sendBytes(bytes: Buffer | string): void {
    this.ws.send(bytes);
  }

  async next(type: string, predicate: (m: Message) => boolean = () => true, timeoutMs = 5000): Promise<Message> {
    return waitFor(() => this.messages.find((m) => m.type === type && predicate(m)), `a ${type} message`, timeoutMs);
  }

  /** Waits for and removes the next message of `type`. */
  async take(type: string, predicate: (m: Message) => boolean = () => true, timeoutMs = 5000): Promise<Message> {
    const m = await this.next(type, predicate, timeoutMs);
    this.messages.splice(this.messages.indexOf(m), 1);
    return m;
  }

  async waitClosed(timeoutMs = 5000): Promise<{ code: number; reason: string }> {
    return waitFor(() => this.closed, 'the socket to close', timeoutMs);
  }

  close(): void {
    this.ws.terminate();
  }
}

// ---------------------------------------------------------------------------------------------
// A recording scheduler on the real SDK driver.


export class TestScheduler {
  readonly offers: (Offer & { receivedAtMs: number })[] = [];
  readonly updates: TaskStatus[] = [];
  readonly rescinded: string[] = [];
  readonly failures: string[] = [];
  readonly errors: { code: string; message: string }[] = [];
  /** What to do with offers as they arrive; offers left alone are declined by the driver. */
  onOffers: (offers: Offer[], driver: SchedulerDriver) => void = () => {};
  readonly driver: SchedulerDriver;

  constructor(master: MasterServer, framework: Partial<FrameworkInfo> = {}, declineRefuseSeconds = 1) {
    this.driver = new SchedulerDriver({
      master: master.wsUrl,
      framework: { name: 'test', failoverTimeoutMs: 0, ...framework },
      logger: quiet,
      declineRefuseSeconds,
      reconnect: { initialMs: 50, maxMs: 500 },
      handlers: {
        offers: (offers, d) => {
          const now = Date.now();
          for (const o of offers) this.offers.push({ ...o, receivedAtMs: now });
          this.onOffers(offers, d);
        },
        update: (status) => {
          this.updates.push(status);
        },
        rescinded: (id) => {
          this.rescinded.push(id);
        },
        failure: (agentId) => {
          this.failures.push(agentId);
        },
        error: (e) => {
          this.errors.push(e);
        },
      },
    });
  }

  start(): Promise<string> {
    return this.driver.start();
  }

  /** Launches one task on the first offer that arrives (or is already waiting). */
  launchOnNextOffer(task: TaskInfo | TaskInfo[]): void {
    this.onOffers = (offers, d) => {
      this.onOffers = () => {};
      d.launch(offers[0]!, Array.isArray(task) ? task : [task]);
    };
    this.driver.revive();
  }

  waitForUpdate(taskId: string, state: string, timeoutMs = 10_000): Promise<TaskStatus> {
    return waitFor(
      () => this.updates.find((u) => u.taskId === taskId && u.state === state),
      () => `task ${taskId} to be ${state} (seen: ${this.statesOf(taskId)}; offers received: ${this.offers.length}; errors: ${JSON.stringify(this.errors)}; driver: ${this.driver.state})`,
      timeoutMs,
    );
  }

  statesOf(taskId: string): string {
    return this.updates.filter((u) => u.taskId === taskId).map((u) => u.state).join(' → ') || 'nothing';
  }
}

export function shellTask(taskId: string, command: string, resources: Record<string, number> = { cpus: 0.1, mem: 32 }, extra: Partial<TaskInfo> = {}): TaskInfo {
  return { taskId, resources, command: { value: command }, ...extra };
}

// ---------------------------------------------------------------------------------------------
// Commands as a user runs them, and the Redis the store tests need.

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `node --import tsx SCRIPT ARGS…` from the repo root (a script path, e.g. bin/agora.ts) and collects its output. */
export function runScript(script: string, args: string[], timeoutMs = 30_000): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, script), ...args], { cwd: ROOT, env: { ...process.env, AGORA_LOG_LEVEL: 'warn' } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${script} ${args.join(' ')} did not exit within ${timeoutMs} ms\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** `agora ARGS…` */
export function agora(args: string[], timeoutMs = 30_000): Promise<CliRun> {
  return runScript('bin/agora.ts', args, timeoutMs);
}

/**
 * The Redis the store tests use (AGORA_TEST_REDIS_URL, or 127.0.0.1:6379). Without one they are
 * skipped with one loud line; under CI=true a missing Redis fails the run instead.
 */
export async function testRedis(suite: string): Promise<{ url: string; reachable: boolean }> {
  const url = process.env.AGORA_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
  const probe = new Redis(url, { lazyConnect: true, enableOfflineQueue: false, connectTimeout: 1000, retryStrategy: () => null, maxRetriesPerRequest: 0 });
  probe.on('error', () => undefined);
  let reachable = false;
  try {
    await probe.connect();
    reachable = (await probe.ping()) === 'PONG';
  } catch {
    reachable = false;
  } finally {
    probe.disconnect();
  }
  if (!reachable) {
    const start = "start one: redis-server --port 6379 --daemonize yes --save '' --appendonly no";
    if (process.env.CI === 'true') throw new Error(`${suite}: no Redis at ${url}, and CI=true requires the Redis tests (${start})`);
    console.warn(`\n!!! ${suite}: no Redis at ${url} — its Redis tests are SKIPPED (${start})\n`);
  }
  return { url, reachable };
}

/** A loopback port nobody listens on right now (bound, then released). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** Reads a server-sent event stream raw: each event's name and parsed data, and how many comment lines came. */
export function readEventStream(url: string) {
  const state = { events: [] as Array<{ name: string; data: any }>, comments: 0, connected: false };
  let buffer = '';
  const req = request(url, (res) => {
    res.setEncoding('utf8');
    res.on('data', (chunk: string) => {
      buffer += chunk;
      let at: number;
      while ((at = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, at).split('\n');
        buffer = buffer.slice(at + 2);
        state.comments += block.filter((line) => line.startsWith(':')).length;
        if (block.some((line) => line === ': connected')) state.connected = true;
        const name = block.find((line) => line.startsWith('event: '))?.slice(7);
        const data = block.find((line) => line.startsWith('data: '))?.slice(6);
        if (name && data) state.events.push({ name, data: JSON.parse(data) });
      }
    });
  });
  req.on('error', () => {});
  req.end();
  return Object.assign(state, { close: () => req.destroy() });
}
