/**
 * A batch framework on a real master and real agents (process containerizer), for the batch
 * scheduler tests: runs are waited on through the real API, tasks are real shell processes.
 */
import type { Agent, AgentOptions } from '../../agent/agent.ts';
import type { MasterServer } from '../../master/http/server.ts';
import type { TaskStateJson } from '../../master/cluster/state-json.ts';
import { startBatchFramework, type BatchFramework, type BatchFrameworkOptions } from '../../frameworks/batch/main.ts';
import { validateJobSpec, type BatchEvent, type JobSpecInput, type RunSummaryView as RunSummary, type RunView } from '../../frameworks/batch/index.ts';
import { quiet, removeDir, startAgent, startMaster, tempDir, waitFor } from './helpers.ts';

export class BatchCluster {
  readonly agents: Agent[] = [];
  readonly events: BatchEvent[] = [];
  framework: BatchFramework | undefined;
  private readonly dirs: string[] = [];

  private constructor(readonly master: MasterServer) {}

  static async start(): Promise<BatchCluster> {
    return new BatchCluster(await startMaster());
  }

  async addAgent(options: Partial<AgentOptions> = {}): Promise<Agent> {
    const workDir = options.workDir ?? tempDir('agora-agent-');
    this.dirs.push(workDir);
    const agent = await startAgent(this.master, { workDir, hostname: '127.0.0.1', resources: { cpus: 4, mem: 4096, disk: 1000 }, ...options });
    this.agents.push(agent);
    return agent;
  }

  async startFramework(options: Partial<BatchFrameworkOptions> = {}): Promise<BatchFramework> {
    const framework = await startBatchFramework({
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

  get api(): BatchFramework['api'] {
    if (!this.framework) throw new Error('no batch framework started');
    return this.framework.api;
  }

  /** Submits the job and triggers a run of it. */
  async run(job: JobSpecInput): Promise<RunSummary> {
    await this.api.putJob(validateJobSpec(job));
    return this.api.triggerRun(job.id);
  }

  /** Waits for the run to end and returns it whole. */
  async ended(runId: string, timeoutMs = 20_000): Promise<RunView> {
    let last: RunView | undefined;
    return waitFor(
      async () => {
        last = await this.api.getRun(runId);
        return last && last.finishedAtMs !== undefined ? last : undefined;
      },
      () => `run ${runId} to end; it is ${last ? `${last.state} ${JSON.stringify(last.counts)}` : 'gone'}`,
      timeoutMs,
    );
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
    await this.master.close().catch(() => undefined);
    for (const dir of this.dirs) removeDir(dir);
  }
}
