/**
 * A containerizer that spawns nothing: RUNNING at once, then FINISHED (or whatever `outcome`
 * returns) after `delayMs`. For the launch benchmark (a thousand simulated agents on one host) and
 * the SDK's testing harness.
 */
import { Reason, type TaskInfo, type TaskState } from '../../master/protocol/messages.ts';
import type { Container, Containerizer, LaunchSpec, ReportStatus } from './containerizer.ts';

export interface SimulatedOutcome {
  /** The terminal state to report (or RUNNING with `delayMs: Infinity` for a task that runs until killed). */
  state: TaskState;
  exitCode?: number;
  message?: string;
  reason?: string;
  /** @default 0 (ends on the next turn) */
  delayMs?: number;
}

export interface SimulatedContainerizerOptions {
  outcome?: (task: TaskInfo) => SimulatedOutcome;
  /**
   * The exit code of a COMMAND health check (a fake health: e.g. 0 until a test flips it). Without
   * it the simulated containers cannot run COMMAND checks.
   */
  checkCommand?: (task: TaskInfo, command: string) => number | Promise<number>;
}

export class SimulatedContainerizer implements Containerizer {
  readonly name = 'simulated';
  /** A thousand simulated agents on one host must not spend the benchmark creating directories. */
  readonly usesSandbox = false;
  /** Tasks launched so far, for tests. */
  launched = 0;

  constructor(private readonly options: SimulatedContainerizerOptions = {}) {}

  async init(): Promise<{ enforced: boolean; detail: string }> {
    return { enforced: false, detail: 'the simulated containerizer runs nothing' };
  }

  launch(spec: LaunchSpec, report: ReportStatus): Container {
    this.launched++;
    const outcome = this.options.outcome?.(spec.task) ?? { state: 'FINISHED', exitCode: 0 };
    let done = false;
    let timer: NodeJS.Timeout | undefined;
    report({ state: 'RUNNING' });
    const finish = () => {
      if (done) return;
      done = true;
      report({
        state: outcome.state,
        ...(outcome.exitCode !== undefined ? { exitCode: outcome.exitCode } : {}),
        ...(outcome.message !== undefined ? { message: outcome.message } : {}),
        ...(outcome.reason !== undefined ? { reason: outcome.reason } : {}),
      });
    };
    const delayMs = outcome.delayMs ?? 0;
    if (outcome.state !== 'RUNNING' && Number.isFinite(delayMs)) {
      if (delayMs <= 0) setImmediate(finish);
      else timer = setTimeout(finish, delayMs);
    }
    const checkCommand = this.options.checkCommand;
    return {
      kill() {
        if (done) return;
        done = true;
        if (timer) clearTimeout(timer);
        report({ state: 'KILLED', reason: Reason.TASK_KILLED, message: 'killed by the agent' });
      },
      ...(checkCommand
        ? {
            runCheckCommand: async (command: string) => {
              if (done) throw new Error('the task has ended');
              return checkCommand(spec.task, command);
            },
          }
        : {}),
    };
  }
}
