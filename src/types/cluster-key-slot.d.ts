// cluster-key-slot ships no types: the slot (0–16383) Redis Cluster gives a key.
declare module 'cluster-key-slot' {
  function generate(key: string | Buffer): number;
  export = generate;
}
