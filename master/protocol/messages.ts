/**
 * The wire contract. Every message on every socket is one of the types below: a plain object whose
 * `type` field selects its shape. Schemas (zod) validate what arrives; the TypeScript types are
 * inferred from them, so the compiler and the validator can never disagree.
 *
 * Two endpoints, four directions:
 *   scheduler → master  SchedulerCall   (Mesos v1 scheduler API calls)
 *   master → scheduler  SchedulerEvent
 *   agent → master      AgentMessage
 *   master → agent      MasterToAgent
 *
 * Shapes are open to additions: unknown fields are dropped, not rejected, so an older master can
 * talk to a newer client that sends more. A breaking change bumps PROTOCOL_VERSION.
 */
import { z } from 'zod';
import type { Range, Resources } from './resources.ts';

export const PROTOCOL_VERSION = 1;

// ---------------------------------------------------------------------------------------------
// Shared pieces

/** Ids become file names on agents (sandboxes), so they are restricted to a safe alphabet. */
export const idSchema = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$/, 'must be 1-200 characters of letters, digits, ".", "_", ":" or "-", starting with a letter or digit');

const rangeSchema = z
  .tuple([z.number().int().nonnegative(), z.number().int().nonnegative()])
  .refine(([b, e]) => e >= b, 'a range must end at or after its beginning') as unknown as z.ZodType<Range>;

export const resourcesSchema = z.record(
  z.string().regex(/^[a-zA-Z_][a-zA-Z0-9_.-]*$/, 'is not a valid resource name'),
  z.union([z.number().finite().nonnegative(), z.array(rangeSchema), z.array(z.string())]),
) as unknown as z.ZodType<Resources>;

export const attributesSchema = z.record(z.string(), z.string());

export const TASK_STATES = [
  'STAGING',
  'STARTING',
  'RUNNING',
  'KILLING',
  'FINISHED',
  'FAILED',
  'KILLED',
  'ERROR',
  'LOST',
  'DROPPED',
  'UNREACHABLE',
  'GONE',
  'UNKNOWN',
] as const;
export const taskStateSchema = z.enum(TASK_STATES);
export type TaskState = z.infer<typeof taskStateSchema>;

/**
 * Why a status changed. Mesos' reason names without the REASON_ prefix; the set is open so newer
 * agents can add reasons without breaking older schedulers.
 */
export const Reason = {
  COMMAND_EXITED: 'COMMAND_EXITED',
  TASK_KILLED: 'TASK_KILLED',
  TASK_INVALID: 'TASK_INVALID',
  INVALID_OFFERS: 'INVALID_OFFERS',
  AGENT_UNREACHABLE: 'AGENT_UNREACHABLE',
  AGENT_REREGISTERED: 'AGENT_REREGISTERED',
  AGENT_RESTARTED: 'AGENT_RESTARTED',
  AGENT_REMOVED: 'AGENT_REMOVED',
  RECONCILIATION: 'RECONCILIATION',
  FRAMEWORK_REMOVED: 'FRAMEWORK_REMOVED',
  LAUNCH_FAILED: 'LAUNCH_FAILED',
  CONTAINER_LIMITATION_MEMORY: 'CONTAINER_LIMITATION_MEMORY',
  CONTAINER_IMAGE_PULL_FAILED: 'CONTAINER_IMAGE_PULL_FAILED',
  TASK_HEALTH_CHECK_FAILED: 'TASK_HEALTH_CHECK_FAILED',
} as const;

export const taskStatusSchema = z.object({
  taskId: idSchema,
  frameworkId: idSchema,
  agentId: idSchema.optional(),
  state: taskStateSchema,
  reason: z.string().optional(),
  message: z.string().optional(),
  /** Who produced it: the master (reconciliation, lost agents), the agent, or the task's executor. */
  source: z.enum(['MASTER', 'AGENT', 'EXECUTOR']),
  /** Present only on updates that must be acknowledged (those from agents). */
  uuid: z.string().optional(),
  healthy: z.boolean().optional(),
  exitCode: z.number().int().optional(),
  timestampMs: z.number(),
});
export type TaskStatus = z.infer<typeof taskStatusSchema>;

export const commandSchema = z.object({
  /** With `shell` (the default) a shell command line run by `sh -c`; otherwise the program to exec. */
  value: z.string().min(1, 'must not be empty'),
  shell: z.boolean().optional(),
  arguments: z.array(z.string()).optional(),
  environment: z.record(z.string(), z.string()).optional(),
});
export type CommandInfo = z.infer<typeof commandSchema>;

export const killPolicySchema = z.object({
  /** Time between SIGTERM and SIGKILL. */
  gracePeriodMs: z.number().int().nonnegative(),
});
export type KillPolicy = z.infer<typeof killPolicySchema>;

/** A host port for a container port (bridge networking); `hostPort` 0 or absent = the next port of the task's `ports` resource. */
export const portMappingSchema = z.object({
  containerPort: z.number().int().min(1).max(65535),
  hostPort: z.number().int().min(0).max(65535).optional(),
  protocol: z.enum(['tcp', 'udp']).optional(),
});

export const volumeSchema = z.object({
  /** Must be under one of the paths the agent allows (`--docker-volumes`); the Docker socket never is. */
  hostPath: z.string().startsWith('/', 'must be an absolute path'),
  containerPath: z.string().startsWith('/', 'must be an absolute path'),
  mode: z.enum(['RO', 'RW']).optional(),
});

/** Run the task in a Docker container instead of as a plain process (Mesos' DockerInfo). */
export const containerSchema = z.object({
  type: z.literal('DOCKER'),
  docker: z.object({
    image: z.string().min(1, 'must name an image'),
    /** Pull even when the image is present locally. */
    forcePull: z.boolean().optional(),
    /** @default 'HOST' */
    network: z.enum(['HOST', 'BRIDGE']).optional(),
    portMappings: z.array(portMappingSchema).optional(),
    /** Replaces the image's entrypoint. */
    entrypoint: z.array(z.string()).optional(),
    readOnlyRootFilesystem: z.boolean().optional(),
  }),
  volumes: z.array(volumeSchema).optional(),
});
export type ContainerInfo = z.infer<typeof containerSchema>;

/**
 * A health check the agent runs against the task (Mesos' HealthCheck, same defaults). Where a
 * port is needed it is `port`, or the `portIndex`-th port of the task's `ports` resource.
 */
export const healthCheckSchema = z
  .object({
    type: z.enum(['HTTP', 'TCP', 'COMMAND']),
    http: z.object({ port: z.number().int().min(1).max(65535).optional(), portIndex: z.number().int().nonnegative().optional(), path: z.string().startsWith('/').optional() }).optional(),
    tcp: z.object({ port: z.number().int().min(1).max(65535).optional(), portIndex: z.number().int().nonnegative().optional() }).optional(),
    command: z.object({ value: z.string().min(1) }).optional(),
    /** @default 15 */
    delaySeconds: z.number().nonnegative().optional(),
    /** @default 10 */
    intervalSeconds: z.number().positive().optional(),
    /** @default 20 */
    timeoutSeconds: z.number().positive().optional(),
    /** Failures within this time after the task starts do not count. @default 10 */
    gracePeriodSeconds: z.number().nonnegative().optional(),
    /** Consecutive failures (after the grace period) that get the task killed. @default 3 */
    consecutiveFailures: z.number().int().positive().optional(),
  })
  .refine((h) => (h.type === 'HTTP' ? h.http : h.type === 'TCP' ? h.tcp : h.command) !== undefined, {
    message: 'a HTTP check needs `http`, a TCP check `tcp` and a COMMAND check `command`',
  });
export type HealthCheck = z.infer<typeof healthCheckSchema>;

export const taskInfoSchema = z.object({
  taskId: idSchema,
  name: z.string().max(200).optional(),
  resources: resourcesSchema,
  command: commandSchema,
  container: containerSchema.optional(),
  healthCheck: healthCheckSchema.optional(),
  killPolicy: killPolicySchema.optional(),
  labels: z.record(z.string(), z.string()).optional(),
});
export type TaskInfo = z.infer<typeof taskInfoSchema>;

export const filtersSchema = z.object({
  /** How long the master withholds the declined resources from this framework. Mesos' default is 5. */
  refuseSeconds: z.number().nonnegative().finite(),
});
export type Filters = z.infer<typeof filtersSchema>;

/** Operations an ACCEPT carries. The list is open: LAUNCH_GROUP and reservations come later. */
export const operationSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('LAUNCH'), tasks: z.array(taskInfoSchema).min(1, 'must hold at least one task') }),
]);
export type Operation = z.infer<typeof operationSchema>;

export const FRAMEWORK_CAPABILITIES = ['PARTITION_AWARE'] as const;

export const frameworkInfoSchema = z.object({
  /** Set when re-subscribing after a failover, to resume the same framework. */
  id: idSchema.optional(),
  name: z.string().min(1).max(200),
  role: z.string().regex(/^(\*|[A-Za-z0-9_][A-Za-z0-9_.-]*)$/, 'must be "*" or a name of letters, digits, "_", "." or "-"').optional(),
  principal: z.string().optional(),
  user: z.string().optional(),
  hostname: z.string().optional(),
  /** How long the master keeps the framework's tasks after its scheduler disconnects. Mesos' default is 0. */
  failoverTimeoutMs: z.number().int().nonnegative().optional(),
  capabilities: z.array(z.string()).optional(),
});
export type FrameworkInfo = z.infer<typeof frameworkInfoSchema>;

export const offerSchema = z.object({
  id: idSchema,
  frameworkId: idSchema,
  agentId: idSchema,
  hostname: z.string(),
  role: z.string(),
  resources: resourcesSchema,
  attributes: attributesSchema,
});
export type Offer = z.infer<typeof offerSchema>;

/** A non-fatal complaint about something the peer sent; `code` is stable, `message` is for people. */
export const errorSchema = z.object({
  type: z.literal('ERROR'),
  code: z.string(),
  message: z.string(),
});
export type ErrorMessage = z.infer<typeof errorSchema>;

export const ErrorCode = {
  UNDECODABLE: 'UNDECODABLE',
  INVALID_MESSAGE: 'INVALID_MESSAGE',
  UNKNOWN_TYPE: 'UNKNOWN_TYPE',
  NOT_SUBSCRIBED: 'NOT_SUBSCRIBED',
  ALREADY_SUBSCRIBED: 'ALREADY_SUBSCRIBED',
  PROTOCOL_VERSION: 'PROTOCOL_VERSION',
  INVALID_OFFER: 'INVALID_OFFER',
  INVALID_TASK: 'INVALID_TASK',
  UNKNOWN_FRAMEWORK: 'UNKNOWN_FRAMEWORK',
  FRAMEWORK_REMOVED: 'FRAMEWORK_REMOVED',
  FAILED_OVER: 'FAILED_OVER',
  NOT_REGISTERED: 'NOT_REGISTERED',
} as const;

/** The files of a task's sandbox that can be read through the master (Mesos' /files/read). */
export const TASK_FILES = ['stdout', 'stderr'] as const;
export type TaskFileName = (typeof TASK_FILES)[number];

/** The most bytes one READ_FILE (and one HTTP read through the master) may ask for. */
export const MAX_FILE_READ_BYTES = 1024 * 1024;
/**
 * The most bytes one FILE_DATA carries. A message must fit one frame (MAX_PAYLOAD_BYTES, 1 MiB)
 * with its envelope, so a larger read is answered short, and the master asks in pieces of this size.
 */
export const MAX_FILE_DATA_BYTES = 512 * 1024;

export const FILE_ERROR_CODES = ['NOT_FOUND', 'INVALID', 'FAILED'] as const;
export type FileErrorCode = (typeof FILE_ERROR_CODES)[number];

/** Correlates a FILE_DATA with its READ_FILE; chosen by the master, opaque to the agent. */
const requestIdSchema = z.string().min(1).max(100);

// ---------------------------------------------------------------------------------------------
// scheduler → master

export const schedulerCallSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('SUBSCRIBE'), protocolVersion: z.number().int(), framework: frameworkInfoSchema }),
  z.object({ type: z.literal('TEARDOWN') }),
  z.object({
    type: z.literal('ACCEPT'),
    offerIds: z.array(idSchema).min(1, 'must name at least one offer'),
    operations: z.array(operationSchema),
    filters: filtersSchema.optional(),
  }),
  z.object({ type: z.literal('DECLINE'), offerIds: z.array(idSchema).min(1, 'must name at least one offer'), filters: filtersSchema.optional() }),
  z.object({ type: z.literal('REVIVE') }),
  z.object({ type: z.literal('SUPPRESS') }),
  z.object({ type: z.literal('KILL'), taskId: idSchema, agentId: idSchema.optional(), killPolicy: killPolicySchema.optional() }),
  z.object({ type: z.literal('ACKNOWLEDGE'), agentId: idSchema, taskId: idSchema, uuid: z.string().min(1) }),
  /** An empty `tasks` list asks for every task the master knows (implicit reconciliation). */
  z.object({ type: z.literal('RECONCILE'), tasks: z.array(z.object({ taskId: idSchema, agentId: idSchema.optional() })) }),
]);
export type SchedulerCall = z.infer<typeof schedulerCallSchema>;

// master → scheduler

export const schedulerEventSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('SUBSCRIBED'), frameworkId: idSchema, heartbeatIntervalMs: z.number(), masterId: z.string() }),
  z.object({ type: z.literal('OFFERS'), offers: z.array(offerSchema) }),
  z.object({ type: z.literal('RESCIND'), offerId: idSchema }),
  z.object({ type: z.literal('UPDATE'), status: taskStatusSchema }),
  /** An agent was lost (unreachable or removed). */
  z.object({ type: z.literal('FAILURE'), agentId: idSchema }),
  errorSchema,
  z.object({ type: z.literal('HEARTBEAT') }),
]);
export type SchedulerEvent = z.infer<typeof schedulerEventSchema>;

// ---------------------------------------------------------------------------------------------
// agent → master

/** What an agent tells the master about a task it still runs, when it (re-)registers. */
export const agentTaskSchema = z.object({
  frameworkId: idSchema,
  task: taskInfoSchema,
  state: taskStateSchema,
});
export type AgentTask = z.infer<typeof agentTaskSchema>;

export const agentMessageSchema = z.discriminatedUnion('type', [
  z.object({
    type: z.literal('REGISTER'),
    protocolVersion: z.number().int(),
    /** Set when the agent has registered before (it keeps its id in its work dir). */
    agentId: idSchema.optional(),
    hostname: z.string().min(1),
    resources: resourcesSchema,
    attributes: attributesSchema,
    tasks: z.array(agentTaskSchema),
  }),
  z.object({ type: z.literal('STATUS_UPDATE'), status: taskStatusSchema.extend({ uuid: z.string().min(1), agentId: idSchema }) }),
  /**
   * The answer to READ_FILE: `data` (at most MAX_FILE_DATA_BYTES; shorter than asked at the end of
   * the file) and the file's `size` when it was read, or an `error`.
   */
  z.object({
    type: z.literal('FILE_DATA'),
    requestId: requestIdSchema,
    data: z.custom<Uint8Array>((value) => value instanceof Uint8Array, 'must be binary data').optional(),
    size: z.number().int().nonnegative().optional(),
    error: z.object({ code: z.enum(FILE_ERROR_CODES), message: z.string() }).optional(),
  }),
  errorSchema,
]);
export type AgentMessage = z.infer<typeof agentMessageSchema>;

// master → agent

export const masterToAgentSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('REGISTERED'), agentId: idSchema, masterId: z.string() }),
  z.object({ type: z.literal('RUN_TASK'), frameworkId: idSchema, task: taskInfoSchema }),
  z.object({ type: z.literal('KILL_TASK'), frameworkId: idSchema, taskId: idSchema, killPolicy: killPolicySchema.optional() }),
  z.object({ type: z.literal('ACKNOWLEDGE_UPDATE'), frameworkId: idSchema, taskId: idSchema, uuid: z.string() }),
  /** Kill every task of a framework that was torn down or whose failover timeout passed. */
  z.object({ type: z.literal('SHUTDOWN_FRAMEWORK'), frameworkId: idSchema }),
  /**
   * Read part of a task's stdout or stderr from its sandbox (the task may have ended, as long as its
   * sandbox is still there). Answered by one FILE_DATA with the same `requestId`. An agent older
   * than this message answers ERROR UNKNOWN_TYPE instead.
   */
  z.object({
    type: z.literal('READ_FILE'),
    requestId: requestIdSchema,
    frameworkId: idSchema,
    taskId: idSchema,
    file: z.enum(TASK_FILES),
    offset: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
    length: z.number().int().min(1).max(MAX_FILE_READ_BYTES),
  }),
  errorSchema,
]);
export type MasterToAgent = z.infer<typeof masterToAgentSchema>;

// ---------------------------------------------------------------------------------------------

/** Turns a zod error into one line a person can act on: `ACCEPT.offerIds: must name at least one offer`. */
export function describeZodError(error: z.ZodError, prefix: string): string {
  return error.issues
    .slice(0, 5)
    .map((issue) => {
      const path = [prefix, ...issue.path.map((p) => (typeof p === 'number' ? `[${p}]` : String(p)))].join('.').replace(/\.\[/g, '[');
      return `${path}: ${issue.message}`;
    })
    .join('; ');
}

export const TERMINAL_STATES: ReadonlySet<TaskState> = new Set(['FINISHED', 'FAILED', 'KILLED', 'ERROR', 'LOST', 'DROPPED', 'GONE']);
export function isTerminal(state: TaskState): boolean {
  return TERMINAL_STATES.has(state);
}
