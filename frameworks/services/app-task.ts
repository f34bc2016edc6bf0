/**
 * From an app definition to what the master runs: task ids, the host ports an instance takes from an
 * offer, and the protocol TaskInfo. Pure, so placement can be tested without a cluster.
 */
import { idSchema, normalizeRanges, pickPorts, portsResource, rangesOf, subtract, type Range, type Resources, type HealthCheck, type TaskInfo } from '../sdk/index.ts';
import { declaredPorts, type AppDefinition, type AppId, type HealthCheckDefinition } from './app-definition.ts';

/**
 * `/shop/web` + `a1b2` → `shop_web.a1b2`. App id segments never hold `_` or `.`, so the app id
 * can be read back from the task id (Marathon names tasks the same way).
 */
export function taskIdFor(appId: AppId, instanceId: string): string {
  const taskId = `${appId.slice(1).replaceAll('/', '_')}.${instanceId}`;
  const checked = idSchema.safeParse(taskId);
  if (!checked.success) throw new RangeError(`task id ${JSON.stringify(taskId)} ${checked.error.issues[0]?.message ?? 'is invalid'}`);
  return taskId;
}

/** The app and instance a task id names, or undefined for a task id this framework did not make. */
export function parseTaskId(taskId: string): { appId: AppId; instanceId: string } | undefined {
  const dot = taskId.indexOf('.');
  if (dot <= 0 || dot === taskId.length - 1) return undefined;
  return { appId: `/${taskId.slice(0, dot).replaceAll('_', '/')}`, instanceId: taskId.slice(dot + 1) };
}

/**
 * The host ports an instance takes from an offer's resources, in the app's declared order: fixed
 * ports as declared, each `0` the lowest free port left. Undefined if the offer lacks them.
 *
 * Dynamic ports come out ascending, which matters: the agent numbers PORT0, PORT1… by ascending
 * port, so with no fixed ports PORTn is the n-th declared port. PORT_<NAME> is always exact.
 */
export function assignHostPorts(app: Pick<AppDefinition, 'ports' | 'container'>, offerResources: Resources): number[] | undefined {
  const declared = declaredPorts(app);
  if (declared.length === 0) return [];
  const fixed = declared.map((p) => p.hostPort).filter((p) => p !== 0);
  const offered = normalizeRanges(rangesOf(offerResources, 'ports'));
  if (!fixed.every((port) => offered.some(([b, e]) => port >= b && port <= e))) return undefined;
  const rest = subtract({ ports: offered }, portsResource(fixed));
  let dynamic: number[];
  try {
    dynamic = pickPorts(rest, declared.length - fixed.length);
  } catch {
    return undefined;
  }
  let next = 0;
  return declared.map((p) => (p.hostPort !== 0 ? p.hostPort : dynamic[next++]!));
}

/** The environment name of a port name: `http-admin` → `PORT_HTTP_ADMIN` (Marathon's PORT_<NAME>). */
export function portEnvName(name: string): string {
  return `PORT_${name.toUpperCase().replaceAll('-', '_')}`;
}

export interface TaskInfoOptions {
  /** The app's version (e.g. its definition's timestamp id), exported as AGORA_APP_VERSION. */
  version?: string;
}

/**
 * The TaskInfo for one instance of `app`, given the host ports chosen for it (one per declared
 * port, in declared order — see assignHostPorts).
 */
export function taskInfoFor(app: AppDefinition, instanceId: string, hostPorts: readonly number[], options: TaskInfoOptions = {}): TaskInfo {
  const declared = declaredPorts(app);
  if (hostPorts.length !== declared.length) {
    throw new RangeError(`app ${app.id} declares ${declared.length} port(s) but ${hostPorts.length} host port(s) were given`);
  }
  declared.forEach((port, i) => {
    if (port.hostPort !== 0 && port.hostPort !== hostPorts[i]) throw new RangeError(`app ${app.id} asks for host port ${port.hostPort}, got ${hostPorts[i]}`);
  });

  const resources: Resources = { cpus: app.cpus, mem: app.mem };
  if (app.disk > 0) resources.disk = app.disk;
  if (hostPorts.length > 0) resources.ports = normalizeRanges(hostPorts.map((p): Range => [p, p]));

  const environment: Record<string, string> = { ...app.env, AGORA_APP_ID: app.id };
  if (options.version !== undefined) environment.AGORA_APP_VERSION = options.version;
  declared.forEach((port, i) => {
    if (port.name !== undefined) environment[portEnvName(port.name)] = String(hostPorts[i]);
  });

  const task: TaskInfo = {
    taskId: taskIdFor(app.id, instanceId),
    name: app.id,
    resources,
    command: commandOf(app, environment),
    killPolicy: { gracePeriodMs: Math.round(app.killGracePeriodSeconds * 1000) },
  };
  if (Object.keys(app.labels).length > 0) task.labels = { ...app.labels };
  if (app.container) {
    const { docker, volumes } = app.container;
    task.container = {
      type: 'DOCKER',
      docker: {
        image: docker.image,
        network: docker.network,
        ...(docker.forcePull && { forcePull: true }),
        ...(docker.network === 'BRIDGE' && {
          portMappings: docker.portMappings.map((m, i) => ({ containerPort: m.containerPort, hostPort: hostPorts[i]!, protocol: m.protocol })),
        }),
      },
      ...(volumes.length > 0 && { volumes }),
    };
  }
  const [check] = app.healthChecks;
  if (check) task.healthCheck = healthCheckFor(check, declared.map((p) => p.name), hostPorts);
  return task;
}

function commandOf(app: AppDefinition, environment: Record<string, string>): TaskInfo['command'] {
  if (app.cmd !== undefined) return { value: app.cmd, shell: true, environment };
  // The schema guarantees args when cmd is absent.
  const [program, ...rest] = app.args as [string, ...string[]];
  return { value: program, shell: false, arguments: rest, environment };
}

/**
 * Marathon health check → the protocol's (Mesos') HealthCheck. Ports are resolved to the host
 * port itself rather than a portIndex, because the agent indexes ports in ascending order and a
 * fixed port can break the declared order.
 */
export function healthCheckFor(check: HealthCheckDefinition, portNames: readonly (string | undefined)[], hostPorts: readonly number[]): HealthCheck {
  const timing = {
    delaySeconds: check.delaySeconds,
    intervalSeconds: check.intervalSeconds,
    timeoutSeconds: check.timeoutSeconds,
    gracePeriodSeconds: check.gracePeriodSeconds,
    consecutiveFailures: check.maxConsecutiveFailures,
  };
  if (check.protocol === 'COMMAND') return { type: 'COMMAND', command: { value: check.command!.value }, ...timing };
  const index = check.portName !== undefined ? portNames.indexOf(check.portName) : (check.portIndex ?? 0);
  const port = check.port ?? hostPorts[index];
  if (port === undefined) throw new RangeError(`the health check names port ${check.portName ?? `index ${index}`}, which the app does not declare`);
  return check.protocol === 'HTTP' ? { type: 'HTTP', http: { port, path: check.path }, ...timing } : { type: 'TCP', tcp: { port }, ...timing };
}
