import assert from 'node:assert/strict';
import { test } from 'node:test';
import { filterProblem, topicMatches, topicProblem } from 'topicast/protocol';

test('topic names: valid and invalid', () => {
  for (const t of ['a', 'a/b', '/a', 'a/', '/', 'a//b', '$SYS/x', 'ü/ñ', ' ']) assert.equal(topicProblem(t), undefined, t);
  assert.match(topicProblem('')!, /empty/);
  assert.match(topicProblem('a/+')!, /wildcard/);
  assert.match(topicProblem('a/#')!, /wildcard/);
  assert.match(topicProblem('a\u0000b')!, /NUL/);
  assert.match(topicProblem('\ud800')!, /UTF-8/);
  assert.match(topicProblem('a'.repeat(11), { maxTopicBytes: 10, maxTopicLevels: 5 })!, /10 bytes/);
  assert.match(topicProblem('ééééé/é', { maxTopicBytes: 10, maxTopicLevels: 5 })!, /10 bytes/, 'UTF-8 bytes, not UTF-16 units');
  assert.match(topicProblem('a/b/c', { maxTopicBytes: 100, maxTopicLevels: 2 })!, /2 levels/);
});

test('filters: wildcard placement rules', () => {
  for (const f of ['#', '+', 'a/#', 'a/+/b', '+/+', '/+', '+/', 'a/+/#', '$SYS/#']) assert.equal(filterProblem(f), undefined, f);
  for (const f of ['a#', 'a/#/b', '#/a', 'a+', 'a/b+/c', '++', '', 'a/##']) assert.notEqual(filterProblem(f), undefined, f);
});

test('topicMatches: the MQTT 3.1.1 §4.7 examples', () => {
  const yes: [string, string][] = [
    ['sport/tennis/player1/#', 'sport/tennis/player1'],
    ['sport/tennis/player1/#', 'sport/tennis/player1/ranking'],
    ['sport/tennis/player1/#', 'sport/tennis/player1/score/wimbledon'],
    ['sport/#', 'sport'],
    ['#', 'a/b/c'],
    ['sport/tennis/+', 'sport/tennis/player1'],
    ['sport/+', 'sport/'],
    ['+/+', '/finance'],
    ['/+', '/finance'],
    ['+', ''.concat('x')],
    ['a/+/c', 'a//c'],
    ['$SYS/#', '$SYS/broker/uptime'],
    ['$SYS/+/uptime', '$SYS/broker/uptime'],
  ];
  const no: [string, string][] = [
    ['sport/tennis/+', 'sport/tennis/player1/ranking'],
    ['sport/+', 'sport'],
    ['+', '/finance'],
    ['a/b', 'a/b/c'],
    ['a/b/c', 'a/b'],
    ['#', '$SYS/broker/uptime'],
    ['+/broker/uptime', '$SYS/broker/uptime'],
    ['+/#', '$SYS'],
  ];
  for (const [f, t] of yes) assert.equal(topicMatches(f, t), true, `${f} should match ${t}`);
  for (const [f, t] of no) assert.equal(topicMatches(f, t), false, `${f} should not match ${t}`);
});
