/** Runs N copies of a shell command on an Agora cluster and exits 0 if all of them finished well. */
import { parseArgs } from 'node:util';
import { firstFit, isTerminal, SchedulerDriver, type TaskSpec } from '../../frameworks/sdk/index.ts';

const { values } = parseArgs({
  options: {
    master: { type: 'string', default: 'ws://127.0.0.1:5050' },
    tasks: { type: 'string', default: '5' },
    cmd: { type: 'string', default: 'echo hello from $AGORA_TASK_ID' },
  },
});
const count = Number(values.tasks);
if (!Number.isInteger(count) || count < 1) throw new Error(`--tasks must be a positive integer, got ${values.tasks}`);

let pending: TaskSpec[] = Array.from({ length: count }, (_, i) => ({
  taskId: `hello-${i + 1}`,
  resources: { cpus: 0.1, mem: 32 },
  command: { value: values.cmd },
}));
const succeeded = new Map<string, boolean>(); // taskId → ended FINISHED

const driver = new SchedulerDriver({
  master: values.master,
  framework: { name: 'hello' },
  handlers: {
    offers(offers, driver) {
      const { launches, unplaced } = firstFit(pending, offers);
      for (const { offer, tasks } of launches) driver.launch(offer, tasks);
      pending = unplaced; // offers we did not launch on are declined by the driver
      if (pending.length === 0) driver.suppress();
    },
    async update(status, driver) {
      console.log(`${status.taskId} ${status.state}${status.message ? ` (${status.message})` : ''}`);
      if (!isTerminal(status.state) || succeeded.has(status.taskId)) return;
      succeeded.set(status.taskId, status.state === 'FINISHED');
      if (succeeded.size < count) return;
      const failed = [...succeeded.values()].filter((ok) => !ok).length;
      console.log(failed === 0 ? `all ${count} tasks finished` : `${failed} of ${count} tasks failed`);
      process.exitCode = failed === 0 ? 0 : 1;
      driver.acknowledge(status); // the driver would ack after we return, but we stop first
      await driver.stop({ teardown: true });
    },
  },
});
console.log(`framework ${await driver.start()} subscribed to ${values.master}`);
