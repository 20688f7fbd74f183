/**
 * Resources created inside `untracked()` belong to the harness (a test file's own Redis,
 * restarted by a test), not to the test, so the leak check ignores them. Kept free of
 * vitest so benches and examples can share the Redis harness.
 */
let depth = 0;

export function untracked<T>(create: () => T): T {
  depth++;
  try {
    return create();
  } finally {
    depth--;
  }
}

export function isUntracked(): boolean {
  return depth > 0;
}
