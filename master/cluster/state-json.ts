/**
 * The JSON shape of GET /state: what an operator (and `agora state`) sees of the cluster.
 * Built on demand; nothing on the hot path keeps it up to date.
 */
import type { Resources } from '../protocol/resources.ts';
import type { TaskState } from '../protocol/messages.ts';
import type { CompletedFramework, CompletedTask, Master } from '../master.ts';

export interface AgentStateJson {
  id: string;
  hostname: string;
  status: string;
  resources: Resources;
  used: Resources;
  offered: Resources;
  attributes: Record<string, string>;
  registeredAtMs: number;
  taskCount: number;
}

export interface FrameworkStateJson {
  id: string;
  name: string;
  role: string;
  status: string;
  capabilities: string[];
  failoverTimeoutMs: number;
  registeredAtMs: number;
  dominantShare: number;
  /** It asked for no offers (SUPPRESS) until it revives. */
  suppressed: boolean;
  taskCount: number;
  offerCount: number;
}

export interface TaskStateJson {
  frameworkId: string;
  agentId: string;
  taskId: string;
  name: string | undefined;
  state: TaskState;
  reason: string | undefined;
  message: string | undefined;
  healthy: boolean | undefined;
  resources: Resources;
  launchedAtMs: number;
  updatedAtMs: number;
}

export interface MasterStateJson {
  masterId: string;
  startedAtMs: number;
  agents: AgentStateJson[];
  frameworks: FrameworkStateJson[];
  tasks: TaskStateJson[];
  completedTasks: TaskStateJson[];
  completedFrameworks: CompletedFramework[];
}

export function buildState(master: Master): MasterStateJson {
  const agents: AgentStateJson[] = [...master.agents.values()].map((agent) => ({
    id: agent.id,
    hostname: agent.hostname,
    status: agent.status,
    resources: agent.total,
    used: master.usedOn(agent),
    offered: master.offeredOn(agent),
    attributes: agent.attributes,
    registeredAtMs: agent.registeredAtMs,
    taskCount: agent.tasks.size,
  }));
  const frameworks: FrameworkStateJson[] = [];
  const tasks: TaskStateJson[] = [];
  for (const framework of master.frameworks.values()) {
    frameworks.push({
      id: framework.id,
      name: framework.info.name,
      role: framework.role,
      status: framework.status,
      capabilities: framework.info.capabilities ?? [],
      failoverTimeoutMs: framework.info.failoverTimeoutMs ?? 0,
      registeredAtMs: framework.registeredAtMs,
      dominantShare: master.dominantShare(framework.id),
      suppressed: master.isSuppressed(framework.id),
      taskCount: framework.tasks.size,
      offerCount: framework.offers.size,
    });
    for (const task of framework.tasks.values()) {
      tasks.push({
        frameworkId: framework.id,
        agentId: task.agentId,
        taskId: task.info.taskId,
        name: task.info.name,
        state: task.state,
        reason: task.status.reason,
        message: task.status.message,
        healthy: task.status.healthy,
        resources: task.info.resources,
        launchedAtMs: task.launchedAtMs,
        updatedAtMs: task.status.timestampMs,
      });
    }
  }
  return {
    masterId: master.id,
    startedAtMs: master.startedAtMs,
    agents,
    frameworks,
    tasks,
    completedTasks: master.completedTasks.toArray().map(completedToJson),
    completedFrameworks: master.completedFrameworks.toArray(),
  };
}

function completedToJson(task: CompletedTask): TaskStateJson {
  return {
    frameworkId: task.frameworkId,
    agentId: task.agentId,
    taskId: task.taskId,
    name: task.name,
    state: task.state,
    reason: task.status.reason,
    message: task.status.message,
    healthy: task.status.healthy,
    resources: task.resources,
    launchedAtMs: task.launchedAtMs,
    updatedAtMs: task.status.timestampMs,
  };
}
