/** Topics only the broker publishes: `$SYS/...` (DESIGN.md "Topics"), so its figures are never spoofed. */
export function isBrokerTopic(topic: string): boolean {
  return topic === '$SYS' || topic.startsWith('$SYS/');
}
