/**
 * The app definition: what a user asks the services framework to keep running. Field names and
 * defaults follow Marathon's app JSON, so a Marathon user can read one without a manual; where
 * Marathon's default hurt its users, ours differs and says why.
 */
import { z } from 'zod';

/** `/shop/web`: segments of lowercase letters, digits and inner hyphens (Marathon's rule; `_` is left free for task ids). */
const APP_ID_SEGMENT = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/;

export const appIdSchema = z
  .string()
  .transform((id) => (id.startsWith('/') ? id : `/${id}`))
  .refine((id) => id.length <= 180 && id.slice(1).split('/').every((s) => APP_ID_SEGMENT.test(s)), {
    message: 'must be a path like /shop/web: segments of lowercase letters, digits and hyphens (not at either end), at most 180 characters',
  });
export type AppId = z.output<typeof appIdSchema>;

const portNumber = z.number().int().min(0, 'must be 0 (any port from the offer) or 1-65535').max(65535, 'must be at most 65535');
const portName = z.string().regex(/^[a-z][a-z0-9-]{0,62}$/, 'must start with a lowercase letter and use lowercase letters, digits and "-"');

export const portDefinitionSchema = z.strictObject({
  /** 0 = any port from the offer (Marathon's portDefinitions). */
  port: portNumber.default(0),
  name: portName.optional(),
  protocol: z.enum(['tcp', 'udp']).default('tcp'),
});

export const portMappingSchema = z.strictObject({
  containerPort: z.number().int().min(1, 'must be 1-65535').max(65535, 'must be 1-65535'),
  /** 0 = any port from the offer. */
  hostPort: portNumber.default(0),
  name: portName.optional(),
  protocol: z.enum(['tcp', 'udp']).default('tcp'),
});

export const containerSchema = z.strictObject({
  type: z.literal('DOCKER', 'only DOCKER containers exist; leave `container` out to run a plain process').default('DOCKER'),
  docker: z.strictObject({
    image: z.string().min(1, 'must name an image, e.g. busybox:latest'),
    /** Containers share the host's network unless BRIDGE is asked for (Marathon's default too). */
    network: z.enum(['HOST', 'BRIDGE'], 'must be HOST or BRIDGE').default('HOST'),
    portMappings: z.array(portMappingSchema).default([]),
    forcePull: z.boolean().default(false),
  }),
  volumes: z
    .array(
      z.strictObject({
        containerPath: z.string().startsWith('/', 'must be an absolute path'),
        hostPath: z.string().startsWith('/', 'must be an absolute path'),
        mode: z.enum(['RO', 'RW']).default('RW'),
      }),
    )
    .default([]),
});

/** Marathon's constraint operators; fields are `hostname` or an agent attribute name. */
export const CONSTRAINT_OPERATORS = ['UNIQUE', 'CLUSTER', 'GROUP_BY', 'LIKE', 'UNLIKE', 'MAX_PER', 'IS'] as const;
export type ConstraintOperator = (typeof CONSTRAINT_OPERATORS)[number];
export interface Constraint {
  field: string;
  operator: ConstraintOperator;
  value?: string;
}

const constraintSchema = z
  .tuple([z.string().min(1, 'the field must be "hostname" or an agent attribute name'), z.string(), z.union([z.string(), z.number()]).optional()])
  .transform(([field, operator, value], ctx): Constraint => {
    const op = operator.toUpperCase() as ConstraintOperator;
    if (!CONSTRAINT_OPERATORS.includes(op)) {
      ctx.addIssue({ code: 'custom', path: [1], message: `unknown operator ${JSON.stringify(operator)}; use one of ${CONSTRAINT_OPERATORS.join(', ')}` });
      return z.NEVER;
    }
    const text = value === undefined ? undefined : String(value);
    const problem = constraintValueProblem(op, text);
    if (problem) {
      ctx.addIssue({ code: 'custom', path: [2], message: problem });
      return z.NEVER;
    }
    return text === undefined ? { field, operator: op } : { field, operator: op, value: text };
  });

function constraintValueProblem(operator: ConstraintOperator, value: string | undefined): string | undefined {
  switch (operator) {
    case 'UNIQUE':
      return value === undefined ? undefined : 'UNIQUE takes no value: [field, "UNIQUE"]';
    case 'CLUSTER':
      return undefined; // without a value: all on whatever value the first instance landed on
    case 'GROUP_BY':
      return value === undefined || /^[1-9]\d*$/.test(value) ? undefined : 'GROUP_BY takes an optional number of groups, e.g. [zone, GROUP_BY, 3]';
    case 'MAX_PER':
      return value !== undefined && /^[1-9]\d*$/.test(value) ? undefined : 'MAX_PER needs a positive number, e.g. [rack, MAX_PER, 2]';
    case 'LIKE':
    case 'UNLIKE':
      if (value === undefined) return `${operator} needs a regular expression, e.g. [rack, ${operator}, "rack-[1-3]"]`;
      try {
        new RegExp(value);
        return undefined;
      } catch (error) {
        return `${operator} needs a valid regular expression: ${(error as Error).message}`;
      }
    case 'IS':
      return value === undefined ? 'IS needs a value, e.g. [zone, IS, a]' : undefined;
  }
}

const seconds = (what: string) => z.number().nonnegative(`${what} must be 0 or more seconds`);
const positiveSeconds = (what: string) => z.number().positive(`${what} must be more than 0 seconds`);

/** Marathon's health check defaults: a task gets 300 s to start before failures count. */
export const healthCheckSchema = z
  .strictObject({
    protocol: z.enum(['HTTP', 'TCP', 'COMMAND'], 'must be HTTP, TCP or COMMAND'),
    path: z.string().startsWith('/', 'must start with "/"').default('/'),
    /** Which of the app's ports to probe: by index, by name, or a fixed port. @default portIndex 0 */
    portIndex: z.number().int().nonnegative().optional(),
    portName: portName.optional(),
    port: z.number().int().min(1).max(65535).optional(),
    command: z.strictObject({ value: z.string().min(1, 'must not be empty') }).optional(),
    gracePeriodSeconds: seconds('gracePeriodSeconds').default(300),
    intervalSeconds: positiveSeconds('intervalSeconds').default(60),
    timeoutSeconds: positiveSeconds('timeoutSeconds').default(20),
    maxConsecutiveFailures: z.number().int().positive('must be 1 or more').default(3),
    delaySeconds: seconds('delaySeconds').default(15),
  })
  .superRefine((check, ctx) => {
    if (check.protocol === 'COMMAND' && !check.command) ctx.addIssue({ code: 'custom', path: ['command'], message: 'a COMMAND check needs `command: {value: "…"}`' });
    if (check.protocol !== 'COMMAND' && check.command) ctx.addIssue({ code: 'custom', path: ['command'], message: `a ${check.protocol} check takes no command` });
    const selectors = [check.portIndex, check.portName, check.port].filter((s) => s !== undefined).length;
    if (selectors > 1) ctx.addIssue({ code: 'custom', path: ['port'], message: 'give at most one of port, portIndex and portName' });
  });

/** Readiness gates deployment progress only; it never kills (Marathon's readinessChecks). */
export const readinessCheckSchema = z.strictObject({
  protocol: z.literal('HTTP', 'must be HTTP').default('HTTP'),
  path: z.string().startsWith('/', 'must start with "/"').default('/'),
  portName: portName.optional(),
  intervalSeconds: positiveSeconds('intervalSeconds').default(30),
  timeoutSeconds: positiveSeconds('timeoutSeconds').default(10),
  httpStatusCodesForReady: z.array(z.number().int().min(100).max(599)).min(1, 'name at least one status code').default([200]),
});

const fraction = (field: string) =>
  z
    .number(`${field} must be a number between 0 and 1`)
    .min(0, 'must be between 0 and 1 (a fraction of instances)')
    .max(1, 'must be between 0 and 1 (a fraction of instances)');

export const upgradeStrategySchema = z.strictObject({
  /** Fraction of `instances` that must stay healthy during a deployment. Marathon's default: 1. */
  minimumHealthCapacity: fraction('minimumHealthCapacity').default(1),
  /** Fraction of `instances` that may run on top of `instances` during a deployment. Marathon's default: 1. */
  maximumOverCapacity: fraction('maximumOverCapacity').default(1),
  /**
   * A deployment with no progress (no new instance became healthy) for this long fails. Marathon
   * waits forever, the complaint we fix; 600 s is Kubernetes' progressDeadlineSeconds.
   */
  progressDeadlineSeconds: positiveSeconds('progressDeadlineSeconds').default(600),
  /** Roll back to the previous version when the deadline passes (Nomad's auto_revert, also off by default). */
  autoRevert: z.boolean().default(false),
});
export type UpgradeStrategy = z.output<typeof upgradeStrategySchema>;

export const backoffSchema = z.strictObject({
  /** Marathon: backoffSeconds 1, backoffFactor 1.15, maxLaunchDelaySeconds 300. */
  seconds: seconds('seconds').default(1),
  factor: z.number().min(1, 'must be 1 or more (1 = a constant delay)').default(1.15),
  maxLaunchDelaySeconds: seconds('maxLaunchDelaySeconds').default(300),
});
export type Backoff = z.output<typeof backoffSchema>;

export const appObjectSchema = z.strictObject({
  id: appIdSchema,
  /** Marathon's default is 1. */
  instances: z.number().int('must be a whole number').nonnegative('must be 0 or more').default(1),
  cmd: z.string().min(1, 'must not be empty; leave it out to use `args` or the image command').optional(),
  args: z.array(z.string()).min(1, 'must hold the program to run').optional(),
  container: containerSchema.optional(),
  cpus: z.number().positive('must be more than 0').default(1),
  mem: z.number().positive('must be more than 0 MB').default(128),
  disk: z.number().nonnegative('must be 0 or more MB').default(0),
  /** Host ports the app needs (host networking). Marathon defaults to one; we reserve none unless asked. */
  ports: z.array(portDefinitionSchema).default([]),
  env: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'is not a valid environment variable name'), z.string('must be a string (quote numbers)')).default({}),
  labels: z.record(z.string(), z.string('must be a string (quote numbers)')).default({}),
  role: z.string().regex(/^(\*|[A-Za-z0-9_][A-Za-z0-9_.-]*)$/, 'must be "*" or a name of letters, digits, "_", "." or "-"').default('*'),
  constraints: z.array(constraintSchema).default([]),
  /** One per task: Mesos runs one health check per task. */
  healthChecks: z.array(healthCheckSchema).max(1, 'Agora runs one health check per task (as Mesos does); keep one').default([]),
  readinessCheck: readinessCheckSchema.optional(),
  upgradeStrategy: upgradeStrategySchema.default(upgradeStrategySchema.parse({})),
  backoff: backoffSchema.default(backoffSchema.parse({})),
  /** SIGTERM → SIGKILL. Mesos' default grace period is 3 s. */
  killGracePeriodSeconds: seconds('killGracePeriodSeconds').default(3),
  killSelection: z.enum(['YOUNGEST_FIRST', 'OLDEST_FIRST'], 'must be YOUNGEST_FIRST or OLDEST_FIRST').default('YOUNGEST_FIRST'),
  /** Marathon (1.5+) replaces an unreachable instance at once by default. */
  unreachableStrategy: z.strictObject({ inactiveAfterSeconds: seconds('inactiveAfterSeconds').default(0) }).default({ inactiveAfterSeconds: 0 }),
  /** A port on the services scheduler's host that load-balances over the healthy instances' first port. */
  servicePort: z.number().int().min(1, 'must be 1-65535').max(65535, 'must be 1-65535').optional(),
  /** Apps that must be healthy and ready before this one starts or upgrades. */
  dependencies: z.array(appIdSchema).default([]),
});

export const appDefinitionSchema = appObjectSchema.superRefine((app, ctx) => {
  if (app.cmd !== undefined && app.args !== undefined) ctx.addIssue({ code: 'custom', path: ['args'], message: 'give `cmd` (a shell command line) or `args` (a program and its arguments), not both' });
  // Also for containers: the wire's TaskInfo always carries a command, so an image's own CMD cannot be used yet.
  if (app.cmd === undefined && app.args === undefined) {
    ctx.addIssue({ code: 'custom', path: ['cmd'], message: 'say what to run: `cmd` (a shell command line) or `args` (a program and its arguments)' });
  }
  const bridge = app.container?.docker.network === 'BRIDGE';
  if (bridge && app.ports.length > 0) {
    ctx.addIssue({ code: 'custom', path: ['ports'], message: 'a BRIDGE container takes its host ports from container.docker.portMappings; move them there' });
  }
  if (!bridge && (app.container?.docker.portMappings.length ?? 0) > 0) {
    ctx.addIssue({ code: 'custom', path: ['container', 'docker', 'portMappings'], message: 'port mappings need network: BRIDGE; with HOST networking use `ports`' });
  }
  const ports = declaredPorts(app);
  const names = ports.map((p) => p.name).filter((n) => n !== undefined);
  const duplicate = names.find((n, i) => names.indexOf(n) !== i);
  if (duplicate) ctx.addIssue({ code: 'custom', path: bridge ? ['container', 'docker', 'portMappings'] : ['ports'], message: `the port name ${duplicate} is used twice` });
  const fixed = ports.map((p) => p.hostPort).filter((p) => p !== 0);
  const twice = fixed.find((p, i) => fixed.indexOf(p) !== i);
  if (twice) ctx.addIssue({ code: 'custom', path: bridge ? ['container', 'docker', 'portMappings'] : ['ports'], message: `host port ${twice} is asked for twice` });
  app.healthChecks.forEach((check, i) => {
    if (check.protocol === 'COMMAND' || check.port !== undefined) return;
    if (check.portName !== undefined && !names.includes(check.portName)) {
      ctx.addIssue({ code: 'custom', path: ['healthChecks', i, 'portName'], message: `no port is named ${check.portName}; name one of the app's ports so` });
    } else if (check.portName === undefined && (check.portIndex ?? 0) >= ports.length) {
      ctx.addIssue({ code: 'custom', path: ['healthChecks', i, 'portIndex'], message: `the app has ${ports.length} port(s); declare a port in \`ports\` or give the check a fixed \`port\`` });
    }
  });
  if (app.readinessCheck) {
    const name = app.readinessCheck.portName;
    if (name !== undefined ? !names.includes(name) : ports.length === 0) {
      ctx.addIssue({ code: 'custom', path: ['readinessCheck', 'portName'], message: name !== undefined ? `no port is named ${name}` : 'a readiness check needs a port; declare one in `ports`' });
    }
  }
  if (app.servicePort !== undefined && ports.length === 0) ctx.addIssue({ code: 'custom', path: ['servicePort'], message: 'the service port forwards to the app\'s first port; declare one in `ports`' });
  if (app.dependencies.includes(app.id)) ctx.addIssue({ code: 'custom', path: ['dependencies'], message: 'an app cannot depend on itself' });
});

export type AppDefinition = z.output<typeof appDefinitionSchema>;
/** What a user writes: every field with a default may be left out. */
export type AppDefinitionInput = z.input<typeof appDefinitionSchema>;
export type HealthCheckDefinition = AppDefinition['healthChecks'][number];

/** A host port the app needs: from `ports` (HOST networking) or from the port mappings (BRIDGE). 0 = any. */
export interface DeclaredPort {
  name?: string;
  hostPort: number;
  /** For a BRIDGE mapping, the port inside the container. */
  containerPort?: number;
}

export function declaredPorts(app: Pick<AppDefinition, 'ports' | 'container'>): DeclaredPort[] {
  if (app.container?.docker.network === 'BRIDGE') {
    return app.container.docker.portMappings.map((m) => ({ hostPort: m.hostPort, containerPort: m.containerPort, ...(m.name !== undefined && { name: m.name }) }));
  }
  return app.ports.map((p) => ({ hostPort: p.port, ...(p.name !== undefined && { name: p.name }) }));
}
