#!/usr/bin/env node
// The `agora` command after `npm link`: runs bin/agora.ts through tsx, resolved from this package,
// so it works from any directory.
import { register } from 'tsx/esm/api';

register();
await import('./agora.ts');
