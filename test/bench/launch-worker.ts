/**
 * Child process of the launch benchmark: 1,000 simulated agents and one scheduler, all real
 * WebSocket clients of the master given on the command line. Prints one JSON line of figures.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { Agent } from '../../agent/agent.ts';
import { SimulatedContainerizer } from '../../agent/containerizers/simulated.ts';
import { SchedulerDriver } from '../../frameworks/sdk/index.ts';
import type { TaskInfo } from '../../master/protocol/messages.ts';
import { scalar } from '../../master/protocol/resources.ts';

const [masterUrl, agentCountText, taskCountText] = process.argv.slice(2);
const agentCount = Number(agentCountText);
const taskCount = Number(taskCountText);
const logger = pino({ level: 'warn' });
const TASK_CPUS = 0.1;
const TASK_MEM = 32;
/** Tasks launched per offer: a bound on bursts, like a real scheduler's batch size. */
const PER_OFFER = Number(process.env.BENCH_PER_OFFER ?? 16);
/**
 * Tasks in flight (launched, not yet finished) at most. A scheduler that launches everything it
 * can measures only how long its own queue is; this one keeps a window, suppressing offers while
 * it is full and reviving when it drains, as a well-behaved framework does.
 */
const WINDOW = Number(process.env.BENCH_WINDOW ?? 1000);

const workRoot = mkdtempSync(join(tmpdir(), 'agora-launch-bench-'));
process.on('exit', () => rmSync(workRoot, { recursive: true, force: true }));
const agents: Agent[] = [];
for (let i = 0; i < agentCount; i++) {
  agents.push(
    new Agent({
      master: masterUrl!,
      workDir: join(workRoot, `agent-${i}`),
      hostname: `sim-${i}`,
      resources: { cpus: 8, mem: 16384, disk: 1000, ports: [[31000, 32000]] },
      containerizer: new SimulatedContainerizer(),
      checkpoint: false,
      logger,
    }),
  );
}
await Promise.all(agents.map((a) => a.start()));
await Promise.all(agents.map((a) => a.registered()));

let launched = 0;
let finished = 0;
let suppressed = false;
const acceptedAt = new Map<string, number>();
const latencies: number[] = [];
let startedAt = 0;
let resolveDone!: () => void;
const done = new Promise<void>((r) => (resolveDone = r));

const driver = new SchedulerDriver({
  master: masterUrl!,
  framework: { name: 'launch-bench', failoverTimeoutMs: 0 },
  logger,
  handlers: {
    offers(offers, d) {
      if (startedAt === 0) startedAt = performance.now();
      for (const offer of offers) {
        if (launched >= taskCount) {
          d.decline(offer.id, 60);
          continue;
        }
        const fit = Math.floor(Math.min(scalar(offer.resources, 'cpus') / TASK_CPUS + 1e-9, scalar(offer.resources, 'mem') / TASK_MEM));
        const room = WINDOW - (launched - finished);
        if (room <= 0) {
          if (!suppressed) d.suppress();
          suppressed = true;
          d.decline(offer.id, 0);
          continue;
        }
        const n = Math.min(fit, PER_OFFER, room, taskCount - launched);
        const tasks: TaskInfo[] = [];
        for (let i = 0; i < n; i++) {
          const taskId = `t${launched++}`;
          tasks.push({ taskId, resources: { cpus: TASK_CPUS, mem: TASK_MEM }, command: { value: 'true' } });
        }
        const now = performance.now();
        for (const t of tasks) acceptedAt.set(t.taskId, now);
        d.launch(offer, tasks, { refuseSeconds: 0 });
      }
    },
    update(status, d) {
      if (status.state === 'RUNNING') {
        const t0 = acceptedAt.get(status.taskId);
        if (t0 !== undefined) {
          latencies.push(performance.now() - t0);
          acceptedAt.delete(status.taskId);
        }
      } else if (status.state === 'FINISHED') {
        if (++finished === taskCount) resolveDone();
        if (suppressed && launched - finished <= WINDOW * 0.75 && launched < taskCount) {
          suppressed = false;
          d.revive();
        }
      } else if (status.state !== 'STAGING') {
        process.stderr.write(`unexpected ${status.state} for ${status.taskId}: ${status.message}\n`);
      }
    },
  },
});
await driver.start();
await done;
const seconds = (performance.now() - startedAt) / 1000;
latencies.sort((a, b) => a - b);
const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))] ?? 0;
process.stdout.write(`${JSON.stringify({ tasks: finished, seconds, p50Ms: pct(50), p99Ms: pct(99) })}\n`);
await driver.stop({ teardown: true });
process.exit(0);
