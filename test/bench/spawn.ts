/**
 * Spawn throughput: 500 tasks of `true` through a real Agent with the ProcessContainerizer
 * (checkpointing on, as a real agent runs), next to a plain child_process.spawn loop of 500.
 *
 * The agent gets all 500 RUN_TASKs at once from an in-memory master (MemoryConnection: msgpack
 * encode, decode and validation as on a socket) that acknowledges every status update. That is
 * what a real agent faces when a framework accepts one big offer: the whole launch at once, no
 * window imposed from outside (the agent's own pipeline keeps 8 sandboxes in preparation and 8
 * log-file opens in flight). Timed from the first RUN_TASK sent to the 500th terminal update
 * received; the raw loop is timed from the first spawn to the 500th exit, also all in flight.
 *
 * Per task the agent does what the raw loop does not: create the sandbox directory, its stdout
 * and stderr files and the task's checkpoint log, append RUNNING/FINISHED and their acks, and
 * send two status updates. On a disk where a file creation costs ~0.5 ms that, not the spawn, is
 * the limit. Tasks carry no cpus/mem here so no cgroup is made; AGORA_BENCH_CGROUPS=1 measures
 * with cgroups (as root), AGORA_BENCH_CHECKPOINT=0 without checkpointing.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { Agent } from '../../agent/agent.ts';
import { ProcessContainerizer } from '../../agent/containerizers/process.ts';
import { Inbound, isTerminal, MemoryConnection, type AgentMessage, type MasterToAgent, type Resources, type TaskInfo } from '../../master/protocol/index.ts';
import { median } from './stats.ts';

const TASKS = 500;
const ROUNDS = 3;

async function rawSpawnLoop(n: number): Promise<number> {
  const start = performance.now();
  await new Promise<void>((resolve, reject) => {
    let exited = 0;
    for (let i = 0; i < n; i++) {
      const child = spawn('sh', ['-c', 'true'], { stdio: 'ignore' });
      child.once('error', reject);
      child.once('exit', () => {
        if (++exited === n) resolve();
      });
    }
  });
  return performance.now() - start;
}

async function agentLoop(n: number, workDir: string, cgroups: boolean, checkpoint = true): Promise<number> {
  let master!: MemoryConnection<AgentMessage, MasterToAgent>;
  let done!: () => void;
  const allDone = new Promise<void>((resolve) => (done = resolve));
  let terminal = 0;
  const agent = new Agent({
    workDir,
    checkpoint,
    logger: pino({ level: process.env.AGORA_LOG_LEVEL ?? 'warn' }),
    containerizer: new ProcessContainerizer(cgroups ? {} : { cgroups: false }),
    resources: { cpus: 2, mem: 4096 },
    connect: async () => {
      const [agentSide, masterSide] = MemoryConnection.pair<MasterToAgent, AgentMessage>(Inbound.masterToAgent, Inbound.agentMessages);
      master = masterSide;
      master.onMessage = (message) => {
        if (message.type === 'REGISTER') master.send({ type: 'REGISTERED', agentId: 'bench-agent', masterId: 'bench' });
        if (message.type !== 'STATUS_UPDATE') return;
        const { frameworkId, taskId, uuid, state } = message.status;
        master.send({ type: 'ACKNOWLEDGE_UPDATE', frameworkId, taskId, uuid });
        if (isTerminal(state) && ++terminal === n) done();
      };
      return agentSide;
    },
  });
  await agent.start();
  await agent.registered();
  const resources: Resources = cgroups ? { cpus: 0.1, mem: 32 } : {};
  const tasks: TaskInfo[] = Array.from({ length: n }, (_, i) => ({ taskId: `t${i}`, resources, command: { value: 'true' } }));
  const start = performance.now();
  for (const task of tasks) master.send({ type: 'RUN_TASK', frameworkId: 'bench', task });
  await allDone;
  const elapsed = performance.now() - start;
  await agent.stop();
  return elapsed;
}

export default async function run(opts: { json: boolean }): Promise<Record<string, unknown>> {
  const workDir = mkdtempSync(path.join(os.tmpdir(), 'agora-bench-spawn-'));
  const cgroups = process.env.AGORA_BENCH_CGROUPS === '1';
  const checkpoint = process.env.AGORA_BENCH_CHECKPOINT !== '0';
  try {
    await rawSpawnLoop(50); // warm up
    // Alternate the two, ROUNDS times, and take each one's median: other work on a shared machine
    // then skews both alike instead of whichever happened to run during a burst.
    const raw: number[] = [];
    const agora: number[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      raw.push(await rawSpawnLoop(TASKS));
      agora.push(await agentLoop(TASKS, path.join(workDir, `round${round}`), cgroups, checkpoint));
    }
    const rawMs = median(raw);
    const agoraMs = median(agora);
    const rawTasksPerSecond = Math.round((TASKS / rawMs) * 1000);
    const agoraTasksPerSecond = Math.round((TASKS / agoraMs) * 1000);
    const ratio = agoraTasksPerSecond / rawTasksPerSecond;
    const line = `spawn: ${TASKS} tasks of \`true\`, all in flight, median of ${ROUNDS} — agora ${agoraTasksPerSecond}/s (${agoraMs.toFixed(0)} ms, checkpoint ${checkpoint ? 'on' : 'off'}${cgroups ? ', cgroups' : ''}), raw spawn ${rawTasksPerSecond}/s (${rawMs.toFixed(0)} ms): ${(ratio * 100).toFixed(0)}% of raw`;
    if (opts.json) process.stderr.write(`${line}\n`);
    else console.log(line);
    return { bench: 'spawn', tasks: TASKS, agoraTasksPerSecond, rawTasksPerSecond, ratio: Math.round(ratio * 100) / 100, rounds: ROUNDS, checkpoint, cgroups, cpus: os.availableParallelism() };
  } finally {
    rmSync(workDir, { recursive: true, force: true });
  }
}
