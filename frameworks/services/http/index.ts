/**
 * The services framework's HTTP edge: the REST API and event streams over a `ServicesApi`, and the
 * typed client the CLI uses.
 *
 * ```ts
 * const services = await startServicesFramework({ master: 'ws://127.0.0.1:5050' });
 * const http = await startServicesHttp({ api: services.api, port: 5051 });
 * const proxy = new ServicePortProxy({ api: services.api }); // ../proxy.ts: one TCP listener per servicePort
 * await proxy.start();
 * const client = new ServicesClient(http.url);
 * const deployment = await client.putApp('/web', { id: '/web', cmd: 'python3 -m http.server $PORT0', ports: [{}] });
 * await followDeployment(client, deployment, (d) => console.log(d.progress));
 * ```
 */
export { HttpError, MAX_BODY_BYTES } from '../../sdk/http/body.ts';
export { followDeployment, ServicesClient, ServicesHttpError, ServicesUnreachableError, type DeploymentOutcome } from './client.ts';
export { ROUTES, startServicesHttp, type ServicesHttp, type ServicesHttpOptions } from './server.ts';
