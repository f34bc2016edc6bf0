/**
 * The services framework with the Docker containerizer: a bridge-mode busybox httpd app deployed
 * through the scheduler, health-checked through its mapped port, found through its endpoints and
 * served on 127.0.0.1 — then scaled down and removed, its containers gone.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { validateAppDefinition } from '../../frameworks/services/index.ts';
import { TEST_IMAGE } from '../docker-image.ts';
import { waitFor } from './helpers.ts';
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

  it('scales down and removes the app, stopping its containers', async () => {
    const scaled = await cluster.api.scale('/docker/web', 1);
    await waitFor(async () => (await cluster.api.getDeployment(scaled.id))?.state === 'succeeded', 'the scale-down to succeed', 30_000);
    await waitFor(async () => (await agent.runningContainers()).length === 1, 'one running container');
    const removal = await cluster.api.deleteApp('/docker/web');
    await waitFor(async () => (await cluster.api.getDeployment(removal.id))?.state === 'succeeded' || (await cluster.api.getApp('/docker/web')) === undefined, 'the removal to finish', 30_000);
    await waitFor(async () => (await agent.runningContainers()).length === 0, 'no running containers');
  });
});
