import { MemoryStore } from '../../frameworks/sdk/store/index.ts';
import { storeContract } from './store-contract.ts';

storeContract('memory store', async () => new MemoryStore(), { propertyRuns: 100 });
