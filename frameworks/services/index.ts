/**
 * The services framework's pure core: app definitions, placement constraints, the deployment
 * planner and crash-loop backoff. The scheduler, HTTP API, proxy and CLI build on these.
 *
 * ```ts
 * const app = parseAppDefinition(await readFile('web.yaml', 'utf8'), undefined, 'web.yaml');
 * const deployment = startDeployment({ id: 'd1', appId: app.id, to: { version: 'v1', instances: app.instances }, instances: [], nowMs: Date.now() });
 * const plan = planDeployment({ deployment, instances: [], strategy: app.upgradeStrategy, killSelection: app.killSelection,
 *   inactiveAfterSeconds: app.unreachableStrategy.inactiveAfterSeconds, nowMs: Date.now() });
 * // plan.launch new instances: for each, pick an offer with chooseOffer(app.constraints, offers, placed),
 * // its ports with assignHostPorts(app, offer.resources), and launch taskInfoFor(app, instanceId, ports).
 * ```
 */
export * from './app-definition.ts';
export * from './app-task.ts';
export * from './backoff.ts';
export * from './constraints.ts';
export * from './deployment.ts';
export * from './instances.ts';
export * from './parse-app-definition.ts';
export * from './rolling-update.ts';
export * from './service-api.ts';
