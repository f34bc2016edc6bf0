/**
 * A framework on a real master and real agents (process containerizer): what the batch and
 * services scheduler test clusters share. Agents work in their own temp dirs, the framework keeps
 * its state in memory and reconnects fast, and every event it publishes is recorded.
 */
import type Docker from 'dockerode';
import type { Agent, AgentOptions } from '../../agent/agent.ts';
import { CompositeContainerizer } from '../../agent/containerizers/composite.ts';
import { connectDocker, DockerContainerizer } from '../../agent/containerizers/docker.ts';
import { Label } from '../../agent/containerizers/docker-spec.ts';
import type { MasterServer } from '../../master/http/server.ts';
import type { TaskStateJson } from '../../master/cluster/state-json.ts';
import type { Resources } from '../../master/protocol/resources.ts';
import { quiet, removeDir, startAgent, tempDir } from './helpers.ts';

interface StartableFramework<E> {
  frameworkId: string;
  api: { subscribe(listener: (event: E) => void): unknown };
  close(): Promise<void>;
}

/** What the cluster gives every framework's start, besides the test's options. */
interface ClusterStartOptions {
  master: string;
  scheduler: object;
}

export interface FrameworkKind<F, O> {
  /** 'batch', 'services': for messages. */
  name: string;
  start(options: ClusterStartOptions & Partial<O>): Promise<F>;
  /** What each new agent offers. */
  agentResources(): Resources;
}

/** An agent with the Docker containerizer (see addDockerAgent). */
export interface DockerAgent {
  docker: Docker;
  workDir: string;
  /** This agent's running containers. */
  runningContainers(): Promise<Docker.ContainerInfo[]>;
}

export class FrameworkCluster<F extends StartableFramework<E>, E, O extends { scheduler?: object }> {
  readonly agents: Agent[] = [];
  readonly events: E[] = [];
  framework: F | undefined;
  private readonly dirs: string[] = [];
  /** Run after the agents stop: what addDockerAgent leaves behind. */
  private readonly cleanups: (() => Promise<void>)[] = [];

  protected constructor(
    readonly master: MasterServer,
    private readonly kind: FrameworkKind<F, O>,
  ) {}

  async addAgent(options: Partial<AgentOptions> = {}): Promise<Agent> {
    const workDir = options.workDir ?? tempDir('agora-agent-');
    this.dirs.push(workDir);
    const agent = await startAgent(this.master, { workDir, hostname: '127.0.0.1', resources: this.kind.agentResources(), ...options });
    this.agents.push(agent);
    return agent;
  }

  /** An agent with the real Docker engine's containerizer; its containers are removed with the cluster. */
  async addDockerAgent(resources: Resources): Promise<DockerAgent> {
    const workDir = tempDir('agora-docker-agent-');
    const connected = await connectDocker();
    const { docker } = connected;
    const containerizer = new DockerContainerizer({ ...connected, workDir, retentionMs: 60_000 });
    const filters = { label: [`${Label.workDir}=${workDir}`] };
    this.cleanups.push(async () => {
      containerizer.close();
      const left = await docker.listContainers({ all: true, filters });
      await Promise.all(left.map((c) => docker.getContainer(c.Id).remove({ force: true }).catch(() => {})));
    });
    await this.addAgent({ workDir, containerizer: new CompositeContainerizer({ docker: containerizer }), resources });
    return { docker, workDir, runningContainers: () => docker.listContainers({ filters }) };
  }

  async startFramework(options: Partial<O> = {}): Promise<F> {
    const framework = await this.kind.start({
      master: this.master.wsUrl,
      store: 'memory:',
      logger: quiet,
      ...options,
      scheduler: { reconnect: { initialMs: 50, maxMs: 500 }, reconcileTimeoutMs: 3000, ...options.scheduler },
    });
    framework.api.subscribe((event) => this.events.push(event));
    this.framework = framework;
    return framework;
  }

  get api(): F['api'] {
    if (!this.framework) throw new Error(`no ${this.kind.name} framework started`);
    return this.framework.api;
  }

  /** Every task of the framework the master has seen, live and completed. */
  masterTasks(frameworkId = this.framework?.frameworkId): { live: TaskStateJson[]; completed: TaskStateJson[] } {
    const state = this.master.master.state();
    return {
      live: state.tasks.filter((t) => t.frameworkId === frameworkId),
      completed: state.completedTasks.filter((t) => t.frameworkId === frameworkId),
    };
  }

  async close(): Promise<void> {
    await this.framework?.close().catch(() => undefined);
    for (const agent of this.agents) await agent.stop({ killTasks: true }).catch(() => undefined);
    for (const cleanup of this.cleanups) await cleanup().catch(() => undefined);
    await this.master.close().catch(() => undefined);
    for (const dir of this.dirs) removeDir(dir);
  }
}
