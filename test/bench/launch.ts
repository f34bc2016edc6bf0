/**
 * Launch throughput: a master with 1,000 simulated agents (real ws connections, a containerizer that
 * reports RUNNING and FINISHED without spawning) and one scheduler launching tasks as fast as offers
 * allow. Latency = ACCEPT sent → RUNNING update received.
 *
 * The master runs in this process; agents and the scheduler run in a child process, so the master
 * has a core of its own, as it would in production. See launch-worker.ts for the scheduler's shape.
 *
 * Knobs (environment): BENCH_AGENTS, BENCH_TASKS, BENCH_WARMUP, BENCH_WINDOW, BENCH_PER_OFFER,
 * BENCH_REFUSE; BENCH_PROF=DIR writes a CPU profile of the worker there.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { startMasterServer } from '../../master/http/server.ts';

const AGENTS = Number(process.env.BENCH_AGENTS ?? 1000);
const TASKS = Number(process.env.BENCH_TASKS ?? 40_000);
/** Tasks run first to warm the JIT and the sockets; not measured. */
const WARMUP = Number(process.env.BENCH_WARMUP ?? 5_000);

export default async function run(_opts: { json: boolean }): Promise<Record<string, unknown>> {
  const server = await startMasterServer({ port: 0, offerTimeoutMs: 60_000 });
  const worker = fileURLToPath(new URL('./launch-worker.ts', import.meta.url));
  const child = spawn(process.execPath, [...(process.env.BENCH_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_PROF}`] : []), '--import', 'tsx', worker, server.wsUrl, String(AGENTS), String(TASKS), String(WARMUP)], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, AGORA_LOG_LEVEL: 'warn' },
  });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  await server.close();
  const last = output.trim().split('\n').pop() ?? '';
  if (code !== 0 || !last.startsWith('{')) throw new Error(`launch worker failed (exit ${code}): ${output}`);
  const figures = JSON.parse(last) as { tasks: number; seconds: number; p50Ms: number; p99Ms: number };
  const tasksPerSecond = Math.round(figures.tasks / figures.seconds);
  console.log(`launch: ${figures.tasks} tasks (after ${WARMUP} warm-up) on ${AGENTS} agents in ${figures.seconds.toFixed(2)} s = ${tasksPerSecond} tasks/s; ACCEPT→RUNNING p50 ${figures.p50Ms.toFixed(2)} ms, p99 ${figures.p99Ms.toFixed(2)} ms (target ≥ 10,000 tasks/s, p99 ≤ 20 ms)`);
  return { bench: 'launch', agents: AGENTS, tasks: figures.tasks, tasksPerSecond, p50Ms: round(figures.p50Ms), p99Ms: round(figures.p99Ms) };
}

function round(n: number): number {
  return Math.round(n * 100) / 100;
}
