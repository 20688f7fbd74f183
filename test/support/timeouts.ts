/** Shared by vitest.config.ts and the leak check, which must recognise vitest's hook timer. */
export const TEST_TIMEOUT_MS = 60_000;
export const HOOK_TIMEOUT_MS = 30_000;
