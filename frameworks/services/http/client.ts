/**
 * A typed client for the services REST API (what `agora app …` uses), and `followDeployment`, which
 * watches one deployment to its end. Errors carry the server's message and per-field problems so a
 * CLI can print them as they are.
 */
import type { FieldProblem } from '../parse-app-definition.ts';
import type { AppStatus, AppVersion, DeploymentView, Endpoint, ServiceTask } from '../service-api.ts';
import { ApiTransport, unreachableReason } from '../../sdk/http/client-kit.ts';

/** The API answered with an error status. */
export class ServicesHttpError extends Error {
  override name = 'ServicesHttpError';
  constructor(
    readonly status: number,
    message: string,
    readonly problems: readonly FieldProblem[] = [],
  ) {
    super(message);
  }
}

/** Nothing answered at the address (not started, wrong port, firewall). */
export class ServicesUnreachableError extends Error {
  override name = 'ServicesUnreachableError';
  constructor(
    readonly url: string,
    options: { cause: unknown },
  ) {
    super(`cannot reach the services API at ${url} (${unreachableReason(options.cause)})`, options);
  }
}

type Force = { force?: boolean };

export class ServicesClient {
  readonly baseUrl: string;
  private readonly transport: ApiTransport;

  constructor(baseUrl: string, options: { timeoutMs?: number } = {}) {
    this.transport = new ApiTransport(baseUrl, {
      ...options,
      unreachable: (cause) => new ServicesUnreachableError(this.baseUrl, { cause }),
      httpError: (status, message, problems) => new ServicesHttpError(status, message, problems),
    });
    this.baseUrl = this.transport.baseUrl;
  }

  async listApps(): Promise<AppStatus[]> {
    return (await this.call<{ apps: AppStatus[] }>('GET', '/v1/apps')).apps;
  }
  async getApp(appId: string): Promise<AppStatus | undefined> {
    return this.transport.find<AppStatus>('GET', `/v1/apps${appPath(appId)}`);
  }
  /** Creates or updates: the body is validated by the server (422 with problems). */
  putApp(appId: string, app: unknown, options: Force = {}): Promise<DeploymentView> {
    return this.call('PUT', `/v1/apps${appPath(appId)}${forceQuery(options)}`, app);
  }
  deleteApp(appId: string, options: Force = {}): Promise<DeploymentView> {
    return this.call('DELETE', `/v1/apps${appPath(appId)}${forceQuery(options)}`);
  }
  scale(appId: string, instances: number, options: Force = {}): Promise<DeploymentView> {
    return this.call('POST', `/v1/apps${appPath(appId)}/scale${forceQuery(options)}`, { instances });
  }
  restart(appId: string, options: Force = {}): Promise<DeploymentView> {
    return this.call('POST', `/v1/apps${appPath(appId)}/restart${forceQuery(options)}`);
  }
  rollback(appId: string, toVersion?: string, options: Force = {}): Promise<DeploymentView> {
    return this.call('POST', `/v1/apps${appPath(appId)}/rollback${forceQuery(options)}`, toVersion === undefined ? undefined : { version: toVersion });
  }
  async versions(appId: string): Promise<AppVersion[]> {
    return (await this.call<{ versions: AppVersion[] }>('GET', `/v1/apps${appPath(appId)}/versions`)).versions;
  }
  async listDeployments(): Promise<DeploymentView[]> {
    return (await this.call<{ deployments: DeploymentView[] }>('GET', '/v1/deployments')).deployments;
  }
  getDeployment(deploymentId: string): Promise<DeploymentView | undefined> {
    return this.transport.find<DeploymentView>('GET', `/v1/deployments/${encodeURIComponent(deploymentId)}`);
  }
  async cancelDeployment(deploymentId: string, options: Force = {}): Promise<void> {
    await this.call('DELETE', `/v1/deployments/${encodeURIComponent(deploymentId)}${forceQuery(options)}`);
  }
  async tasks(appId?: string): Promise<ServiceTask[]> {
    return (await this.call<{ tasks: ServiceTask[] }>('GET', `/v1/tasks${appId ? `?app=${encodeURIComponent(appId)}` : ''}`)).tasks;
  }
  async endpoints(appId: string): Promise<Endpoint[]> {
    return (await this.call<{ endpoints: Endpoint[] }>('GET', `/v1/apps${appPath(appId)}/endpoints`)).endpoints;
  }

  private call<T>(method: string, path: string, body?: unknown): Promise<T> {
    return this.transport.call<T>(method, path, body === undefined ? undefined : { json: body });
  }
}

export type DeploymentOutcome =
  | { ok: true; deployment: DeploymentView }
  | { ok: false; reason: string; deployment: DeploymentView; revert?: DeploymentView };

/**
 * Polls a deployment until it ends, calling `onProgress` whenever its state or progress changes.
 * A failed deployment's outcome names the revert that replaced it, if one started.
 */
export async function followDeployment(
  client: ServicesClient,
  started: DeploymentView,
  onProgress: (deployment: DeploymentView) => void,
  options: { pollMs?: number; signal?: AbortSignal } = {},
): Promise<DeploymentOutcome> {
  const pollMs = options.pollMs ?? 500;
  let last = started;
  let lastKey = '';
  for (;;) {
    options.signal?.throwIfAborted();
    const current = await client.getDeployment(started.id);
    if (current) {
      last = current;
      const key = JSON.stringify([current.state, current.progress]);
      if (key !== lastKey) {
        lastKey = key;
        onProgress(current);
      }
      if (current.state === 'succeeded') return { ok: true, deployment: current };
      if (current.state === 'failed') {
        const revert = (await client.listDeployments()).find((d) => d.revertOf === current.id);
        return { ok: false, reason: current.reason ?? 'the deployment failed', deployment: current, ...(revert && { revert }) };
      }
    } else {
      return outcomeOfVanished(client, last);
    }
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
}

/** The scheduler no longer knows the deployment (history trimmed, cancelled): judge by the app. */
async function outcomeOfVanished(client: ServicesClient, last: DeploymentView): Promise<DeploymentOutcome> {
  const revert = (await client.listDeployments()).find((d) => d.revertOf === last.id);
  if (revert) return { ok: false, reason: last.reason ?? 'the deployment failed', deployment: last, revert };
  const status = await client.getApp(last.appId);
  if (!status) {
    return last.to.instances === 0
      ? { ok: true, deployment: { ...last, state: 'succeeded' } }
      : { ok: false, reason: `the app ${last.appId} was deleted while deploying`, deployment: last };
  }
  if (status.version === last.to.version && status.app.instances === last.to.instances && !status.deployment) {
    return { ok: true, deployment: { ...last, state: 'succeeded' } };
  }
  return {
    ok: false,
    reason: `deployment ${last.id} was cancelled or replaced; ${last.appId} is at version ${status.version}${status.deployment ? `, now deploying ${status.deployment.id}` : ''}`,
    deployment: last,
  };
}

function appPath(appId: string): string {
  const id = appId.startsWith('/') ? appId : `/${appId}`;
  return id.split('/').map(encodeURIComponent).join('/');
}

function forceQuery(options: Force): string {
  return options.force ? '?force=true' : '';
}
