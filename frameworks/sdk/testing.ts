/**
 * A cluster in a test: the real Master and real Agents wired together over in-memory connections,
 * with agents whose tasks run nothing (SimulatedContainerizer). A scheduler under test uses it by
 * passing `cluster.connect` to its SchedulerDriver; it runs unchanged, in milliseconds, with no
 * sockets or processes.
 *
 * ```ts
 * const cluster = await createTestCluster({
 *   agents: [{ resources: 'cpus:4;mem:1024', attributes: { zone: 'a' } }],
 *   outcome: (task) => (task.taskId.startsWith('bad') ? { state: 'FAILED', exitCode: 1 } : { state: 'FINISHED' }),
 * });
 * const driver = new SchedulerDriver({ connect: cluster.connect, framework: { name: 'mine' }, handlers });
 * await driver.start();
 * // ... await what your scheduler should do, then:
 * await driver.stop();
 * await cluster.close();
 * ```
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { pino, type Logger } from 'pino';
import { Agent } from '../../agent/agent.ts';
import { SimulatedContainerizer, type SimulatedOutcome } from '../../agent/containerizers/simulated.ts';
import { Master, type MasterOptions } from '../../master/master.ts';
import {
  CloseCode,
  Inbound,
  MemoryConnection,
  parseAttributes,
  parseResources,
  type AgentMessage,
  type Connection,
  type MasterToAgent,
  type Resources,
  type SchedulerCall,
  type SchedulerEvent,
  type TaskInfo,
} from '../../master/protocol/index.ts';

export type { SimulatedOutcome };

export interface TestAgentSpec {
  /** Exactly what the agent offers (nothing is detected): `'cpus:4;mem:1024;ports:[31000-31009]'` or an object. */
  resources: string | Resources;
  /** `'rack:r1;zone:a'` or an object. */
  attributes?: string | Record<string, string>;
  /** @default `agent-<n>.test` */
  hostname?: string;
}

export interface TestClusterOptions {
  /** @default one agent with 'cpus:4;mem:4096;ports:[31000-31099]' */
  agents?: TestAgentSpec[];
  /** How each task ends. @default RUNNING, then FINISHED with exit code 0 on the next turn */
  outcome?: (task: TaskInfo) => SimulatedOutcome;
  /** Passed to the Master (e.g. a short offerTimeoutMs to test rescinds). */
  master?: MasterOptions;
  /** @default silent; pass a pino logger to see what the master and agents do */
  logger?: Logger;
}

export interface TestCluster {
  readonly master: Master;
  readonly agents: Agent[];
  /** Opens a scheduler connection to the master: pass it as SchedulerDriverOptions.connect. */
  connect: () => Promise<Connection<SchedulerEvent, SchedulerCall>>;
  /** Starts another agent and waits until it has registered. */
  addAgent(spec: TestAgentSpec): Promise<Agent>;
  /**
   * Drops every open scheduler connection as a network failure would (close code 1006), to test
   * that a scheduler fails over and reconciles.
   */
  dropSchedulerConnections(): void;
  /** Stops the agents and the master and removes the agents' work dirs. */
  close(): Promise<void>;
}

const DEFAULT_AGENT: TestAgentSpec = { resources: 'cpus:4;mem:4096;ports:[31000-31099]' };
/** Names the agent would otherwise detect from this machine; zeroed so the test sees only what it gave. */
const DETECTED_NAMES = ['cpus', 'mem', 'disk', 'gpus', 'ports'] as const;

export async function createTestCluster(options: TestClusterOptions = {}): Promise<TestCluster> {
  const logger = options.logger ?? pino({ level: 'silent' });
  const master = new Master({ logger, ...options.master });
  const workRoot = await mkdtemp(path.join(os.tmpdir(), 'agora-test-cluster-'));
  const agents: Agent[] = [];
  const schedulerConnections = new Set<MemoryConnection<SchedulerEvent, SchedulerCall>>();
  const containerizer = () => new SimulatedContainerizer(options.outcome ? { outcome: options.outcome } : {});

  const connectAgent = async (): Promise<Connection<MasterToAgent, AgentMessage>> => {
    const [agentSide, masterSide] = MemoryConnection.pair<MasterToAgent, AgentMessage>(Inbound.masterToAgent, Inbound.agentMessages);
    master.acceptAgent(masterSide);
    return agentSide;
  };

  const addAgent = async (spec: TestAgentSpec): Promise<Agent> => {
    const n = agents.length + 1;
    const given = typeof spec.resources === 'string' ? parseResources(spec.resources) : spec.resources;
    const exact: Resources = {};
    for (const name of DETECTED_NAMES) exact[name] = name === 'ports' ? [] : 0;
    const agent = new Agent({
      connect: connectAgent,
      workDir: path.join(workRoot, `agent-${n}`),
      resources: { ...exact, ...given },
      attributes: typeof spec.attributes === 'string' ? parseAttributes(spec.attributes) : (spec.attributes ?? {}),
      hostname: spec.hostname ?? `agent-${n}.test`,
      containerizer: containerizer(),
      checkpoint: false,
      logger,
      reconnect: { initialMs: 10, maxMs: 100 },
      statusUpdateRetry: { initialMs: 200, maxMs: 2000 },
    });
    agents.push(agent);
    await agent.start();
    await agent.registered();
    return agent;
  };

  for (const spec of options.agents ?? [DEFAULT_AGENT]) await addAgent(spec);

  let closed = false;
  return {
    master,
    agents,
    connect: async () => {
      if (closed) throw new Error('the test cluster is closed');
      const [schedulerSide, masterSide] = MemoryConnection.pair<SchedulerEvent, SchedulerCall>(Inbound.schedulerEvents, Inbound.schedulerCalls);
      master.acceptScheduler(masterSide);
      schedulerConnections.add(schedulerSide);
      return schedulerSide;
    },
    addAgent,
    dropSchedulerConnections: () => {
      for (const conn of schedulerConnections) if (conn.isOpen) conn.close(1006, 'connection lost (dropped by the test)');
      schedulerConnections.clear();
    },
    close: async () => {
      if (closed) return;
      closed = true;
      for (const conn of schedulerConnections) if (conn.isOpen) conn.close(CloseCode.GOING_AWAY, 'test cluster closing');
      await Promise.all(agents.map((agent) => agent.stop()));
      await master.close();
      await rm(workRoot, { recursive: true, force: true });
    },
  };
}
