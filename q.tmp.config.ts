import { defineConfig } from 'vitest/config';
export default defineConfig({ test: { include: ['test/unit/learned.test.ts'], testTimeout: 120_000 } });
