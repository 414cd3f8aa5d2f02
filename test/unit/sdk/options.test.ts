/**
 * topicast/options: the one argv tokenizer of the broker, `topicast pub|sub` and `topicast-agent`.
 * Examples for each rule, then properties: every command line written from valid specs by the
 * documented forms tokenizes back to what was written, and no argv makes it throw or report a
 * problem on more than one line.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { last, tokenize, type OptionSpec, type OptionValue } from 'topicast/options';

const SPECS: readonly OptionSpec[] = [
  { name: 'topic', short: 't', value: 'required' },
  { name: 'retain', short: 'r' },
  { name: 'homeassistant', value: 'optional' },
  { name: 'agent', value: 'attached' },
];

const entries = (argv: string[], specs = SPECS) => {
  const t = tokenize(argv, specs);
  return { values: Object.fromEntries(t.values), positionals: t.positionals, problem: t.problem && { kind: t.problem.kind, message: t.problem.message, index: t.problem.index } };
};

test('each value kind, in each of its forms', () => {
  assert.deepEqual(entries(['-t', 'a', '--topic', 'b', '--topic=c=d', '--topic=', '-r', '--retain']).values, { topic: ['a', 'b', 'c=d', ''], retain: [true, true] });
  assert.deepEqual(entries(['--homeassistant']).values, { homeassistant: [true] });
  assert.deepEqual(entries(['--homeassistant', 'ha', '-r']).values, { homeassistant: ['ha'], retain: [true] });
  assert.deepEqual(entries(['--homeassistant', '-r']).values, { homeassistant: [true], retain: [true] }, 'an option after it is not its value');
  assert.deepEqual(entries(['--homeassistant=', '--homeassistant=x']).values, { homeassistant: ['', 'x'] });
  assert.deepEqual(entries(['--agent', '--agent=false']).values, { agent: [true, 'false'] });
  assert.deepEqual(entries(['-t', '-5', '-t', '-']).values, { topic: ['-5', '-'] }, 'one dash is a value unless it is a declared alias');
  assert.deepEqual(entries(['--topic=--x', '--topic=-r']).values, { topic: ['--x', '-r'] }, 'attached, any value');
});

test('the first problem stops the parse: its kind, one line, where it is, and what came before it', () => {
  assert.deepEqual(entries(['-r', '--nope=1', '-t', 'a']), { values: { retain: [true] }, positionals: [], problem: { kind: 'unknown-option', message: 'unknown option --nope', index: 1 } });
  assert.deepEqual(entries(['-x']).problem, { kind: 'unknown-option', message: 'unknown option -x', index: 0 });
  assert.deepEqual(entries(['-rt']).problem, { kind: 'unknown-option', message: 'unknown option -rt', index: 0 }, 'no bundling');
  assert.deepEqual(entries(['--']).problem, { kind: 'unknown-option', message: 'unknown option --', index: 0 });
  assert.deepEqual(entries(['--a\nb']).problem, { kind: 'unknown-option', message: 'unknown option "--a\\nb"', index: 0 });
  assert.deepEqual(entries(['-t']).problem, { kind: 'missing-value', message: '-t needs a value', index: 0 });
  assert.deepEqual(entries(['--topic', '--retain']).problem, { kind: 'missing-value', message: '--topic needs a value', index: 0 }, 'a long option is never a value');
  assert.deepEqual(entries(['-t', '-r']).problem, { kind: 'missing-value', message: '-t needs a value', index: 0 }, 'nor a declared alias');
  assert.deepEqual(entries(['--retain=yes']).problem, { kind: 'unwanted-value', message: '--retain takes no value', index: 0 });
  assert.deepEqual(entries(['-t', 'a', 'extra']), { values: { topic: ['a'] }, positionals: [], problem: { kind: 'unexpected-argument', message: 'unexpected argument "extra"', index: 2 } });
  assert.deepEqual(entries(['--agent', 'somefile']).problem, { kind: 'unexpected-argument', message: 'unexpected argument "somefile"', index: 1 }, 'an attached-value flag never swallows the next argument');
  assert.deepEqual(entries(['-']).problem?.kind, 'unexpected-argument');
  const t = tokenize(['-', 'a', '-r', 'b'], SPECS, { positionals: true });
  assert.deepEqual([t.positionals, Object.fromEntries(t.values), t.problem], [['-', 'a', 'b'], { retain: [true] }, undefined]);
});

test('last: a later occurrence wins', () => {
  const { values } = tokenize(['--topic', 'a', '-t', 'b'], SPECS);
  assert.equal(last(values, 'topic'), 'b');
  assert.equal(last(values, 'retain'), undefined);
});

// Specs with distinct long names and distinct aliases.
const specsArb = fc
  .uniqueArray(
    fc.record({
      name: fc.stringMatching(/^[a-z][a-z0-9-]{0,8}$/),
      short: fc.option(fc.constantFrom(...'abcdefghijkLMNOP5'), { nil: undefined }),
      value: fc.constantFrom('none', 'required', 'optional', 'attached', undefined),
    }),
    { minLength: 1, maxLength: 6, selector: (s) => s.name },
  )
  .map((list) => {
    const seen = new Set<string>();
    return list.map((s): OptionSpec => {
      const short = s.short !== undefined && !seen.has(s.short) ? (seen.add(s.short), s.short) : undefined;
      return { name: s.name, ...(short !== undefined ? { short } : {}), ...(s.value !== undefined ? { value: s.value } : {}) };
    });
  });

const valueArb = fc.oneof(fc.string(), fc.constantFrom('', '-', '-5', '--x', '=', 'a=b', '-a', ' ', 'é'));

test('property: every command line written from valid specs in a documented form tokenizes back to what was written', () => {
  fc.assert(
    fc.property(
      specsArb.chain((specs) =>
        fc.tuple(
          fc.constant(specs),
          fc.array(fc.tuple(fc.nat({ max: specs.length - 1 }), valueArb, fc.nat({ max: 3 })), { maxLength: 8 }),
        ),
      ),
      ([specs, picks]) => {
        const aliases = new Set(specs.flatMap((s) => (s.short !== undefined ? [`-${s.short}`] : [])));
        const separable = (v: string) => !v.startsWith('--') && !aliases.has(v);
        const argv: string[] = [];
        const expected = new Map<string, OptionValue[]>();
        for (const [which, value, form] of picks) {
          const spec = specs[which]!;
          const flag = spec.short !== undefined && form % 2 === 1 ? `-${spec.short}` : `--${spec.name}`;
          let got: OptionValue;
          switch (spec.value ?? 'none') {
            case 'none':
              argv.push(flag);
              got = true;
              break;
            case 'required':
              if (form >= 2 || !separable(value)) argv.push(`--${spec.name}=${value}`);
              else argv.push(flag, value);
              got = value;
              break;
            case 'optional':
            case 'attached':
              if (form === 3) {
                argv.push(`--${spec.name}`);
                got = true;
              } else if (form === 2 || !separable(value) || spec.value === 'attached') {
                argv.push(`--${spec.name}=${value}`);
                got = value;
              } else {
                argv.push(flag, value);
                got = value;
              }
              break;
          }
          expected.set(spec.name, [...(expected.get(spec.name) ?? []), got]);
        }
        const t = tokenize(argv, specs);
        assert.equal(t.problem, undefined, `${JSON.stringify(argv)}: ${t.problem?.message}`);
        assert.deepEqual(t.values, expected, JSON.stringify(argv));
        assert.deepEqual(t.positionals, []);
      },
    ),
    { numRuns: 500 },
  );
});

test('property: any argv tokenizes without throwing; a problem is one line, and what came before it parses alone to the same values', () => {
  fc.assert(
    fc.property(
      specsArb.chain((specs) => {
        const known = specs.flatMap((s) => [`--${s.name}`, `--${s.name}=x`, ...(s.short !== undefined ? [`-${s.short}`] : [])]);
        return fc.tuple(fc.constant(specs), fc.array(fc.oneof(fc.constantFrom(...known), valueArb), { maxLength: 10 }), fc.boolean());
      }),
      ([specs, argv, positionals]) => {
        const t = tokenize(argv, specs, { positionals });
        if (t.problem === undefined) return;
        assert.doesNotMatch(t.problem.message, /[\u0000-\u001f]/, 'one line');
        assert.ok(t.problem.index >= 0 && t.problem.index < argv.length);
        const before = tokenize(argv.slice(0, t.problem.index), specs, { positionals });
        assert.equal(before.problem, undefined);
        assert.deepEqual([before.values, before.positionals], [t.values, t.positionals]);
      },
    ),
    { numRuns: 500 },
  );
});
