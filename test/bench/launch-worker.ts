/**
 * Child process of the launch and services-scale benchmarks (see simulated-agents.ts): N simulated
 * agents, real WebSocket clients of the master given on the command line, with a containerizer that
 * spawns nothing. Its tasks report RUNNING, then FINISHED at once ('finish') or run until killed
 * ('run'). Prints "ready" once all are registered and runs until killed.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { Agent } from '../../agent/agent.ts';
import { SimulatedContainerizer } from '../../agent/containerizers/simulated.ts';

const [masterUrl, agentCountText, tasks = 'finish'] = process.argv.slice(2);
const agentCount = Number(agentCountText);
const logger = pino({ level: 'warn' });

const workRoot = mkdtempSync(join(tmpdir(), 'agora-launch-bench-'));
process.on('exit', () => rmSync(workRoot, { recursive: true, force: true }));
process.on('SIGTERM', () => process.exit(0));
const agents: Agent[] = [];
for (let i = 0; i < agentCount; i++) {
  agents.push(
    new Agent({
      master: masterUrl!,
      workDir: join(workRoot, `agent-${i}`),
      hostname: `sim-${i}`,
      resources: { cpus: 8, mem: 16384, disk: 1000, ports: [[31000, 32000]] },
      containerizer: new SimulatedContainerizer(tasks === 'run' ? { outcome: () => ({ state: 'RUNNING', delayMs: Infinity }) } : {}),
      checkpoint: false,
      logger,
    }),
  );
}
await Promise.all(agents.map((a) => a.start()));
await Promise.all(agents.map((a) => a.registered()));
process.stdout.write('ready\n');
