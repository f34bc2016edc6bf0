import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { Agent } from '../../agent/agent.ts';
import { SimulatedContainerizer } from '../../agent/containerizers/simulated.ts';
import { runAgent } from '../../agent/main.ts';
import { agentResources, detectResources } from '../../agent/resources.ts';
import { collectSandboxes } from '../../agent/sandbox.ts';
import { Inbound, MemoryConnection, type AgentMessage, type MasterToAgent } from '../../master/protocol/index.ts';

const root = mkdtempSync(path.join(os.tmpdir(), 'agora-agent-unit-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const quiet = pino({ level: 'silent' });

describe('detectResources', () => {
  it('detects cpus, mem and disk with headroom, and the default port range', () => {
    const detected = detectResources(path.join(root, 'not-yet-created'));
    expect(detected.cpus).toBe(os.availableParallelism());
    const totalMb = os.totalmem() / 1024 / 1024;
    expect(detected.mem).toBeGreaterThan(0);
    expect(detected.mem).toBeLessThan(totalMb);
    expect(detected.mem).toBeGreaterThanOrEqual(Math.floor(totalMb - 1024));
    expect(detected.disk).toBeGreaterThan(0);
    expect(detected.ports).toEqual([[31000, 32000]]);
  });

  it('replaces only the names given', () => {
    const resources = agentResources(root, { cpus: 64, ports: [[8000, 8010]] });
    expect(resources.cpus).toBe(64);
    expect(resources.ports).toEqual([[8000, 8010]]);
    expect(resources.mem).toBe(detectResources(root).mem);
  });
});

describe('collectSandboxes', () => {
  it('removes sandboxes of ended tasks untouched for the retention period, and keeps the rest', async () => {
    const workDir = path.join(root, 'gc');
    const make = (fw: string, task: string, ageMs: number) => {
      const dir = path.join(workDir, 'sandboxes', fw, task);
      mkdirSync(dir, { recursive: true });
      writeFileSync(path.join(dir, 'stdout'), 'x');
      const when = new Date(Date.now() - ageMs);
      for (const file of [path.join(dir, 'stdout'), dir]) utimesSync(file, when, when);
      return dir;
    };
    const day = 24 * 3600 * 1000;
    const old = make('fw1', 'old', 10 * day);
    const fresh = make('fw1', 'fresh', day);
    const active = make('fw2', 'active', 10 * day);
    const removed = await collectSandboxes(workDir, 7 * day, (fw, task) => fw === 'fw2' && task === 'active');
    expect(removed).toEqual([old]);
    expect(existsSync(old)).toBe(false);
    expect(existsSync(fresh)).toBe(true);
    expect(existsSync(active)).toBe(true);
  });
});

describe('runAgent', () => {
  it('rejects malformed --resources and --attributes with a message naming the flag', async () => {
    await expect(runAgent({ master: 'ws://127.0.0.1:1', resources: 'cpus:lots', handleSignals: false })).rejects.toThrow(/--resources "cpus:lots": "cpus:lots": expected a non-negative number/);
    await expect(runAgent({ master: 'ws://127.0.0.1:1', attributes: 'rack', handleSignals: false })).rejects.toThrow(/--attributes "rack"/);
    await expect(runAgent({ master: '127.0.0.1:5050', handleSignals: false })).rejects.toThrow(/ws:\/\//);
  });

  it('starts an agent with the parsed resources and attributes', async () => {
    const agent = await runAgent({ master: 'ws://127.0.0.1:1', resources: 'cpus:3;mem:512', attributes: 'rack:r1', workDir: path.join(root, 'run'), logger: quiet, handleSignals: false });
    expect(agent.resources).toMatchObject({ cpus: 3, mem: 512 });
    await agent.stop();
  });
});

describe('Agent over a MemoryConnection with the SimulatedContainerizer', () => {
  it('runs simulated tasks in memory only (checkpoint off), with the outcome the callback picks', async () => {
    const received: AgentMessage[] = [];
    let master!: MemoryConnection<AgentMessage, MasterToAgent>;
    const workDir = path.join(root, 'simulated');
    const agent = new Agent({
      workDir,
      checkpoint: false,
      logger: quiet,
      containerizer: new SimulatedContainerizer({ outcome: (task) => (task.taskId === 'bad' ? { state: 'FAILED', exitCode: 2, message: 'exited with code 2' } : { state: 'FINISHED', exitCode: 0 }) }),
      connect: async () => {
        const [agentSide, masterSide] = MemoryConnection.pair<MasterToAgent, AgentMessage>(Inbound.masterToAgent, Inbound.agentMessages);
        master = masterSide;
        master.onMessage = (message) => {
          received.push(message);
          if (message.type === 'REGISTER') master.send({ type: 'REGISTERED', agentId: 'sim-1', masterId: 'm' });
          if (message.type === 'STATUS_UPDATE') master.send({ type: 'ACKNOWLEDGE_UPDATE', frameworkId: message.status.frameworkId, taskId: message.status.taskId, uuid: message.status.uuid });
        };
        return agentSide;
      },
    });
    await agent.start();
    await agent.registered();
    for (const taskId of ['good', 'bad']) master.send({ type: 'RUN_TASK', frameworkId: 'fw', task: { taskId, resources: { cpus: 1 }, command: { value: 'ignored' } } });
    const states = () => received.flatMap((m) => (m.type === 'STATUS_UPDATE' ? [`${m.status.taskId}:${m.status.state}`] : []));
    for (let i = 0; i < 200 && states().length < 4; i++) await new Promise((resolve) => setTimeout(resolve, 5));
    expect(states().sort()).toEqual(['bad:FAILED', 'bad:RUNNING', 'good:FINISHED', 'good:RUNNING']);
    expect(existsSync(path.join(workDir, 'meta'))).toBe(false);
    expect(existsSync(path.join(workDir, 'sandboxes'))).toBe(false);
    await agent.stop();
  });
});
