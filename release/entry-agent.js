// Entry of the packaged `topicast-agent` (sdk/src/agent/cli.ts); it needs no native addon.
await import('../sdk/dist/agent/cli.js');
