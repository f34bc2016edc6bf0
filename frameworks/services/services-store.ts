/**
 * The services framework's layout in its Store. Everything the scheduler must not forget across a
 * restart lives here; task states do not (the master reconciles them):
 *
 *   framework                          { id }                      the framework id to resume
 *   apps/<app>                         StoredApp                   the current definition + version
 *   versions/<app>/<version>           AppVersion                  every version deployed (rollback)
 *   deployments/<id>                   Deployment                  running ones, and recent history
 *   instances/<app>/<instanceId>       StoredInstance              written BEFORE its task is launched
 *
 * `<app>` is the app id with `/` → `_` (`/shop/web` → `shop_web`, the task id prefix; app ids hold no
 * `_`). The instance record is a write-ahead log entry: a scheduler that dies between writing it and
 * launching finds it on restart, asks the master about the task, and learns it never ran (UNKNOWN)
 * instead of launching a second copy of something that did.
 */
import type { Store, StoreWrite } from '../sdk/index.ts';
import { validateAppDefinition } from './parse-app-definition.ts';
import type { AppDefinition, AppId } from './app-definition.ts';
import type { Deployment } from './deployment.ts';
import type { AppVersion } from './service-api.ts';

export interface StoredApp {
  app: AppDefinition;
  /** The version running instances must have (its definition is `versions/<app>/<version>`, with this app's instance count). */
  version: string;
  /** A delete deployment is bringing it to 0; the records go when it succeeds. */
  deleting?: boolean;
}

export interface StoredInstance {
  instanceId: string;
  appId: AppId;
  taskId: string;
  version: string;
  agentId: string;
  hostname: string;
  attributes: Record<string, string>;
  /** Host ports in the app's declared order. */
  ports: number[];
  startedAtMs: number;
  /** A kill was sent because the scheduler gave up on it (unreachable too long, scaled away, replaced). */
  killRequested?: boolean;
}

export function appKey(appId: AppId): string {
  return appId.slice(1).replaceAll('/', '_');
}

export const keys = {
  framework: 'framework',
  app: (appId: AppId) => `apps/${appKey(appId)}`,
  version: (appId: AppId, version: string) => `versions/${appKey(appId)}/${version}`,
  versions: (appId: AppId) => `versions/${appKey(appId)}/`,
  deployment: (id: string) => `deployments/${id}`,
  instance: (appId: AppId, instanceId: string) => `instances/${appKey(appId)}/${instanceId}`,
  instances: (appId: AppId) => `instances/${appKey(appId)}/`,
};

export interface ServicesState {
  frameworkId: string | undefined;
  apps: StoredApp[];
  deployments: Deployment[];
  instances: StoredInstance[];
}

/** Loads everything but the versions (read on demand). Definitions are validated again: a store is input too. */
export async function loadState(store: Store): Promise<ServicesState> {
  const [framework, apps, deployments, instances] = await Promise.all([
    store.get(keys.framework),
    store.list('apps/'),
    store.list('deployments/'),
    store.list('instances/'),
  ]);
  const frameworkId = (framework?.value as { id?: unknown } | undefined)?.id;
  return {
    frameworkId: typeof frameworkId === 'string' ? frameworkId : undefined,
    apps: apps.map((entry) => {
      const stored = entry.value as StoredApp;
      return { ...stored, app: validateAppDefinition(asDefinitionInput(stored.app), `store key ${entry.key}`) };
    }),
    deployments: deployments.map((entry) => entry.value as Deployment),
    instances: instances.map((entry) => entry.value as StoredInstance),
  };
}

export async function loadVersions(store: Store, appId: AppId): Promise<AppVersion[]> {
  const entries = await store.list(keys.versions(appId));
  return entries.map((entry) => entry.value as AppVersion).sort((a, b) => a.createdAtMs - b.createdAtMs || (a.version < b.version ? -1 : 1));
}

export function putApp(stored: StoredApp): StoreWrite {
  return { op: 'put', key: keys.app(stored.app.id), value: stored };
}

export function putVersion(version: AppVersion): StoreWrite {
  return { op: 'put', key: keys.version(version.app.id, version.version), value: version };
}

export function putDeployment(deployment: Deployment): StoreWrite {
  // Infinity (bestDistance before the first plan) has no JSON form.
  const value = Number.isFinite(deployment.bestDistance) ? deployment : { ...deployment, bestDistance: Number.MAX_SAFE_INTEGER };
  return { op: 'put', key: keys.deployment(deployment.id), value };
}

export function putInstance(instance: StoredInstance): StoreWrite {
  return { op: 'put', key: keys.instance(instance.appId, instance.instanceId), value: instance };
}

export function deleteInstance(instance: Pick<StoredInstance, 'appId' | 'instanceId'>): StoreWrite {
  return { op: 'delete', key: keys.instance(instance.appId, instance.instanceId) };
}

/**
 * A validated definition back in the form the schema reads, so it can be validated again (the
 * edges may hand over either): constraints are tuples on input and objects once parsed.
 */
export function asDefinitionInput(app: unknown): unknown {
  if (typeof app !== 'object' || app === null || !Array.isArray((app as { constraints?: unknown }).constraints)) return app;
  const constraints = (app as { constraints: unknown[] }).constraints.map((c) => {
    if (typeof c !== 'object' || c === null || Array.isArray(c)) return c;
    const { field, operator, value } = c as { field?: unknown; operator?: unknown; value?: unknown };
    return value === undefined ? [field, operator] : [field, operator, value];
  });
  return { ...app, constraints };
}
