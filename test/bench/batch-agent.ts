/**
 * Child process of the batch benchmark: one real Agent with the process containerizer, dialling
 * the master given on the command line, with this machine's detected resources and checkpointing
 * on — what `agora agent` runs. Its own process, so the agent (and the forks it makes) and the
 * master + scheduler do not share one event loop.
 *
 *   batch-agent.ts MASTER_WS_URL WORK_DIR [auto|off] [CPUS]   (cgroups: 'auto' is the agent's default;
 *                                                             CPUS overrides the detected cpus, for experiments)
 *
 * Prints one JSON line once registered ({"ready":true,"resources":…,"limits":…}) and runs until
 * SIGTERM, then stops its tasks and exits (the benchmark removes the work dir once it is done).
 */
import { pino } from 'pino';
import { Agent } from '../../agent/agent.ts';
import { ProcessContainerizer } from '../../agent/containerizers/process.ts';

const [masterUrl, workDir, cgroupsMode = 'auto', cpus] = process.argv.slice(2);
if (!masterUrl || !workDir) throw new Error('usage: batch-agent.ts MASTER_WS_URL WORK_DIR [auto|off]');
const logger = pino({ level: process.env.AGORA_LOG_LEVEL ?? 'warn' }, pino.destination(2));
const containerizer = new ProcessContainerizer(cgroupsMode === 'off' ? { cgroups: false } : {});
const agent = new Agent({ master: masterUrl, workDir, hostname: '127.0.0.1', containerizer, logger, ...(cpus && { resources: { cpus: Number(cpus) } }) });

let stopping = false;
process.on('SIGTERM', () => {
  if (stopping) return;
  stopping = true;
  void agent
    .stop({ killTasks: true })
    .catch(() => undefined)
    .finally(() => process.exit(0));
});

await agent.start();
await agent.registered();
const limits = await containerizer.init();
process.stdout.write(`${JSON.stringify({ ready: true, resources: agent.resources, limits })}\n`);
