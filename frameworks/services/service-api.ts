/**
 * What the services scheduler offers to its edges (the HTTP API, the service-port proxy, the CLI):
 * one interface, so each edge is written and tested against the real scheduler without knowing its
 * insides. Every change to an app becomes a deployment (Marathon).
 */
import type { TaskState } from '../../master/protocol/messages.ts';
import type { AppDefinition } from './app-definition.ts';
import type { Deployment, DeploymentProgress } from './deployment.ts';

export interface ServiceTask {
  taskId: string;
  instanceId: string;
  appId: string;
  version: string;
  state: TaskState;
  healthy: boolean | undefined;
  ready: boolean | undefined;
  agentId: string;
  host: string;
  /** Host ports, in the order the app declares them. */
  ports: number[];
  startedAtMs: number;
}

export interface DeploymentView extends Deployment {
  progress: DeploymentProgress;
  /** Why a running deployment launches nothing yet, e.g. `waiting for dependency /db: 0 of 1 instances healthy and ready`. */
  waiting?: string;
}

export interface AppStatus {
  app: AppDefinition;
  version: string;
  tasks: ServiceTask[];
  /** The deployment in progress, if any. */
  deployment: DeploymentView | undefined;
}

export interface AppVersion {
  version: string;
  createdAtMs: number;
  app: AppDefinition;
}

export interface Endpoint {
  taskId: string;
  host: string;
  /** The first declared port's host port. */
  port: number;
  ports: number[];
}

export type ServicesEvent =
  | { type: 'app_changed'; appId: string; version: string | undefined /* undefined: deleted */ }
  | { type: 'deployment'; deployment: DeploymentView }
  | { type: 'task'; task: ServiceTask }
  | { type: 'endpoints'; appId: string; endpoints: Endpoint[] };

/** A refusal the edges turn into a status code (404, 409, 422) and a message a person can act on. */
export class ServicesError extends Error {
  override name = 'ServicesError';
  constructor(
    readonly code: 'NOT_FOUND' | 'CONFLICT' | 'INVALID',
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
  }
}

export interface ServicesApi {
  listApps(): Promise<AppStatus[]>;
  getApp(appId: string): Promise<AppStatus | undefined>;
  /**
   * Creates or updates an app: a new version and a deployment to it. A change while another
   * deployment of the app runs is a CONFLICT unless `force` (which stops that one without revert).
   */
  putApp(app: AppDefinition, options?: { force?: boolean }): Promise<DeploymentView>;
  deleteApp(appId: string, options?: { force?: boolean }): Promise<DeploymentView>;
  scale(appId: string, instances: number, options?: { force?: boolean }): Promise<DeploymentView>;
  /** Replaces every instance with a fresh one of the same version, as a rolling deployment. */
  restart(appId: string, options?: { force?: boolean }): Promise<DeploymentView>;
  /** Deploys an earlier version again (the previous one when `toVersion` is not given). */
  rollback(appId: string, toVersion?: string, options?: { force?: boolean }): Promise<DeploymentView>;
  versions(appId: string): Promise<AppVersion[]>;
  listDeployments(): Promise<DeploymentView[]>;
  getDeployment(deploymentId: string): Promise<DeploymentView | undefined>;
  /** Cancel = revert to the version before; `force` = stop where it is, without revert. */
  cancelDeployment(deploymentId: string, options?: { force?: boolean }): Promise<void>;
  tasks(appId?: string): Promise<ServiceTask[]>;
  /** host:port of the app's healthy and ready instances. */
  endpoints(appId: string): Promise<Endpoint[]>;
  /** Returns an unsubscribe function. */
  subscribe(listener: (event: ServicesEvent) => void): () => void;
}
