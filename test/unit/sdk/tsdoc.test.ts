/**
 * Every symbol the SDK exports (from `topicast`, i.e. sdk/src/index.ts) carries
 * TSDoc with an `@example` (STYLE.md). Symbols re-exported from the wire contract
 * (sdk/src/protocol/) are documented there and not checked here.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const src = fileURLToPath(new URL('../../../../sdk/src/', import.meta.url));

test('every export of topicast has TSDoc with an @example', () => {
  const program = ts.createProgram([`${src}index.ts`], { module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, noEmit: true, types: [] });
  const checker = program.getTypeChecker();
  const file = program.getSourceFile(`${src}index.ts`);
  assert.ok(file);
  const moduleSymbol = checker.getSymbolAtLocation(file);
  assert.ok(moduleSymbol);
  const missing: string[] = [];
  const exports = checker.getExportsOfModule(moduleSymbol);
  for (const exported of exports) {
    const symbol = exported.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(exported) : exported;
    const decl = symbol.declarations?.[0];
    if (!decl) continue;
    if (decl.getSourceFile().fileName.includes('/protocol/')) continue;
    const tags = symbol.getJsDocTags(checker);
    const docs = ts.displayPartsToString(symbol.getDocumentationComment(checker));
    if (!docs || !tags.some((t) => t.name === 'example')) missing.push(`${exported.name} (${decl.getSourceFile().fileName.slice(src.length)})`);
  }
  assert.ok(exports.length > 30, `only ${exports.length} exports found`);
  assert.deepEqual(missing, [], `exports without TSDoc + @example:\n${missing.join('\n')}`);
});
