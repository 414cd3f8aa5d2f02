/**
 * Persistent sessions handed between nodes by a cluster session store (cluster/mqtt-sessions.ts,
 * cluster/DESIGN.md "Orphaned sessions"): what this node does when another node claims a client
 * id it holds (`releaseSession`), and how it adopts the offline sessions of a gone node
 * (`adoptSessions`): each is restored here as an offline session, exactly as if its client had
 * just left this node — its subscriptions in the router (so on the bus), its queue, in-flight
 * state, expiry and delayed will counting from the client's disconnect — and held until its
 * client connects anywhere (a claim, then `releaseSession`).
 */
import { Reason } from './reasons.js';
import type { LoadedSession, SessionStore } from './persist.js';
import type { MqttServer } from './server.js';
import { MqttSession, type SessionLink } from './session.js';

/** What of a connection a takeover needs (connection.ts's MqttConnection). */
interface ClosingLink extends SessionLink {
  disconnect(reason: number, reasonString?: string): void;
  /** Detaches now: the session's last state (disconnected, pending will) is written. */
  finish(): void;
}

/** Another node claims this client id: closes its connection here and lets the session go, once its writes are stored. */
export async function releaseSession(server: MqttServer, clientId: string): Promise<void> {
  const session = server.sessions.get(clientId);
  const link = session?.link as ClosingLink | undefined;
  if (link !== undefined) {
    server.stats.takeovers++;
    link.disconnect(Reason.sessionTakenOver, 'session taken over');
    link.finish();
  }
  server.sessions.get(clientId)?.leave();
  server.sessionStore?.unhold?.(clientId);
  await server.sessionStore?.synced();
}

/** Adoptions in flight at once: each is a few engine round trips, mostly waiting. */
const ADOPT_CONCURRENCY = 32;

/**
 * Adopts the sessions `from` held (a gone node); resolves with the client ids settled (adopted
 * here, ended, or on another node by now). One that fails is logged and left for another survivor.
 */
export async function adoptSessions(server: MqttServer, store: SessionStore, from: string, clientIds: string[], lastSeenMs: number): Promise<string[]> {
  const settled: string[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < clientIds.length) {
      const clientId = clientIds[next++]!;
      try {
        const loaded = await store.adopt!(clientId, from);
        if (loaded !== undefined) keepOffline(server, store, loaded, lastSeenMs);
        settled.push(clientId);
      } catch (err) {
        server.ctx.log.warn({ err, clientId, from }, 'mqtt: adopting the session of a gone node failed (another survivor tries again)');
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(ADOPT_CONCURRENCY, clientIds.length) }, worker));
  return settled;
}

/**
 * Restores a session this node took without a connection (adopted, or its client left during
 * the claim) as offline, and holds it. A session stored while connected lost its connection with
 * its node: its expiry counts from when that node was last heard of, and the connection's will is
 * the bus's (orphan will), not the session's.
 */
export function keepOffline(server: MqttServer, store: SessionStore, loaded: LoadedSession, lastSeenMs: number): void {
  const clientId = loaded.clientId;
  const release = (): Promise<void> => releaseSession(server, clientId);
  if (server.sessions.has(clientId)) return store.hold?.(clientId, release); // already here: held as it is
  if (loaded.connected) {
    loaded.connected = false;
    loaded.disconnectedAtMs = lastSeenMs;
    loaded.will = undefined;
  }
  const session = MqttSession.restore(server, loaded, store, server.ctx.now());
  if (!session.ended) store.hold?.(clientId, release);
}
