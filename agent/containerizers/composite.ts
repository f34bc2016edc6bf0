/**
 * Routes each task to the containerizer that runs it: Docker for `container.type === 'DOCKER'`,
 * the process containerizer otherwise (Mesos' `--containerizers=docker,mesos`). recover() is routed
 * the same way, by the checkpointed task. A task for a containerizer this agent does not run fails
 * with a message saying why (e.g. the Docker engine did not answer at start).
 */
import { Reason } from '../../master/protocol/messages.ts';
import type { Container, Containerizer, LaunchSpec, LimitsInfo, ReportStatus, ContainerizerContext } from './containerizer.ts';

export type ContainerizerKind = 'process' | 'docker';

export interface CompositeParts {
  process?: Containerizer;
  docker?: Containerizer;
  /** Why a part is missing, for the failure message of the tasks that need it. */
  missing?: Partial<Record<ContainerizerKind, string>>;
}

export function kindOf(spec: LaunchSpec): ContainerizerKind {
  return spec.task.container?.type === 'DOCKER' ? 'docker' : 'process';
}

export class CompositeContainerizer implements Containerizer {
  readonly name: string;

  constructor(private readonly parts: CompositeParts) {
    const names = [parts.process?.name, parts.docker?.name].filter((n): n is string => n !== undefined);
    if (names.length === 0) throw new TypeError('CompositeContainerizer needs at least one containerizer');
    this.name = names.join('+');
  }

  async close(): Promise<void> {
    await Promise.all([this.parts.process?.close?.(), this.parts.docker?.close?.()]);
  }

  async init(context?: ContainerizerContext): Promise<LimitsInfo> {
    const results = await Promise.all(
      (['process', 'docker'] as const).map(async (kind) => {
        const part = this.parts[kind];
        if (!part) return undefined;
        const limits = (await part.init?.(context)) ?? { enforced: false, detail: 'does not enforce limits' };
        return { kind, limits };
      }),
    );
    const present = results.filter((r) => r !== undefined);
    return {
      enforced: present.every((r) => r.limits.enforced),
      detail: present.map((r) => `${r.kind}: ${r.limits.enforced ? '' : 'not enforced, '}${r.limits.detail}`).join('; '),
    };
  }

  launch(spec: LaunchSpec, report: ReportStatus): Container {
    const kind = kindOf(spec);
    const part = this.parts[kind];
    if (part) return part.launch(spec, report);
    report({ state: 'FAILED', reason: Reason.LAUNCH_FAILED, message: this.unavailable(kind) });
    return { kill() {} };
  }

  recover(spec: LaunchSpec, checkpoint: unknown, report: ReportStatus): Container | undefined {
    return this.parts[kindOf(spec)]?.recover?.(spec, checkpoint, report);
  }

  private unavailable(kind: ContainerizerKind): string {
    const why = this.parts.missing?.[kind];
    return `this agent does not run the ${kind} containerizer${why ? ` (${why})` : ''}; ${kind === 'docker' ? 'start it with --containerizers process,docker and a Docker engine' : 'start it with --containerizers process,docker'}`;
  }
}
