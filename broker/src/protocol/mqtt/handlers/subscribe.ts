/**
 * SUBSCRIBE (MQTT 5 §3.8): one SUBACK code per filter, in order [MQTT-3.8.4-6],
 * with the request's packet id [MQTT-3.8.4-2]; then the retained messages the
 * retain handling option asks for, flagged retained [MQTT-3.3.1-8].
 * `$share/{name}/{filter}` joins a shared subscription group (shared.ts), in 3.1.1 too.
 * Retained messages at QoS 0 are paced through the outbox (never dropped);
 * at QoS 1/2 they go through the session's in-flight window like live ones.
 * A persisted session (persist.ts) answers once its new subscriptions are durable, so a
 * subscription acknowledged before a crash is active after the restart.
 */
import type mqtt from 'mqtt-packet';
import type { Message } from '../../../core/message.js';
import { checkFilter } from '../../../session/limits.js';
import type { MqttLink } from '../link.js';
import { Reason, SUBACK_FAILURE_V4 } from '../reasons.js';
import type { MqttSubscriptionOptions } from '../session.js';
import { parseShared } from '../shared.js';
import { inOrder } from './publish.js';

/** Subscription Identifier range (MQTT 5 §3.8.2.1.2): a Variable Byte Integer of 1 to 268,435,455. */
const MAX_SUBSCRIPTION_ID = 268_435_455;

export function onSubscribe(c: MqttLink, p: mqtt.ISubscribePacket): void {
  const cluster = c.server.ctx.cluster;
  if (cluster !== undefined) {
    // With a cluster bus, a filter this node does not mirror yet waits for the bus's retained values
    // (cluster/bridge.ts); later packets wait behind it. Without one this stays synchronous.
    // Only filters this SUBSCRIBE will grant: a denied one must not draw the cluster's traffic here.
    const limits = c.server.ctx.topicLimits;
    const permissions = c.session?.permissions;
    const filters = p.subscriptions
      .filter((s) => !s.topic.startsWith('$share/') && (c.version !== 5 || s.rh !== 2) && checkFilter(s.topic, limits) === undefined
        && permissions?.canSubscribe(s.topic) !== 'deny')
      .map((s) => s.topic);
    const mirrored = cluster.prepare(filters);
    if (mirrored !== undefined) {
      c.holdPackets(mirrored.then(() => {
        if (c.isOpen) subscribeNow(c, p);
      }));
      return;
    }
  }
  subscribeNow(c, p);
}

function subscribeNow(c: MqttLink, p: mqtt.ISubscribePacket): void {
  const { server } = c;
  const { ctx } = server;
  const session = c.session!;
  const v5 = c.version === 5;
  const id = p.messageId ?? 0;
  if (id === 0) return c.disconnect(Reason.protocolError, 'packet identifier 0'); // [MQTT-2.3.1-1]
  if (p.subscriptions.length === 0) return c.disconnect(Reason.protocolError, 'SUBSCRIBE without a topic filter'); // [MQTT-3.8.3-3] (5: [MQTT-3.8.3-2])
  const subscriptionId = v5 ? p.properties?.subscriptionIdentifier : undefined;
  if (subscriptionId !== undefined && (subscriptionId < 1 || subscriptionId > MAX_SUBSCRIPTION_ID)) {
    return c.disconnect(Reason.protocolError, 'subscription identifier out of range');
  }
  const fail = (reason: number): number => (v5 ? reason : SUBACK_FAILURE_V4);
  const granted: number[] = [];
  const retainedFor: { filter: string; options: MqttSubscriptionOptions }[] = [];
  for (const s of p.subscriptions) {
    const filter = s.topic;
    const shared = parseShared(filter);
    if (shared === 'invalid' || checkFilter(shared?.filter ?? filter, ctx.topicLimits) !== undefined || checkFilter(filter, ctx.topicLimits) !== undefined) {
      granted.push(fail(Reason.topicFilterInvalid)); // [MQTT-3.8.3-1] [MQTT-4.8.2-1] [MQTT-4.8.2-2]
      continue;
    }
    if (shared && v5 && s.nl === true) return c.disconnect(Reason.protocolError, 'No Local on a shared subscription'); // [MQTT-3.8.3-4]
    const known = shared ? session.sharedSubscriptions.has(filter) : session.subscription(filter) !== undefined;
    if (!known && session.subscriptionCount >= c.server.limits.maxSubscriptionsPerConnection) {
      granted.push(fail(Reason.quotaExceeded));
      continue;
    }
    const decision = session.permissions?.canSubscribe(shared?.filter ?? filter) ?? 'allow';
    if (decision === 'deny') {
      ctx.auth.stats.denied++;
      granted.push(fail(Reason.notAuthorized));
      continue;
    }
    const retainHandling = v5 ? ((s.rh ?? 0) as 0 | 1 | 2) : 0;
    if ((retainHandling as number) === 3) return c.disconnect(Reason.malformedPacket, 'retain handling 3'); // MQTT 5 §3.8.3.1
    const options: MqttSubscriptionOptions = {
      qos: s.qos, // every QoS is supported: granted as requested [MQTT-3.8.4-6]
      noLocal: v5 && s.nl === true,
      retainAsPublished: v5 && s.rap === true,
      subscriptionId,
      retainHandling,
    };
    const isNew = session.subscribe(filter, options);
    if (decision === 'filtered') session.ownFiltered().add(filter);
    else session.filtered.delete(filter);
    granted.push(s.qos);
    if (shared) continue; // MQTT 5 §4.8.2: retained messages are not sent for a shared subscription
    // [MQTT-3.3.1-9] rh 0: always; [MQTT-3.3.1-10] rh 1: only if new; [MQTT-3.3.1-11] rh 2: never.
    if (retainHandling === 0 || (retainHandling === 1 && isNew)) retainedFor.push({ filter, options });
  }
  inOrder(c, session.saveMeta(), function sendSuback() {
    c.sendPacket({ cmd: 'suback', messageId: id, granted }); // [MQTT-3.8.4-1]
    sendRetained(c, retainedFor);
  });
}

/** The retained messages each new subscription asked for [MQTT-3.3.1-9] [MQTT-3.3.1-10]. */
function sendRetained(c: MqttLink, retainedFor: { filter: string; options: MqttSubscriptionOptions }[]): void {
  const { ctx } = c.server;
  const session = c.session;
  if (!session) return;
  const store = ctx.router.retained;
  if (store.size === 0) return;
  for (const { filter, options } of retainedFor) {
    const qos0: Message[] = [];
    const ids = options.subscriptionId === undefined ? undefined : [options.subscriptionId];
    for (const topic of store.match(filter)) {
      const message = store.get(topic);
      if (!message) continue;
      if (session.permissions && !session.permissions.canRead(topic)) {
        ctx.auth.stats.withheld++;
        continue;
      }
      const expiresAt = message.properties?.expiresAt;
      if (expiresAt !== undefined && expiresAt < ctx.now()) continue; // [MQTT-3.3.2-5] an expired retained message is not sent
      const qos = Math.min(options.qos, message.qos) as 0 | 1 | 2;
      if (qos === 0) qos0.push(message);
      else session.offer({ message, qos, retain: true, subscriptionIds: ids });
    }
    if (qos0.length > 0) c.outbox.pushSource(c.retainedSource(qos0, ids));
  }
}
