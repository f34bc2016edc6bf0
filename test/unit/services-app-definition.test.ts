import { describe, expect, it } from 'vitest';
import { taskInfoSchema } from '../../master/protocol/index.ts';
import { AppDefinitionError, parseAppDefinition, validateAppDefinition } from '../../frameworks/services/parse-app-definition.ts';
import { assignHostPorts, parseTaskId, taskIdFor, taskInfoFor } from '../../frameworks/services/app-task.ts';

function problemsOf(text: string): string[] {
  try {
    parseAppDefinition(text);
  } catch (error) {
    if (error instanceof AppDefinitionError) return error.problems.map((p) => `${p.field}: ${p.message}`);
    throw error;
  }
  throw new Error('expected the definition to be refused');
}

describe('parseAppDefinition', () => {
  it('fills in Marathon defaults for a minimal YAML definition', () => {
    const app = parseAppDefinition('id: /shop/web\ncmd: ./serve\n');
    expect(app).toMatchObject({
      id: '/shop/web',
      instances: 1,
      cpus: 1,
      mem: 128,
      disk: 0,
      ports: [],
      env: {},
      role: '*',
      constraints: [],
      healthChecks: [],
      upgradeStrategy: { minimumHealthCapacity: 1, maximumOverCapacity: 1, progressDeadlineSeconds: 600, autoRevert: false },
      backoff: { seconds: 1, factor: 1.15, maxLaunchDelaySeconds: 300 },
      killGracePeriodSeconds: 3,
      killSelection: 'YOUNGEST_FIRST',
      unreachableStrategy: { inactiveAfterSeconds: 0 },
      dependencies: [],
    });
  });

  it('reads JSON too, and a relative id becomes absolute', () => {
    const app = parseAppDefinition('{"id": "web", "args": ["httpd", "-f"], "instances": 3}');
    expect(app).toMatchObject({ id: '/web', args: ['httpd', '-f'], instances: 3 });
    expect(parseAppDefinition('id: web\ncmd: x', 'yaml').id).toBe('/web');
  });

  it('reads a full definition: container, named ports, constraints, checks, strategies', () => {
    const app = parseAppDefinition(`
id: /shop/api
instances: 4
cmd: httpd -f -p 8080
container:
  docker:
    image: busybox:agora
    network: BRIDGE
    portMappings: [{ containerPort: 8080, name: http }, { containerPort: 9090, hostPort: 31999, name: admin }]
cpus: 0.5
mem: 64
env: { MODE: prod }
labels: { team: shop }
constraints:
  - [hostname, unique]
  - [zone, GROUP_BY, 3]
  - [rack, LIKE, "r[12]"]
healthChecks:
  - { protocol: HTTP, path: /health, portName: http, gracePeriodSeconds: 5, intervalSeconds: 2 }
readinessCheck: { path: /ready, portName: http }
upgradeStrategy: { minimumHealthCapacity: 0.5, maximumOverCapacity: 0.2, autoRevert: true }
backoff: { seconds: 2 }
killSelection: OLDEST_FIRST
servicePort: 10080
dependencies: [/shop/db]
`);
    expect(app.constraints).toEqual([
      { field: 'hostname', operator: 'UNIQUE' },
      { field: 'zone', operator: 'GROUP_BY', value: '3' },
      { field: 'rack', operator: 'LIKE', value: 'r[12]' },
    ]);
    expect(app.upgradeStrategy).toEqual({ minimumHealthCapacity: 0.5, maximumOverCapacity: 0.2, progressDeadlineSeconds: 600, autoRevert: true });
    expect(app.backoff).toEqual({ seconds: 2, factor: 1.15, maxLaunchDelaySeconds: 300 });
    expect(app.healthChecks[0]).toMatchObject({ protocol: 'HTTP', path: '/health', maxConsecutiveFailures: 3, timeoutSeconds: 20, delaySeconds: 15 });
    expect(app.readinessCheck).toMatchObject({ httpStatusCodesForReady: [200], intervalSeconds: 30 });
  });

  it('names the field and what to do for out-of-range values', () => {
    expect(problemsOf('id: /a\ncmd: x\nupgradeStrategy: { minimumHealthCapacity: 1.5 }')).toEqual([
      'upgradeStrategy.minimumHealthCapacity: must be between 0 and 1 (a fraction of instances)',
    ]);
    expect(problemsOf('id: /a\ncmd: x\ninstances: -1\nmem: 0')).toEqual(['instances: must be 0 or more', 'mem: must be more than 0 MB']);
  });

  it('suggests the field a typo meant, and refuses unknown fields', () => {
    expect(problemsOf('id: /a\ncmd: x\ninstance: 3\nupgradeStrategy: { minimumHealthCapacty: 1 }\nfoo: 1')).toEqual([
      'upgradeStrategy.minimumHealthCapacty: unknown field; did you mean minimumHealthCapacity?',
      'instance: unknown field; did you mean instances?',
      'foo: unknown field; remove it',
    ]);
  });

  it('reports a missing id, a wrong type and a missing command', () => {
    expect(problemsOf('cpus: many')).toEqual(['id: is required', 'cpus: must be a number, got a string']);
    // Checks across fields run once each field is valid on its own.
    expect(problemsOf('id: /a')).toEqual(['cmd: say what to run: `cmd` (a shell command line) or `args` (a program and its arguments)']);
    expect(problemsOf('id: /a\ncmd: x\nargs: [y]')).toEqual(['args: give `cmd` (a shell command line) or `args` (a program and its arguments), not both']);
  });

  it('checks app ids', () => {
    expect(problemsOf('id: /Shop/web_1\ncmd: x')[0]).toMatch(/^id: must be a path like \/shop\/web/);
    expect(problemsOf('id: /shop//web\ncmd: x')[0]).toMatch(/^id: must be a path/);
    expect(problemsOf('id: /shop/web\ncmd: x\ndependencies: [/shop/web]')).toEqual(['dependencies: an app cannot depend on itself']);
  });

  it('checks constraints operator by operator', () => {
    const bad = problemsOf(`id: /a
cmd: x
constraints:
  - [hostname, UNIQ]
  - [hostname, UNIQUE, x]
  - [rack, MAX_PER]
  - [rack, LIKE, "r[1"]
  - [zone, IS]
  - [zone, GROUP_BY, two]
`);
    expect(bad).toEqual([
      'constraints[0][1]: unknown operator "UNIQ"; use one of UNIQUE, CLUSTER, GROUP_BY, LIKE, UNLIKE, MAX_PER, IS',
      'constraints[1][2]: UNIQUE takes no value: [field, "UNIQUE"]',
      'constraints[2][2]: MAX_PER needs a positive number, e.g. [rack, MAX_PER, 2]',
      expect.stringMatching(/^constraints\[3\]\[2\]: LIKE needs a valid regular expression/),
      'constraints[4][2]: IS needs a value, e.g. [zone, IS, a]',
      'constraints[5][2]: GROUP_BY takes an optional number of groups, e.g. [zone, GROUP_BY, 3]',
    ]);
  });

  it('checks ports against health checks, readiness, service port and networking', () => {
    expect(problemsOf('id: /a\ncmd: x\nhealthChecks: [{ protocol: HTTP }]')).toEqual([
      "healthChecks[0].portIndex: the app has 0 port(s); declare a port in `ports` or give the check a fixed `port`",
    ]);
    expect(problemsOf('id: /a\ncmd: x\nports: [{name: http}]\nhealthChecks: [{ protocol: TCP, portName: web }]')).toEqual([
      "healthChecks[0].portName: no port is named web; name one of the app's ports so",
    ]);
    expect(problemsOf('id: /a\ncmd: x\nhealthChecks: [{ protocol: COMMAND }]')).toEqual(['healthChecks[0].command: a COMMAND check needs `command: {value: "…"}`']);
    expect(problemsOf('id: /a\ncmd: x\nservicePort: 80')).toEqual(["servicePort: the service port forwards to the app's first port; declare one in `ports`"]);
    expect(problemsOf('id: /a\ncmd: x\nreadinessCheck: {}')).toEqual(['readinessCheck.portName: a readiness check needs a port; declare one in `ports`']);
    expect(problemsOf('id: /a\ncmd: x\nports: [{name: a}, {name: a}]')).toEqual(['ports: the port name a is used twice']);
    expect(problemsOf('id: /a\ncmd: x\nports: [{port: 80}]\ncontainer: {docker: {image: i, network: BRIDGE}}')).toEqual([
      'ports: a BRIDGE container takes its host ports from container.docker.portMappings; move them there',
    ]);
    expect(problemsOf('id: /a\ncmd: x\nhealthChecks: [{protocol: TCP, port: 80}, {protocol: TCP, port: 81}]')).toEqual([
      'healthChecks: Agora runs one health check per task (as Mesos does); keep one',
    ]);
  });

  it('reports YAML and JSON syntax errors with their position, and non-objects', () => {
    expect(problemsOf('id: [/a\ncmd: x')[0]).toMatch(/^: is not valid YAML \(line \d+, column \d+\)/);
    expect(problemsOf('{"id": "/a",}')[0]).toMatch(/^: is not valid JSON/);
    expect(problemsOf('- a\n- b')).toEqual([': must be an object with at least `id` and `cmd` or `args`']);
  });

  it('puts every problem and the source into one message', () => {
    const error = (() => {
      try {
        validateAppDefinition({ id: '/a', cmd: 'x', cpus: 0, killSelection: 'RANDOM' }, 'web.yaml');
      } catch (e) {
        return e as Error;
      }
    })();
    expect(error?.message).toBe('invalid app definition in web.yaml:\n  cpus: must be more than 0\n  killSelection: must be YOUNGEST_FIRST or OLDEST_FIRST');
  });
});

describe('task ids', () => {
  it('round-trips an app id and an instance id through a task id', () => {
    expect(taskIdFor('/shop/web', 'k2x9')).toBe('shop_web.k2x9');
    expect(parseTaskId('shop_web.k2x9')).toEqual({ appId: '/shop/web', instanceId: 'k2x9' });
    expect(parseTaskId('hello-1')).toBeUndefined();
  });
});

describe('assignHostPorts', () => {
  const app = parseAppDefinition('id: /a\ncmd: x\nports: [{name: http}, {port: 31005, name: admin}, {}]');
  it('takes fixed ports as declared and the lowest free ports for the rest, in declared order', () => {
    expect(assignHostPorts(app, { ports: [[31000, 31010]] })).toEqual([31000, 31005, 31001]);
    expect(assignHostPorts(app, { ports: [[31004, 31006]] })).toEqual([31004, 31005, 31006]);
  });
  it('returns undefined when the offer lacks a fixed port or enough ports', () => {
    expect(assignHostPorts(app, { ports: [[31000, 31004]] })).toBeUndefined();
    expect(assignHostPorts(app, { ports: [[31005, 31006]] })).toBeUndefined();
    expect(assignHostPorts(parseAppDefinition('id: /b\ncmd: x'), {})).toEqual([]);
  });
});

describe('taskInfoFor', () => {
  it('builds a valid TaskInfo for a process app: resources with ports, command, env, health check, kill policy', () => {
    const app = parseAppDefinition(`
id: /shop/web
cmd: ./serve --port $PORT_HTTP
cpus: 0.25
mem: 64
disk: 10
ports: [{ name: http }, { name: metrics-admin }]
env: { MODE: prod }
labels: { team: shop }
killGracePeriodSeconds: 7.5
healthChecks: [{ protocol: HTTP, path: /health, portName: metrics-admin }]
`);
    const task = taskInfoFor(app, 'i1', [31002, 31001], { version: 'v7' });
    expect(taskInfoSchema.parse(task)).toEqual(task);
    expect(task).toEqual({
      taskId: 'shop_web.i1',
      name: '/shop/web',
      resources: { cpus: 0.25, mem: 64, disk: 10, ports: [[31001, 31002]] },
      command: {
        value: './serve --port $PORT_HTTP',
        shell: true,
        environment: { MODE: 'prod', AGORA_APP_ID: '/shop/web', AGORA_APP_VERSION: 'v7', PORT_HTTP: '31002', PORT_METRICS_ADMIN: '31001' },
      },
      killPolicy: { gracePeriodMs: 7500 },
      labels: { team: 'shop' },
      healthCheck: { type: 'HTTP', http: { port: 31001, path: '/health' }, delaySeconds: 15, intervalSeconds: 60, timeoutSeconds: 20, gracePeriodSeconds: 300, consecutiveFailures: 3 },
    });
  });

  it('builds a Docker bridge task whose port mappings carry the chosen host ports', () => {
    const app = parseAppDefinition(`
id: /web
args: [httpd, -f, -p, "8080"]
container: { docker: { image: busybox:agora, network: BRIDGE, portMappings: [{ containerPort: 8080, name: http }] } }
healthChecks: [{ protocol: TCP }]
`);
    const task = taskInfoFor(app, 'x', [31500]);
    expect(taskInfoSchema.parse(task)).toEqual(task);
    expect(task.command).toEqual({ value: 'httpd', shell: false, arguments: ['-f', '-p', '8080'], environment: { AGORA_APP_ID: '/web', PORT_HTTP: '31500' } });
    expect(task.container).toEqual({ type: 'DOCKER', docker: { image: 'busybox:agora', network: 'BRIDGE', portMappings: [{ containerPort: 8080, hostPort: 31500, protocol: 'tcp' }] } });
    expect(task.healthCheck).toMatchObject({ type: 'TCP', tcp: { port: 31500 } });
  });

  it('maps a COMMAND check and refuses host ports that do not fit the app', () => {
    const app = parseAppDefinition('id: /a\ncmd: x\nports: [{port: 8080}]\nhealthChecks: [{protocol: COMMAND, command: {value: "test -f ok"}}]');
    expect(taskInfoFor(app, 'i', [8080]).healthCheck).toMatchObject({ type: 'COMMAND', command: { value: 'test -f ok' } });
    expect(() => taskInfoFor(app, 'i', [])).toThrow(/declares 1 port\(s\) but 0 host port\(s\) were given/);
    expect(() => taskInfoFor(app, 'i', [9090])).toThrow(/asks for host port 8080, got 9090/);
  });
});
