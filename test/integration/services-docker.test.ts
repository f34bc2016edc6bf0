/**
 * The services framework with the Docker containerizer: a bridge-mode busybox httpd app deployed
 * through the scheduler, health-checked through its mapped port, found through its endpoints and
 * served on 127.0.0.1; a rolling update of a container app behind its service port, every request
 * answered; then scaled down and removed, its containers gone.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { validateAppDefinition } from '../../frameworks/services/index.ts';
import { ServicePortProxy } from '../../frameworks/services/proxy.ts';
import { Label } from '../../agent/containerizers/docker-spec.ts';
import { TEST_IMAGE } from '../docker-image.ts';
import { freePort, waitFor } from './helpers.ts';
import type { DockerAgent } from './framework-cluster.ts';
import { portRange, ServicesCluster } from './services-scheduler-cluster.ts';

const engine = inject('docker');

describe.skipIf(!engine.available)('services on Docker', () => {
  let cluster: ServicesCluster;
  let agent: DockerAgent;

  beforeAll(async () => {
    cluster = await ServicesCluster.start();
    agent = await cluster.addDockerAgent({ cpus: 4, mem: 4096, disk: 1000, ports: [portRange(20)] });
    await cluster.startFramework();
  });

  afterAll(async () => {
    await cluster?.close();
  });

  it('deploys a bridge-mode container app that turns healthy, is found by its endpoints and serves on 127.0.0.1', async () => {
    const app = validateAppDefinition({
      id: '/docker/web',
      instances: 2,
      cmd: 'echo "hello from $AGORA_INSTANCE_ID" > index.html; exec httpd -f -p 80 -h "$AGORA_SANDBOX"',
      container: { type: 'DOCKER', docker: { image: TEST_IMAGE, network: 'BRIDGE', portMappings: [{ containerPort: 80, name: 'http' }] } },
      cpus: 0.2,
      mem: 32,
      healthChecks: [{ protocol: 'HTTP', path: '/index.html', portName: 'http', gracePeriodSeconds: 20, intervalSeconds: 0.3, timeoutSeconds: 2, delaySeconds: 0 }],
      killGracePeriodSeconds: 1,
    });
    const deployment = await cluster.api.putApp(app);
    await waitFor(async () => (await cluster.api.getDeployment(deployment.id))?.state === 'succeeded', 'the deployment to succeed', 60_000);

    const endpoints = await waitFor(async () => {
      const list = await cluster.api.endpoints(app.id);
      return list.length === 2 && list;
    }, 'two endpoints');
    for (const endpoint of endpoints) {
      // The mapped host port, bound on the agent's advertised loopback address.
      const res = await fetch(`http://127.0.0.1:${endpoint.port}/index.html`);
      expect(res.status).toBe(200);
      expect(await res.text()).toMatch(/^hello from \S+/);
    }
    const tasks = await cluster.api.tasks(app.id);
    expect(tasks.every((t) => t.healthy === true)).toBe(true);
    const containers = await agent.runningContainers();
    expect(containers).toHaveLength(2);
    expect(containers.every((c) => c.Image === TEST_IMAGE)).toBe(true);
  });

  it('rolls a container app to a new version behind its service port, answering every request throughout', async () => {
    const proxy = new ServicePortProxy({ api: cluster.api, pollIntervalMs: 500 });
    await proxy.start();
    try {
      const servicePort = await freePort();
      const version = (greeting: string) =>
        validateAppDefinition({
          id: '/docker/rolling',
          instances: 2,
          cmd: 'echo "$GREETING" > index.html; exec httpd -f -p 80 -h "$AGORA_SANDBOX"',
          env: { GREETING: greeting },
          container: { type: 'DOCKER', docker: { image: TEST_IMAGE, network: 'BRIDGE', portMappings: [{ containerPort: 80, name: 'http' }] } },
          cpus: 0.2,
          mem: 32,
          servicePort,
          healthChecks: [{ protocol: 'HTTP', path: '/index.html', portName: 'http', gracePeriodSeconds: 20, intervalSeconds: 0.3, timeoutSeconds: 2, delaySeconds: 0 }],
          upgradeStrategy: { minimumHealthCapacity: 1, maximumOverCapacity: 0.5, progressDeadlineSeconds: 60 },
          killGracePeriodSeconds: 1,
        });
      const get = async (): Promise<string> => {
        try {
          const res = await fetch(`http://127.0.0.1:${servicePort}/index.html`, { signal: AbortSignal.timeout(5000) });
          return `${res.status} ${(await res.text()).trim()}`;
        } catch (error) {
          return `error ${(error as Error).message}`;
        }
      };
      const first = await cluster.api.putApp(version('one'));
      await waitFor(async () => (await cluster.api.getDeployment(first.id))?.state === 'succeeded', 'version one to be deployed', 60_000);
      await waitFor(async () => (await get()) === '200 one', 'the service port to serve version one', 15_000);

      const answers: string[] = [];
      let rolling = true;
      const traffic = (async () => {
        while (rolling) {
          answers.push(await get());
          await new Promise((r) => setTimeout(r, 50));
        }
      })();
      const second = await cluster.api.putApp(version('two'));
      await waitFor(async () => (await cluster.api.getDeployment(second.id))?.state === 'succeeded', 'version two to be deployed', 60_000);
      await waitFor(async () => (await get()) === '200 two' && (await get()) === '200 two', 'the service port to serve only version two', 15_000);
      rolling = false;
      await traffic;

      expect(answers.length).toBeGreaterThan(10);
      expect(answers.filter((a) => a !== '200 one' && a !== '200 two')).toEqual([]);
      expect(answers).toContain('200 one');
      const containers = await agent.runningContainers();
      const running = containers.map((c) => c.Labels[Label.taskId]).filter((id) => id?.startsWith('docker_rolling.')).sort();
      const tasks = await cluster.api.tasks('/docker/rolling');
      expect(tasks.map((t) => t.version)).toEqual([second.to.version, second.to.version]);
      expect(running).toEqual(tasks.map((t) => t.taskId).sort());
      const removal = await cluster.api.deleteApp('/docker/rolling');
      await waitFor(async () => (await cluster.api.getDeployment(removal.id))?.state === 'succeeded' || (await cluster.api.getApp('/docker/rolling')) === undefined, 'the removal to finish', 30_000);
    } finally {
      await proxy.close();
    }
  }, 120_000);

  it('scales down and removes the app, stopping its containers', async () => {
    const scaled = await cluster.api.scale('/docker/web', 1);
    await waitFor(async () => (await cluster.api.getDeployment(scaled.id))?.state === 'succeeded', 'the scale-down to succeed', 30_000);
    await waitFor(async () => (await agent.runningContainers()).length === 1, 'one running container');
    const removal = await cluster.api.deleteApp('/docker/web');
    await waitFor(async () => (await cluster.api.getDeployment(removal.id))?.state === 'succeeded' || (await cluster.api.getApp('/docker/web')) === undefined, 'the removal to finish', 30_000);
    await waitFor(async () => (await agent.runningContainers()).length === 0, 'no running containers');
  });
});
