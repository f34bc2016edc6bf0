/**
 * A batch framework on a real master and real agents (process containerizer), for the batch
 * scheduler tests: runs are waited on through the real API, tasks are real shell processes.
 */
import type { MasterServer } from '../../master/http/server.ts';
import { startBatchFramework, type BatchFramework, type BatchFrameworkOptions } from '../../frameworks/batch/main.ts';
import { validateJobSpec, type BatchEvent, type JobSpecInput, type RunSummaryView as RunSummary, type RunView } from '../../frameworks/batch/index.ts';
import { FrameworkCluster } from './framework-cluster.ts';
import { startMaster, waitFor } from './helpers.ts';

export class BatchCluster extends FrameworkCluster<BatchFramework, BatchEvent, BatchFrameworkOptions> {
  private constructor(master: MasterServer) {
    super(master, { name: 'batch', start: startBatchFramework, agentResources: () => ({ cpus: 4, mem: 4096, disk: 1000 }) });
  }

  static async start(): Promise<BatchCluster> {
    return new BatchCluster(await startMaster());
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
}
