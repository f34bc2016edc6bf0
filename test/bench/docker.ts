/**
 * Docker launch: 50 containers (`sleep 3600`, agora-test/busybox) launched through Agora — a real
 * master, one agent with the docker containerizer, and a scheduler on the SDK, timed from the
 * first ACCEPT to the 50th RUNNING — next to 50 plain dockerode create+start calls in parallel,
 * in the same run. All containers are removed afterwards. Target: agora / dockerode ≤ 1.3.
 *
 * Both sides do create + start per container; Agora also checks the image, registers a wait,
 * follows the logs into the sandbox and checkpoints, and the updates cross two sockets.
 */
import Docker from 'dockerode';
import { pino } from 'pino';
import { Agent } from '../../agent/agent.ts';
import { connectDocker, DockerContainerizer } from '../../agent/containerizers/docker.ts';
import { Label } from '../../agent/containerizers/docker-spec.ts';
import { startMasterServer } from '../../master/http/server.ts';
import { SchedulerDriver, type TaskInfo } from '../../frameworks/sdk/index.ts';
import { ensureTestImage, removeLabelled, TEST_IMAGE } from '../docker-image.ts';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const CONTAINERS = Number(process.env.BENCH_CONTAINERS ?? 50);

async function plainDockerode(docker: Docker, runId: string): Promise<number> {
  const start = performance.now();
  await Promise.all(
    Array.from({ length: CONTAINERS }, async (_, i) => {
      const container = await docker.createContainer({ Image: TEST_IMAGE, Cmd: ['sleep', '3600'], Labels: { 'agora.bench': runId }, name: `agora-bench-plain-${runId}-${i}` });
      await container.start();
    }),
  );
  return (performance.now() - start) / 1000;
}

async function throughAgora(docker: Docker, version: Docker.DockerVersion, workDir: string): Promise<number> {
  const logger = pino({ level: process.env.AGORA_LOG_LEVEL ?? 'warn' });
  const server = await startMasterServer({ port: 0, logger: pino({ level: 'error' }), allocationIntervalMs: 50 });
  const containerizer = new DockerContainerizer({ docker, version, workDir });
  const agent = new Agent({ master: server.wsUrl, workDir, containerizer, logger, resources: { cpus: CONTAINERS, mem: CONTAINERS * 64, disk: 1000 } });
  await agent.start();
  await agent.registered();

  let acceptedAt = 0;
  let running = 0;
  let done!: (seconds: number) => void;
  const allRunning = new Promise<number>((resolve) => (done = resolve));
  const tasks: TaskInfo[] = Array.from({ length: CONTAINERS }, (_, i) => ({
    taskId: `c${i}`,
    resources: { cpus: 0.1, mem: 32 },
    command: { value: 'sleep 3600' },
    container: { type: 'DOCKER', docker: { image: TEST_IMAGE } },
  }));
  let launched = false;
  const driver = new SchedulerDriver({
    master: server.wsUrl,
    framework: { name: 'docker-bench' },
    logger,
    handlers: {
      offers(offers, d) {
        if (launched || offers.length === 0) return;
        launched = true;
        acceptedAt = performance.now();
        d.launch(offers[0]!, tasks);
        d.suppress();
      },
      update(status) {
        if (status.state === 'RUNNING' && ++running === CONTAINERS) done((performance.now() - acceptedAt) / 1000);
        else if (status.state !== 'RUNNING' && status.state !== 'STAGING' && status.state !== 'STARTING') process.stderr.write(`docker bench: ${status.taskId} ${status.state} ${status.message ?? ''}\n`);
      },
    },
  });
  await driver.start();
  const seconds = await allRunning;
  await driver.stop({ teardown: true });
  await agent.stop({ killTasks: false });
  containerizer.close();
  await server.close();
  return seconds;
}

export default async function run(_opts: { json: boolean }): Promise<Record<string, unknown>> {
  const { docker, version } = await connectDocker();
  await ensureTestImage(docker);
  const workDir = mkdtempSync(path.join(os.tmpdir(), 'agora-docker-bench-'));
  const runId = Math.random().toString(36).slice(2, 8);
  try {
    // Warm-up (not measured): the engine's first containers pay for cold caches.
    await plainDockerode(docker, `${runId}-warm`);
    await removeLabelled(docker, `agora.bench=${runId}-warm`);

    const agoraSeconds = await throughAgora(docker, version, workDir);
    await removeLabelled(docker, `${Label.workDir}=${workDir}`);
    const dockerodeSeconds = await plainDockerode(docker, runId);
    await removeLabelled(docker, `agora.bench=${runId}`);
    const ratio = agoraSeconds / dockerodeSeconds;
    console.log(
      `docker: ${CONTAINERS} containers through Agora (ACCEPT → all RUNNING) in ${agoraSeconds.toFixed(2)} s; plain dockerode create+start in parallel ${dockerodeSeconds.toFixed(2)} s; ratio ${ratio.toFixed(2)} (target ≤ 1.3) — Docker Engine ${version.Version}`,
    );
    return { bench: 'docker', containers: CONTAINERS, agoraSeconds: round(agoraSeconds), dockerodeSeconds: round(dockerodeSeconds), ratio: round(ratio) };
  } finally {
    await removeLabelled(docker, `${Label.workDir}=${workDir}`);
    await removeLabelled(docker, `agora.bench=${runId}`);
    rmSync(workDir, { recursive: true, force: true });
  }
}

function round(n: number): number {
  return Math.round(n * 100) / 100;
}
