/**
 * Batch throughput: a 500-task array of `true` through the batch framework, from submit to all
 * done, next to the same array through Slurm in the same run when Slurm answers here
 * (../shared/peers/slurm-array.sh; ../shared/peers/slurm-up.sh sets up a one-node Slurm).
 * Targets: ≥ 450 tasks/s and speedup (slurm / agora) ≥ 20.
 *
 * What runs: the real master (startMasterServer, in this process), the real batch framework
 * (startBatchFramework with its default kind of store: a file store, here in a temp dir, fsynced on
 * every commit; also in this process) and one real Agent with the process containerizer in its own
 * process (batch-agent.ts), with this machine's detected resources and checkpointing on: what
 * `agora master`, `agora agent` and the batch scheduler run. The job is what a user would write for
 * `true`: `cpus: 0.1, mem: 32, array: 0-499`, no throttle — so the agent's cpus bound the tasks in
 * flight at cpus / 0.1 (20 on two cores).
 *
 * Timed from just before putJob to the `run` event that says the run ended (sent once its end is
 * in the store), after two warm-up runs (the agent is a new process for each configuration, and
 * the first 500 tasks leave V8 still optimizing: a long-running agent, master and scheduler are
 * warm, as Slurm's daemons are); the figure is the median of 3 runs.
 *
 * Headline: the agent's DEFAULT configuration — as root with a writable cgroup hierarchy, every task
 * runs in a cpu and memory cgroup of its own (from the agent's pool: made once, then reused by one
 * task after another, its limits rewritten when they differ; the launcher joins the task to it).
 * The same is then measured with per-task cgroups off (`withoutCgroups`), to show what they cost.
 *
 * Each run also prints where the time went: tasks in flight on average, per-task latencies from
 * the run's own record, and CPU per task of the agent, of the tasks it reaped (the forked children)
 * and of this process (master + scheduler), with how busy the whole machine was (anyone's load).
 * What it showed on a 2-vCPU VM (Nov 2026): ~680 tasks/s (runs of 550-840) with per-task cgroups,
 * ~720 without (before the cgroup pool and 25-task store chunks: ~535 and ~710); per task about
 * agent 0.55 ms, its launcher 0.2, the task's own `sh -c true` 0.85 (with its cgroup joins),
 * master+scheduler 0.65-1, the machine ~93 % busy, so CPU binds, and the 20-task limit nearly
 * does too (launched→RUNNING ~15-20 ms). The disk matters: that VM's ext4
 * has no journal, and without one every inode allocation skips the inodes freed in the last
 * minutes (ext4's recently_deleted), so right after many deletions (an earlier benchmark's work dir)
 * each file a sandbox needs costs up to a millisecond and the figure drops to ~350-400; hence the
 * tmpfs figure next to it, and hence what Agora itself no longer does per task or per commit:
 * create and delete files (the agent checkpoints into one journal, the file store appends to a
 * log). Tasks are forked by a native launcher (agent/containerizers/launcher.c, ~0.2 ms per task)
 * rather than by the ~120 MB agent: a fork costs in proportion to the forking process's memory.
 *
 * Knobs (environment): BENCH_TASKS (500), BENCH_ROUNDS (3), BENCH_WARMUP (2), BENCH_CGROUPS_COMPARE=0 skips the run
 * without cgroups, BENCH_TMPFS_COMPARE=0 the one on /dev/shm, BENCH_SLURM=0 skips Slurm,
 * BENCH_AGENT_CPUS=N gives the agent N cpus instead of the detected ones (N / 0.1 tasks in flight;
 * for experiments, not the headline),
 * BENCH_DIR=DIR puts the agent's work dir and the store there (default the OS temp dir),
 * BENCH_SETTLE=0 starts at once even within a minute of the last run's removal of its work dirs,
 * BENCH_AGENT_NODE_FLAGS='…' runs the agent's node with those flags, BENCH_PROF=DIR writes a CPU
 * profile of the agent's process there (run node with --cpu-prof for this one's).
 */
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { startMasterServer } from '../../master/http/server.ts';
import { startBatchFramework, type BatchFramework } from '../../frameworks/batch/main.ts';
import { validateJobSpec, type RunView } from '../../frameworks/batch/index.ts';
import { scalar, type Resources } from '../../master/protocol/resources.ts';
import { median, percentile, round2 } from './stats.ts';

const TASKS = Number(process.env.BENCH_TASKS ?? 500);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const WARMUP_ROUNDS = Number(process.env.BENCH_WARMUP ?? 2);
/** Where the agent's work dir and the batch store go (an experiment: BENCH_DIR=/dev/shm takes the disk out). */
const BENCH_DIR = process.env.BENCH_DIR ?? os.tmpdir();
const TMPFS = '/dev/shm';
const TASK_CPUS = 0.1;
const TASK_MEM = 32;
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const SLURM_ARRAY = path.join(ROOT, '..', 'shared', 'peers', 'slurm-array.sh');

interface AgentInfo {
  resources: Resources;
  limits: { enforced: boolean; detail: string };
}

/** One timed run: wall seconds, and what the run's own record says about where the time went. */
interface RunFigures {
  seconds: number;
  /** Tasks launched and not ended, averaged over the run: Σ(ended − launched) / wall. */
  meanInFlight: number;
  /** Per task, scheduler clock: launched (offer taken, attempt written) → RUNNING seen → terminal seen. */
  launchToRunningMs: { p50: number; p99: number };
  runningToEndMs: { p50: number; p99: number };
  /** The k-th end → the launch its freed resources allowed, as the scheduler sees them (0: the master re-offered them, and the launch came, before the scheduler heard of the end). */
  endToNextLaunchMs: { p50: number; p99: number };
  submitToFirstLaunchMs: number;
  lastEndToDoneMs: number;
  /** CPU per task (ms) over the run: the agent's process, the tasks it reaped, this process (master + scheduler), and the whole machine busy (all processes, anyone's) as a share of its cores. */
  cpu: { agentMs: number; launcherMs: number; tasksMs: number; masterSchedulerMs: number; machineBusy: number };
}

interface ConfigFigures {
  rounds: RunFigures[];
  median: RunFigures;
  agent: AgentInfo;
}

const TICK_MS = 10; // USER_HZ is 100 on Linux

/** A process's CPU so far (ms): its own, and that of the children it reaped (the tasks, for the agent). */
function processCpu(pid: number | 'self'): { self: number; children: number } {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ').map(Number);
    // Fields 14-17 (utime stime cutime cstime) are at 11-14 after the command name.
    return { self: (f[11]! + f[12]!) * TICK_MS, children: (f[13]! + f[14]!) * TICK_MS };
  } catch {
    return { self: NaN, children: NaN };
  }
}

/** The machine's busy and total CPU time so far (ticks, all cores). */
function machineCpu(): { busy: number; total: number } {
  const [, ...fields] = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/);
  const n = fields.map(Number);
  const idle = n[3]! + n[4]!; // idle + iowait
  const total = n.slice(0, 8).reduce((a, b) => a + b, 0);
  return { busy: total - idle, total };
}

async function startAgentProcess(masterUrl: string, cgroups: 'auto' | 'off', profDir: string | undefined, dir: string): Promise<{ info: AgentInfo; pid: number; stop: () => Promise<void> }> {
  const worker = fileURLToPath(new URL('./batch-agent.ts', import.meta.url));
  const workDir = mkdtempSync(path.join(dir, 'agora-batch-bench-agent-'));
  // The agent runs as `agora agent` would: without the bench's NODE_OPTIONS (a 64 MB young
  // generation makes the agent's heap, and with it every fork of a task, much bigger).
  const { NODE_OPTIONS: _benchNodeOptions, ...env } = process.env;
  const nodeFlags = (process.env.BENCH_AGENT_NODE_FLAGS ?? '').split(' ').filter(Boolean);
  const child = spawn(process.execPath, [...nodeFlags, ...(profDir ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : []), '--import', 'tsx', worker, masterUrl, workDir, cgroups, ...(process.env.BENCH_AGENT_CPUS ? [process.env.BENCH_AGENT_CPUS] : [])], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...env, AGORA_LOG_LEVEL: process.env.AGORA_LOG_LEVEL ?? 'warn' },
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
  const stop = async () => {
    child.kill('SIGTERM');
    await exited;
    removeAtEnd.push(workDir);
  };
  try {
    const info = await new Promise<AgentInfo>((resolve, reject) => {
      let output = '';
      child.stdout.on('data', (chunk: Buffer) => {
        output += chunk.toString();
        const line = output.split('\n').find((l) => l.startsWith('{"ready"'));
        if (line) resolve(JSON.parse(line) as AgentInfo);
      });
      void exited.then((code) => reject(new Error(`the agent's process exited (${code}) before it registered`)));
    });
    return { info, pid: child.pid!, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

/** The agent's task launcher (native `launcher-<hash>`, or launcher.mjs): the child that forks the tasks and reaps them. */
function launcherPidOf(agentPid: number): number | undefined {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === agentPid && /launcher(\.mjs|-[0-9a-f]{16})/.test(readFileSync(`/proc/${entry}/cmdline`, 'utf8'))) return Number(entry);
    } catch {
      // gone meanwhile
    }
  }
  return undefined;
}

/** Submits the job, triggers a run and waits for the event saying it ended. */
async function timeRun(batch: BatchFramework, jobId: string, agentPid: number): Promise<RunFigures> {
  const spec = validateJobSpec({ id: jobId, cmd: 'true', cpus: TASK_CPUS, mem: TASK_MEM, array: `0-${TASKS - 1}` });
  const endedAt = new Map<string, number>();
  const endedAtEpoch = new Map<string, number>();
  let wake: (() => void) | undefined;
  const unsubscribe = batch.api.subscribe((event) => {
    if (event.type !== 'run' || event.run.finishedAtMs === undefined || endedAt.has(event.run.id)) return;
    endedAt.set(event.run.id, performance.now());
    endedAtEpoch.set(event.run.id, Date.now());
    wake?.();
  });
  try {
    const launcherPid = launcherPidOf(agentPid);
    const zero = { self: 0, children: 0 };
    const launcher0 = launcherPid === undefined ? zero : processCpu(launcherPid);
    const agent0 = processCpu(agentPid);
    const self0 = processCpu('self');
    const machine0 = machineCpu();
    const start = performance.now();
    const startEpoch = Date.now();
    await batch.api.putJob(spec);
    const { id } = await batch.api.triggerRun(jobId);
    while (!endedAt.has(id)) await new Promise<void>((resolve) => (wake = resolve));
    const seconds = (endedAt.get(id)! - start) / 1000;
    const [agent1, self1, machine1] = [processCpu(agentPid), processCpu('self'), machineCpu()];
    const launcher1 = launcherPid === undefined ? zero : processCpu(launcherPid);
    const perTask = (ms: number) => round2(ms / TASKS);
    const cpu = {
      agentMs: perTask(agent1.self - agent0.self),
      launcherMs: perTask(launcher1.self - launcher0.self),
      // The tasks are reaped by the launcher (or by the agent when it spawns in-process).
      tasksMs: perTask(agent1.children - agent0.children + launcher1.children - launcher0.children),
      masterSchedulerMs: perTask(self1.self - self0.self),
      machineBusy: round2((machine1.busy - machine0.busy) / (machine1.total - machine0.total)),
    };
    const run = (await batch.api.getRun(id))!;
    if (run.state !== 'succeeded' || run.counts.succeeded !== TASKS) throw new Error(`run ${id} ended ${run.state} ${JSON.stringify(run.counts)}: ${run.reason ?? ''}`);
    return { seconds, ...anatomy(run, seconds, startEpoch, endedAtEpoch.get(id)!), cpu };
  } finally {
    unsubscribe();
  }
}

function anatomy(run: RunView, seconds: number, submittedMs: number, doneMs: number): Omit<RunFigures, 'seconds' | 'cpu'> {
  const attempts = run.taskList.flatMap((t) => t.attempts);
  const toRunning: number[] = [];
  const toEnd: number[] = [];
  let busyMs = 0;
  for (const a of attempts) {
    if (a.startedAtMs !== undefined) toRunning.push(a.startedAtMs - a.launchedAtMs);
    if (a.startedAtMs !== undefined && a.endedAtMs !== undefined) toEnd.push(a.endedAtMs - a.startedAtMs);
    if (a.endedAtMs !== undefined) busyMs += a.endedAtMs - a.launchedAtMs;
  }
  // Pair the k-th end with the (first-wave + k)-th launch: the launch its freed resources allowed.
  const launches = attempts.map((a) => a.launchedAtMs).sort((a, b) => a - b);
  const ends = attempts.flatMap((a) => (a.endedAtMs !== undefined ? [a.endedAtMs] : [])).sort((a, b) => a - b);
  const firstWave = launches.filter((t) => t === launches[0]).length;
  const gaps: number[] = [];
  for (let k = 0; firstWave + k < launches.length && k < ends.length; k++) gaps.push(Math.max(0, launches[firstWave + k]! - ends[k]!));
  const pq = (values: number[]) => ({ p50: round2(percentile(values, 50)), p99: round2(percentile(values, 99)) });
  return {
    meanInFlight: round2(busyMs / (seconds * 1000)),
    launchToRunningMs: pq(toRunning),
    runningToEndMs: pq(toEnd),
    endToNextLaunchMs: pq(gaps),
    // The ramps: from the submit to the first launch, and from the last task's end to the run's end event.
    submitToFirstLaunchMs: launches.length > 0 ? launches[0]! - submittedMs : 0,
    lastEndToDoneMs: ends.length > 0 ? doneMs - ends.at(-1)! : 0,
  };
}

async function throughAgora(cgroups: 'auto' | 'off', label: string, dir = BENCH_DIR): Promise<ConfigFigures> {
  const quiet = pino({ level: 'error' }, pino.destination(2));
  const storeDir = mkdtempSync(path.join(dir, 'agora-batch-bench-store-'));
  const profDir = process.env.BENCH_PROF;
  const server = await startMasterServer({ port: 0, logger: quiet });
  let agent: Awaited<ReturnType<typeof startAgentProcess>> | undefined;
  let batch: BatchFramework | undefined;
  try {
    agent = await startAgentProcess(server.wsUrl, cgroups, profDir, dir);
    batch = await startBatchFramework({ master: server.wsUrl, store: storeDir, logger: quiet });
    const warmups: string[] = [];
    for (let i = 0; i < WARMUP_ROUNDS; i++) warmups.push((await timeRun(batch, 'bench-true', agent.pid)).seconds.toFixed(2));
    console.log(`  ${label}: warm-up ${warmups.join(', ')} s`);
    const rounds: RunFigures[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      const figures = await timeRun(batch, 'bench-true', agent.pid);
      rounds.push(figures);
      console.log(
        `  ${label}: run ${i + 1}: ${figures.seconds.toFixed(2)} s = ${Math.round(TASKS / figures.seconds)} tasks/s; ` +
          `in flight ${figures.meanInFlight} on average; launched→RUNNING p50 ${figures.launchToRunningMs.p50} ms, RUNNING→ended p50 ${figures.runningToEndMs.p50} ms, ` +
          `ended→next launch p50 ${figures.endToNextLaunchMs.p50} ms (p99 ${figures.endToNextLaunchMs.p99}); ` +
          `submit→first launch ${figures.submitToFirstLaunchMs} ms, last end→run ended ${figures.lastEndToDoneMs} ms; ` +
          `CPU per task: agent ${figures.cpu.agentMs} ms, its launcher ${figures.cpu.launcherMs} ms, the task itself ${figures.cpu.tasksMs} ms, master+scheduler ${figures.cpu.masterSchedulerMs} ms; machine ${Math.round(figures.cpu.machineBusy * 100)}% busy`,
      );
    }
    return { rounds, median: median(rounds, (r) => r.seconds), agent: agent.info };
  } finally {
    await batch?.close().catch(() => undefined);
    await agent?.stop().catch(() => undefined);
    await server.close();
    removeAtEnd.push(storeDir);
  }
}

/**
 * Work dirs and stores are removed once every configuration has run, not between them: on a disk
 * like this VM's (ext4 without a journal) the thousands of inodes a removal frees make every file
 * created in the next minute costly (see the top), which would handicap whichever came next. For
 * the same reason a run starting within a minute of the last one's removal waits out the rest.
 */
const removeAtEnd: string[] = [];
const REMOVED_AT_FILE = path.join(os.tmpdir(), 'agora-batch-bench-removed-at');
const SETTLE_MS = 70_000;

async function settleAfterLastRemoval(): Promise<void> {
  let removedAtMs: number;
  try {
    removedAtMs = Number(readFileSync(REMOVED_AT_FILE, 'utf8'));
  } catch {
    return;
  }
  const waitMs = removedAtMs + SETTLE_MS - Date.now();
  if (!(waitMs > 0) || waitMs > SETTLE_MS) return;
  console.log(`  waiting ${Math.ceil(waitMs / 1000)} s: the last batch benchmark removed its work dirs ${Math.round((Date.now() - removedAtMs) / 1000)} s ago, and files made within a minute of that cost more here (BENCH_SETTLE=0 skips)`);
  await new Promise((resolve) => setTimeout(resolve, waitMs));
}

function runScript(file: string, args: string[], timeoutMs: number): Promise<{ error: Error | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => execFile(file, args, { timeout: timeoutMs }, (error, stdout, stderr) => resolve({ error, stdout, stderr })));
}

/** The same array through Slurm, or undefined (saying why) when Slurm does not answer here. */
async function slurmSeconds(): Promise<number | undefined> {
  if (process.env.BENCH_SLURM === '0') {
    console.log('slurm: not measured (BENCH_SLURM=0)');
    return undefined;
  }
  if (!existsSync(SLURM_ARRAY)) {
    console.log(`slurm: not measured (no ${SLURM_ARRAY})`);
    return undefined;
  }
  const probe = await runScript('sinfo', ['-h'], 10_000);
  if (probe.error) {
    console.log(`slurm: not measured (sinfo does not answer: ${(probe.error.message || probe.stderr).split('\n')[0]}; ../shared/peers/slurm-up.sh sets up a one-node Slurm)`);
    return undefined;
  }
  const { error, stdout, stderr } = await runScript('bash', [SLURM_ARRAY, String(TASKS)], 600_000);
  const match = /slurm_array_seconds=([\d.]+)/.exec(stdout);
  if (error || !match) {
    console.log(`slurm: not measured (${(error?.message ?? stderr).split('\n')[0]})`);
    return undefined;
  }
  return Number(match[1]);
}

export default async function run(_opts: { json: boolean }): Promise<Record<string, unknown>> {
  console.log(
    `batch: ${TASKS}-task array of \`true\` (cpus ${TASK_CPUS}, mem ${TASK_MEM}), one agent with this machine's resources, batch store: file store in a temp dir; ${WARMUP_ROUNDS} warm-up runs, then the median of ${ROUNDS}`,
  );
  if (process.env.BENCH_SETTLE !== '0') await settleAfterLastRemoval();
  try {
    return await runConfigurations();
  } finally {
    for (const dir of removeAtEnd.splice(0)) rmSync(dir, { recursive: true, force: true });
    writeFileSync(REMOVED_AT_FILE, String(Date.now()));
  }
}

async function runConfigurations(): Promise<Record<string, unknown>> {
  const headline = await throughAgora('auto', 'default agent');
  const cgroupsOn = headline.agent.limits.enforced;
  const cpus = scalar(headline.agent.resources, 'cpus');
  const maxInFlight = Math.min(Math.floor(cpus / TASK_CPUS + 1e-9), Math.floor(scalar(headline.agent.resources, 'mem') / TASK_MEM));
  let without: ConfigFigures | undefined;
  if (cgroupsOn && process.env.BENCH_CGROUPS_COMPARE !== '0') without = await throughAgora('off', 'cgroups off');
  // The same default agent with its work dir and the store in memory: what the disk costs here.
  let onTmpfs: ConfigFigures | undefined;
  if (BENCH_DIR !== TMPFS && existsSync(TMPFS) && process.env.BENCH_TMPFS_COMPARE !== '0') onTmpfs = await throughAgora('auto', `work dir and store on ${TMPFS}`, TMPFS);
  const slurm = await slurmSeconds();

  const agoraSeconds = headline.median.seconds;
  const tasksPerSecond = Math.round(TASKS / agoraSeconds);
  const speedup = slurm === undefined ? null : round2(slurm / agoraSeconds);
  const withoutTps = without && Math.round(TASKS / without.median.seconds);
  const tmpfsTps = onTmpfs && Math.round(TASKS / onTmpfs.median.seconds);
  console.log(
    `batch: ${TASKS} tasks through Agora in ${agoraSeconds.toFixed(2)} s = ${tasksPerSecond} tasks/s ` +
      `(headline: default agent, per-task cgroups ${cgroupsOn ? 'ON' : `off — ${headline.agent.limits.detail}`}; ${maxInFlight} in flight at most = agent cpus ${cpus} / ${TASK_CPUS})` +
      (without ? `; without per-task cgroups ${without.median.seconds.toFixed(2)} s = ${withoutTps} tasks/s` : '') +
      (onTmpfs ? `; work dir and store on ${TMPFS} ${onTmpfs.median.seconds.toFixed(2)} s = ${tmpfsTps} tasks/s` : '') +
      (slurm === undefined ? '; Slurm not measured here' : `; Slurm ${slurm.toFixed(2)} s; speedup ${speedup}×`) +
      ' (targets ≥ 450 tasks/s, speedup ≥ 20)',
  );
  const m = headline.median;
  return {
    bench: 'batch',
    tasks: TASKS,
    agoraSeconds: round2(agoraSeconds),
    tasksPerSecond,
    slurmSeconds: slurm === undefined ? null : round2(slurm),
    speedup,
    cgroups: cgroupsOn,
    withoutCgroups: without ? { agoraSeconds: round2(without.median.seconds), tasksPerSecond: withoutTps } : null,
    onTmpfs: onTmpfs ? { agoraSeconds: round2(onTmpfs.median.seconds), tasksPerSecond: tmpfsTps } : null,
    rounds: headline.rounds.map((r) => round2(r.seconds)),
    store: 'file',
    agentCpus: cpus,
    taskResources: { cpus: TASK_CPUS, mem: TASK_MEM },
    maxInFlight,
    meanInFlight: m.meanInFlight,
    launchToRunningP50Ms: m.launchToRunningMs.p50,
    runningToEndP50Ms: m.runningToEndMs.p50,
    endToNextLaunchP50Ms: m.endToNextLaunchMs.p50,
    cpuPerTaskMs: { agent: m.cpu.agentMs, launcher: m.cpu.launcherMs, task: m.cpu.tasksMs, masterScheduler: m.cpu.masterSchedulerMs },
    machineBusy: m.cpu.machineBusy,
    machineCpus: os.availableParallelism(),
  };
}
