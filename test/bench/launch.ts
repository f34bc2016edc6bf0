/**
 * Launch throughput: a master with 1,000 simulated agents (real ws connections; a containerizer that
 * reports RUNNING and FINISHED without spawning) and one scheduler launching tasks as fast as offers
 * allow. Latency = ACCEPT sent → RUNNING update received.
 *
 * Layout on two cores: the 1,000 agents run in a child process; the master and the scheduler share
 * this one (the scheduler's share of the work is small next to a thousand agents'). See
 * launch-scheduler.ts for the scheduler's shape.
 *
 * Knobs (environment): BENCH_AGENTS, BENCH_TASKS, BENCH_WARMUP, BENCH_WINDOW, BENCH_PER_OFFER,
 * BENCH_REFUSE; BENCH_PROF=DIR writes a CPU profile of the agents' process there.
 */
import { pino } from 'pino';
import { startMasterServer } from '../../master/http/server.ts';
import { runScheduler } from './launch-scheduler.ts';
import { startSimulatedAgents } from './simulated-agents.ts';

const AGENTS = Number(process.env.BENCH_AGENTS ?? 1000);
const TASKS = Number(process.env.BENCH_TASKS ?? 40_000);
/** Tasks run first to warm the JIT and the sockets; not measured. */
const WARMUP = Number(process.env.BENCH_WARMUP ?? 5_000);

export default async function run(_opts: { json: boolean }): Promise<Record<string, unknown>> {
  // Errors only, to stderr: stdout carries the figures (and --json's last line).
  const logger = pino({ level: 'error' }, pino.destination(2));
  const server = await startMasterServer({ port: 0, offerTimeoutMs: 60_000, logger });
  const agents = await startSimulatedAgents(server.wsUrl, AGENTS, { ...(process.env.BENCH_PROF && { profileDir: process.env.BENCH_PROF }) });
  try {
    const figures = await runScheduler(server.wsUrl, TASKS, WARMUP, logger);
    const tasksPerSecond = Math.round(figures.tasks / figures.seconds);
    console.log(`launch: ${figures.tasks} tasks (after ${WARMUP} warm-up) on ${AGENTS} agents in ${figures.seconds.toFixed(2)} s = ${tasksPerSecond} tasks/s; ACCEPT→RUNNING p50 ${figures.p50Ms.toFixed(2)} ms, p99 ${figures.p99Ms.toFixed(2)} ms (target ≥ 10,000 tasks/s, p99 ≤ 20 ms)`);
    return { bench: 'launch', agents: AGENTS, tasks: figures.tasks, tasksPerSecond, p50Ms: round(figures.p50Ms), p99Ms: round(figures.p99Ms) };
  } finally {
    await agents.stop();
    await server.close();
  }
}

function round(n: number): number {
  return Math.round(n * 100) / 100;
}
