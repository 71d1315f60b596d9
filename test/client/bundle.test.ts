// The client as a page gets it: bundled and minified by a real bundler (esbuild), for a browser, with no Node
// built-in and no dependency; its size (min + gzip) is what the README quotes, and the goal is under 4 KB.
import { build } from 'esbuild'
import { execFile } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { gzipSync } from 'node:zlib'
import t from 'tap'

const root = fileURLToPath(new URL('../../', import.meta.url))

t.test('the client bundles for a browser in under 4 KB (minified + gzip), with nothing of Node', async t => {
  const result = await build({
    entryPoints: [root + 'lib/client/index.ts'],
    bundle: true,
    minify: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    write: false,
    metafile: true,
    logLevel: 'silent'
  })
  const code = result.outputFiles[0].contents
  const gzipped = gzipSync(code, { level: 9 }).length
  const inputs = Object.keys(result.metafile.inputs).sort()
  t.same(inputs, ['lib/client/client.ts', 'lib/client/errors.ts', 'lib/client/index.ts', 'lib/client/tabs.ts', 'lib/parse.ts'],
    'the client and the parser, nothing else of the server (events.ts holds only a type)')
  const text = Buffer.from(code).toString()
  t.notMatch(text, /\b(require|process|Buffer|import\()\b/, 'no Node global, no dynamic import')
  t.ok(gzipped < 4096, `minified ${code.length} B, gzip ${gzipped} B`)
  t.comment(`client bundle: ${code.length} B minified, ${gzipped} B gzip`)
})

t.test('the client type-checks with the DOM library and no Node types', async t => {
  const dir = await mkdtemp(join(tmpdir(), 'client-types-'))
  t.teardown(() => rm(dir, { recursive: true }))
  await writeFile(join(dir, 'tsconfig.json'), JSON.stringify({
    compilerOptions: { noEmit: true, strict: true, target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', lib: ['ES2022', 'DOM', 'DOM.Iterable'], types: [] },
    files: [root + 'lib/client/index.ts']
  }))
  const tsc = root + 'node_modules/typescript/bin/tsc'
  const { stdout } = await promisify(execFile)(process.execPath, [tsc, '-p', dir]).catch((err: { stdout: string }) => err)
  t.equal(stdout, '', 'no error')
})
