/**
 * A containerizer starts a task in its sandbox, reports how it went, and kills it on request.
 *
 * The agent owns everything else (status update reliability, checkpointing, ids), so an
 * implementation is small. A fake that reports RUNNING then FINISHED without spawning:
 *
 * ```ts
 * const fake: Containerizer = {
 *   name: 'fake',
 *   launch(_spec, report) {
 *     let done = false;
 *     report({ state: 'RUNNING' });
 *     const timer = setTimeout(() => { done = true; report({ state: 'FINISHED', exitCode: 0 }); }, 10);
 *     return {
 *       kill() {
 *         if (done) return;
 *         clearTimeout(timer);
 *         done = true;
 *         report({ state: 'KILLED', reason: 'TASK_KILLED' });
 *       },
 *     };
 *   },
 * };
 * ```
 *
 * Contract: `report` is called with RUNNING once the task has started (or with a terminal state if
 * it could not start), and with exactly one terminal state when it ends; calls after the terminal
 * one are ignored by the agent.
 */
import type { TaskInfo, TaskState } from '../../master/protocol/messages.ts';

export interface LaunchSpec {
  frameworkId: string;
  task: TaskInfo;
  /** Absolute path of the task's sandbox directory; the agent has created it. */
  sandbox: string;
}

export interface ContainerStatus {
  state: TaskState;
  reason?: string;
  message?: string;
  exitCode?: number;
  /**
   * With RUNNING: what the agent must checkpoint (JSON) so `recover` can re-adopt the container
   * after an agent restart, e.g. `{pid, startTime}`.
   */
  checkpoint?: unknown;
}

export type ReportStatus = (status: ContainerStatus) => void;

export interface Container {
  /** Ends the task: a polite signal, then a forceful one after `gracePeriodMs`; reports KILLED. */
  kill(gracePeriodMs: number): void;
  /**
   * Runs a COMMAND health check where the task runs (the process's sandbox and environment, or
   * inside its container) and resolves with the exit code; rejects on timeout.
   */
  runCheckCommand?(command: string, timeoutMs: number): Promise<number>;
}

export interface ContainerizerContext {
  /** The agent's work dir: what tells this agent's resources (cgroups, containers) from another's on the same host. */
  workDir: string;
}

export interface LimitsInfo {
  enforced: boolean;
  /** How, or why not: "cgroup v1 memory+cpu under /sys/fs/cgroup/{memory,cpu}/agora". */
  detail: string;
}

export interface Containerizer {
  /** Shown in the agent's startup log: "process", "simulated", "docker". */
  readonly name: string;
  /** @default true. false: the agent makes no sandbox directories (a containerizer that runs nothing). */
  readonly usesSandbox?: boolean;
  /** Called once before any launch or recover, with the agent's context. */
  init?(context?: ContainerizerContext): Promise<LimitsInfo>;
  /** Called when the agent stops (its tasks may keep running): release what the containerizer holds. */
  close?(): void | Promise<void>;
  /** Starts the task; never throws for task-level problems (reports FAILED with LAUNCH_FAILED instead). */
  launch(spec: LaunchSpec, report: ReportStatus): Container;
  /**
   * Re-adopts a container the agent launched before it restarted, from what it checkpointed with
   * RUNNING. Returns undefined when the container is gone (the agent then reports AGENT_RESTARTED).
   */
  recover?(spec: LaunchSpec, checkpoint: unknown, report: ReportStatus): Container | undefined;
}
