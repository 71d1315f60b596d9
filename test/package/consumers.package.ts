// The package as users get it: packed with `npm pack`, installed into throwaway apps next to Fastify, compiled with
// `tsc` (never skipLibCheck) in every module setup users have, and run. Also publint and arethetypeswrong on the
// tarball. Needs the npm registry (for Fastify and TypeScript in the apps); run by `npm run test:package`.
import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import t, { type Test } from 'tap'

const root = fileURLToPath(new URL('../..', import.meta.url))
const run = promisify(execFile)
const manifest = JSON.parse(await readFile(join(root, 'package.json'), 'utf8'))
const installed = (name: string): Promise<string> =>
  readFile(join(root, 'node_modules', name, 'package.json'), 'utf8').then(text => JSON.parse(text).version)

/** The oldest Fastify the peer range admits, and the one this repository develops against. */
const OLDEST_FASTIFY = manifest.peerDependencies.fastify.split('||')[0].trim().replace(/^\^/, '')
const CURRENT_FASTIFY = await installed('fastify')

interface Result { code: number, output: string }

async function sh (file: string, args: string[], cwd: string): Promise<Result> {
  try {
    const { stdout, stderr } = await run(file, args, { cwd, maxBuffer: 16 * 1024 * 1024 })
    return { code: 0, output: stdout + stderr }
  } catch (err) {
    const failure = err as { code?: number, stdout?: string, stderr?: string }
    return { code: typeof failure.code === 'number' ? failure.code : 1, output: `${failure.stdout ?? ''}${failure.stderr ?? ''}` }
  }
}

const work = await mkdtemp(join(tmpdir(), 'fastify-event-stream-consumers-'))
t.teardown(() => rm(work, { recursive: true, force: true }))
// prepack builds dist/ first.
const packed = await sh('npm', ['pack', '--pack-destination', work], root)
if (packed.code !== 0) throw new Error(`npm pack failed: ${packed.output}`)
const tarball = join(work, `${manifest.name}-${manifest.version}.tgz`)

t.test('the tarball holds the library only, with source maps that resolve, a LICENSE and a CHANGELOG', async t => {
  const { output } = await sh('tar', ['-tzf', tarball], work)
  const files = output.trim().split('\n').map(line => line.replace(/^package\//, ''))
  t.notOk(files.some(file => /^dist\/(bench|examples|test|types)\//.test(file)), 'no bench, examples or tests')
  for (const file of ['LICENSE', 'CHANGELOG.md', 'README.md', 'dist/index.js', 'dist/index.d.ts']) t.ok(files.includes(file), file)
  const maps = files.filter(file => file.endsWith('.map'))
  t.ok(maps.length > 0, 'source maps are shipped')
  const unpacked = join(work, 'unpacked')
  await sh('mkdir', ['-p', unpacked], work)
  await sh('tar', ['-xzf', tarball, '-C', unpacked], work)
  const missing: string[] = []
  for (const map of maps) {
    const { sources } = JSON.parse(await readFile(join(unpacked, 'package', map), 'utf8')) as { sources: string[] }
    for (const source of sources) {
      const path = join(unpacked, 'package', map, '..', source)
      if (!files.includes(path.slice(join(unpacked, 'package').length + 1))) missing.push(`${map} -> ${source}`)
    }
  }
  t.same(missing, [], 'every source a map names is in the tarball')
})

t.test('publint finds nothing to report', async t => {
  const result = await sh(join(root, 'node_modules/.bin/publint'), ['run', tarball, '--strict'], root)
  t.equal(result.code, 0, result.output)
  t.match(result.output, /All good/)
})

// The package is ESM only, so a static require() from CommonJS under `node16` is not allowed by TypeScript (TS1479);
// the README says so and shows the ways that work. The esm-only profile leaves out just that warning.
t.test('arethetypeswrong finds no problem for an ESM package', async t => {
  const result = await sh(join(root, 'node_modules/.bin/attw'), [tarball, '--profile', 'esm-only', '--no-color', '--format', 'table'], root)
  t.equal(result.code, 0, result.output)
  t.notMatch(result.output, /❌|💀|🥴|🐛|❗️|🎭|🕵️/u, 'no resolution fails')
  t.match(result.output, /node16 \(from ESM\) *│ 🟢 \(ESM\)/u)
  t.match(result.output, /bundler *│ 🟢/u)
})

/** ESM source: the plugin's types must be real (not any), its augmentation must land on the app's Fastify. */
const ESM_APP = `
import Fastify from 'fastify'
import fastifyEventStream, { FST_SSE_INVALID_FIELD, type EventStream } from 'fastify-event-stream'

const app = Fastify()
await app.register(fastifyEventStream, { heartbeat: false })
app.get('/events', (_request, reply) => {
  const stream: EventStream = reply.sse()
  stream.message('hi', { id: 1 })
  stream.close()
})
// Compiles only while neither is any (with skipLibCheck and a broken declaration, both silently were).
type IsAny<T> = 0 extends (1 & T) ? true : false
const errorClassNotAny: IsAny<typeof FST_SSE_INVALID_FIELD> = false
const publishNotAny: IsAny<ReturnType<typeof app.eventHub.publish>> = false
void [errorClassNotAny, publishNotAny]
console.log(JSON.stringify({ body: (await app.inject('/events')).body, code: new FST_SSE_INVALID_FIELD('x').code }))
await app.close()
`

/** CommonJS source (compiled to require()): the same app without top-level await. */
const CJS_APP = (importLine: string, plugin: string): string => `
${importLine}
import Fastify from 'fastify'

async function main (): Promise<void> {
  ${plugin === 'dynamic' ? "const { default: fastifyEventStream, FST_SSE_INVALID_FIELD } = await import('fastify-event-stream')" : ''}
  const app = Fastify()
  await app.register(fastifyEventStream, { heartbeat: false })
  app.get('/events', (_request, reply) => {
    const stream = reply.sse()
    stream.message('hi', { id: 1 })
    stream.close()
  })
  const published: Promise<string> = app.eventHub.publish('news', 'x')
  await published
  const invalid: { code: 'FST_SSE_INVALID_FIELD' } = new FST_SSE_INVALID_FIELD('x')
  console.log(JSON.stringify({ body: (await app.inject('/events')).body, code: invalid.code }))
  await app.close()
}
main()
`

interface Setup {
  name: string
  compilerOptions: Record<string, unknown>
  file: string
  source: string
  /** The compiled file that node runs. */
  output: string
}

const STATIC_IMPORT = "import fastifyEventStream, { FST_SSE_INVALID_FIELD } from 'fastify-event-stream'"

const SETUPS: Setup[] = [
  { name: 'ESM, module nodenext', compilerOptions: { module: 'nodenext' }, file: 'app.mts', source: ESM_APP, output: 'app.mjs' },
  { name: 'ESM, module node16', compilerOptions: { module: 'node16' }, file: 'app.mts', source: ESM_APP, output: 'app.mjs' },
  { name: 'moduleResolution bundler', compilerOptions: { module: 'preserve', moduleResolution: 'bundler' }, file: 'app.ts', source: ESM_APP, output: 'app.js' },
  {
    name: 'CommonJS, module commonjs (node10 resolution)',
    compilerOptions: { module: 'commonjs', moduleResolution: 'node10', esModuleInterop: true },
    file: 'app.cts',
    source: CJS_APP(STATIC_IMPORT, 'static'),
    output: 'app.cjs'
  },
  { name: 'CommonJS, module nodenext (require of ESM)', compilerOptions: { module: 'nodenext' }, file: 'app.cts', source: CJS_APP(STATIC_IMPORT, 'static'), output: 'app.cjs' },
  { name: 'CommonJS, module node16 (dynamic import)', compilerOptions: { module: 'node16' }, file: 'app.cts', source: CJS_APP('', 'dynamic'), output: 'app.cjs' }
]

const EXPECTED = JSON.stringify({ body: 'id: 1\ndata: hi\n\n', code: 'FST_SSE_INVALID_FIELD' })

/** A throwaway app folder with the tarball, one Fastify release, TypeScript and Node's types installed. */
async function consumerApp (fastify: string): Promise<string> {
  const dir = join(work, `app-fastify-${fastify}`)
  await sh('mkdir', ['-p', dir], work)
  await writeFile(join(dir, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }))
  const install = await sh('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', tarball, `fastify@${fastify}`,
    `typescript@${await installed('typescript')}`, `@types/node@${await installed('@types/node')}`], dir)
  if (install.code !== 0) throw new Error(`npm install failed: ${install.output}`)
  return dir
}

/**
 * Compiles `source` in the app as ESM under nodenext and under bundler resolution (`bundler` adds to the second's
 * compiler options), runs each output and expects it to print `expected`.
 */
async function compileAndRun (t: Test, dir: string, prefix: string, source: string, expected: string, bundler: object): Promise<void> {
  for (const [name, compilerOptions, file, output] of [
    ['nodenext', { module: 'nodenext' }, `${prefix}.mts`, `${prefix}.mjs`],
    ['bundler', { module: 'preserve', moduleResolution: 'bundler', ...bundler }, `${prefix}.ts`, `${prefix}.js`]
  ] as const) {
    const out = join(dir, 'out', `${prefix}-${name}`)
    await writeFile(join(dir, file), source)
    const tsconfig = join(dir, `tsconfig.${prefix}-${name}.json`)
    await writeFile(tsconfig, JSON.stringify({
      compilerOptions: { target: 'ES2022', strict: true, skipLibCheck: false, types: ['node'], outDir: out, ...compilerOptions },
      files: [file]
    }))
    const compiled = await sh(join(dir, 'node_modules/.bin/tsc'), ['-p', tsconfig], dir)
    t.equal(compiled.code, 0, `${name}: tsc: ${compiled.output}`)
    const ran = await sh(process.execPath, [join(out, output)], dir)
    t.equal(ran.output.trim(), expected, `${name}: runs`)
  }
}

for (const fastify of [CURRENT_FASTIFY, OLDEST_FASTIFY]) {
  t.test(`a consumer on Fastify ${fastify}`, async t => {
    const dir = await consumerApp(fastify)
    const { output: tree } = await sh('npm', ['ls', 'fastify', '--all', '--parseable'], dir)
    t.equal(tree.trim().split('\n').filter(line => line.endsWith('/fastify')).length, 1, 'one copy of Fastify: the app\'s')

    for (const setup of SETUPS) {
      t.test(setup.name, async t => {
        const out = join(dir, 'out', setup.name.replace(/\W+/g, '-'))
        const base = setup.file.replace(/\.\w+$/, '')
        await writeFile(join(dir, setup.file), setup.source)
        const tsconfig = join(dir, `tsconfig.${base}.${setup.name.replace(/\W+/g, '-')}.json`)
        await writeFile(tsconfig, JSON.stringify({
          compilerOptions: { target: 'ES2022', strict: true, skipLibCheck: false, types: ['node'], outDir: out, ...setup.compilerOptions },
          files: [setup.file]
        }))
        const compiled = await sh(join(dir, 'node_modules/.bin/tsc'), ['-p', tsconfig], dir)
        t.equal(compiled.code, 0, `tsc: ${compiled.output}`)
        if (compiled.code !== 0) return
        const ran = await sh(process.execPath, [join(out, setup.output)], dir)
        t.equal(ran.output.trim(), EXPECTED, 'runs and streams')
      })
    }

    t.test('an app that names its own last-event-id query parameter tells the types by augmentation', async t => {
      await writeFile(join(dir, 'augment.mts'), `
import Fastify from 'fastify'
import fastifyEventStream from 'fastify-event-stream'
declare module 'fastify-event-stream' {
  interface LastEventIdQuery { name: 'since' }
}
const app = Fastify()
await app.register(fastifyEventStream, { lastEventIdQuery: 'since' })
app.get<{ Querystring: { since?: number } }>('/events', (_request, reply) => {
  const id: string | number | undefined = reply.sse().lastEventId
  // @ts-expect-error the query parameter's type is part of it
  const narrow: string | undefined = reply.sse().lastEventId
  void [id, narrow]
})
`)
      const tsconfig = join(dir, 'tsconfig.augment.json')
      await writeFile(tsconfig, JSON.stringify({
        compilerOptions: { target: 'ES2022', strict: true, skipLibCheck: false, types: ['node'], module: 'nodenext', noEmit: true },
        files: ['augment.mts']
      }))
      const compiled = await sh(join(dir, 'node_modules/.bin/tsc'), ['-p', tsconfig], dir)
      t.equal(compiled.code, 0, `tsc: ${compiled.output}`)
    })

    t.test('the Redis store from its subpath, once ioredis is installed (the setups above ran without it)', async t => {
      const { output: before } = await sh('npm', ['ls', 'ioredis', '--parseable'], dir)
      t.equal(before.trim(), '', 'the app had no ioredis: the main entry loads nothing of it')
      const install = await sh('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', `ioredis@${await installed('ioredis')}`], dir)
      t.equal(install.code, 0, install.output)
      const source = `
import { RedisStore } from 'fastify-event-stream/redis'
import type { EventStore } from 'fastify-event-stream'
const store: EventStore = new RedisStore({ connection: { lazyConnect: true }, prefix: '{consumer}' })
console.log(typeof RedisStore)
await store.close()
`
      await compileAndRun(t, dir, 'redis', source, 'function', {})
      // node10 resolution has no exports map: typesVersions points it at the declarations.
      await writeFile(join(dir, 'redis-node10.cts'), "import { RedisStore } from 'fastify-event-stream/redis'\nexport const made: typeof RedisStore = RedisStore\n")
      const tsconfig = join(dir, 'tsconfig.redis-node10.json')
      await writeFile(tsconfig, JSON.stringify({
        compilerOptions: { target: 'ES2022', strict: true, skipLibCheck: false, types: ['node'], module: 'commonjs', moduleResolution: 'node10', esModuleInterop: true, noEmit: true },
        files: ['redis-node10.cts']
      }))
      const compiled = await sh(join(dir, 'node_modules/.bin/tsc'), ['-p', tsconfig], dir)
      t.equal(compiled.code, 0, `node10: tsc: ${compiled.output}`)
    })

    t.test('the client from its subpath: typed by the route\'s event map, in a Node app', async t => {
      const source = `
import Fastify from 'fastify'
import fastifyEventStream from 'fastify-event-stream'
import { connect } from 'fastify-event-stream/client'
type Events = { tick: { n: number } }
const app = Fastify()
await app.register(fastifyEventStream)
app.get('/events', async (_request, reply) => { await reply.sse<Events>().send('tick', { n: 42 }, { id: 1 }) })
const address = await app.listen({ port: 0, host: '127.0.0.1' })
const client = connect<Events>(address + '/events')
const n: number = await new Promise(resolve => client.on('tick', tick => resolve(tick.n)))
client.close()
console.log(n, client.lastEventId, client.state)
await app.close()
`
      await compileAndRun(t, dir, 'client', source, '42 1 closed', { lib: ['ES2022', 'DOM'] })
    })

    t.test('plain CommonJS JavaScript: require() as the README shows', async t => {
      await writeFile(join(dir, 'app.cjs'), `
        const Fastify = require('fastify')
        const fastifyEventStream = require('fastify-event-stream').default
        const { FST_SSE_INVALID_FIELD } = require('fastify-event-stream')
        const app = Fastify()
        app.register(fastifyEventStream, { heartbeat: false })
        app.get('/events', (request, reply) => { const stream = reply.sse(); stream.message('hi', { id: 1 }); stream.close() })
        app.inject('/events').then(async response => {
          console.log(JSON.stringify({ body: response.body, code: new FST_SSE_INVALID_FIELD('x').code }))
          await app.close()
        })
      `)
      const ran = await sh(process.execPath, [join(dir, 'app.cjs')], dir)
      t.equal(ran.output.trim(), EXPECTED)
    })
  })
}

/** The README's TypeScript example that imports `marker`, exactly as written. */
async function readmeExample (marker: string): Promise<string> {
  const readme = await readFile(join(root, 'README.md'), 'utf8')
  const blocks = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map(match => match[1])
    .filter(block => block.includes(`from '${marker}'`) && block.includes("import Fastify from 'fastify'"))
  if (blocks.length !== 1) throw new Error(`expected one complete README example importing ${marker}, found ${blocks.length}`)
  return blocks[0]
}

/** What the tests add after an example: serve it on a free port and read its stream once. */
const READ_STREAM = `
import type { AddressInfo } from 'node:net'
async function readStream (path: string, headers: Record<string, string>, until: RegExp): Promise<string> {
  await app.listen({ port: 0, host: '127.0.0.1' })
  const response = await fetch(\`http://127.0.0.1:\${(app.server.address() as AddressInfo).port}\${path}\`, { headers })
  const reader = response.body!.getReader()
  let text = \`content-encoding: \${response.headers.get('content-encoding')}\\n\`
  while (!until.test(text)) {
    const { value, done } = await reader.read()
    if (done) break
    text += new TextDecoder().decode(value)
  }
  await reader.cancel()
  return text
}
`

const STACK_RUN = `${READ_STREAM}
const text = await readStream('/prices', { 'last-event-id': '41', 'accept-encoding': 'gzip, br', origin: 'https://app.example.com' }, /\\n\\n/)
await app.close()
console.log(JSON.stringify(text))
`
const STACK_EXPECTED = JSON.stringify('content-encoding: null\nid: 42\nevent: price\ndata: {"symbol":"ACME","cents":12345}\n\n')

const REDIS_RUN = `${READ_STREAM}
const topic = \`consumer:\${process.pid}\`
app.get('/feed', (_request, reply) => { app.eventHub.subscribe(reply.sse(), [topic]) })
const first = await app.eventHub.publish(topic, 'one')
await app.eventHub.publish(topic, 'two')
const text = await readStream('/feed', { 'last-event-id': first }, /data: two\\n/)
const keys = await app.redis.keys('{myapp-sse}*')
if (keys.length > 0) await app.redis.del(...keys)
await app.close()
console.log(JSON.stringify(text.split('\\n').filter(line => line.startsWith('data:'))))
`
const REDIS_EXPECTED = JSON.stringify(['data: two'])

/** The packages the README's examples import, besides this one. */
const INTEGRATIONS = ['fastify', '@fastify/redis', 'ioredis', '@fastify/cors', '@fastify/compress', '@fastify/type-provider-typebox', 'typebox']

// A new major of a peer or of an integration the README shows must fail here, not in a user's app: the examples run
// with the releases this repository locks and with the newest of each, as `npm install` gives a new app today.
for (const releases of ['locked', 'newest'] as const) {
  t.test(`the README's examples, as written, with the ${releases} releases of what they import`, async t => {
    const dir = join(work, `app-readme-${releases}`)
    await sh('mkdir', ['-p', dir], work)
    await writeFile(join(dir, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }))
    const packages = await Promise.all(INTEGRATIONS.map(async name => `${name}@${releases === 'locked' ? await installed(name) : 'latest'}`))
    const install = await sh('npm', ['install', '--no-audit', '--no-fund', '--prefer-online', tarball, ...packages,
      `typescript@${await installed('typescript')}`, `@types/node@${await installed('@types/node')}`], dir)
    if (!t.equal(install.code, 0, `npm install ${packages.join(' ')}`)) return t.comment(install.output)
    const versions = await Promise.all(INTEGRATIONS.map(async name =>
      `${name} ${JSON.parse(await readFile(join(dir, 'node_modules', name, 'package.json'), 'utf8')).version}`))
    t.comment(versions.join(', '))
    for (const name of ['fastify', 'ioredis', 'fastify-plugin']) {
      const { output } = await sh('npm', ['ls', name, '--all', '--parseable'], dir)
      const copies = [...new Set(output.trim().split('\n').filter(line => line.endsWith(`/${name}`)))]
      t.equal(copies.length, 1, `one copy of ${name} in the tree: ${copies.join(', ')}`)
    }

    for (const [example, marker, run, expected] of [
      ['stack', '@fastify/type-provider-typebox', STACK_RUN, STACK_EXPECTED],
      ['redis', '@fastify/redis', REDIS_RUN, REDIS_EXPECTED]
    ] as const) {
      await writeFile(join(dir, `${example}.mts`), `${await readmeExample(marker)}${run}`)
      const tsconfig = join(dir, `tsconfig.${example}.json`)
      await writeFile(tsconfig, JSON.stringify({
        compilerOptions: { target: 'ES2022', strict: true, skipLibCheck: false, types: ['node'], module: 'nodenext', outDir: join(dir, 'out') },
        files: [`${example}.mts`]
      }))
      const compiled = await sh(join(dir, 'node_modules/.bin/tsc'), ['-p', tsconfig], dir)
      t.equal(compiled.code, 0, `${example}: tsc: ${compiled.output}`)
      if (compiled.code !== 0) continue
      const ran = await sh(process.execPath, [join(dir, 'out', `${example}.mjs`)], dir)
      if (!t.equal(ran.output.trim().split('\n').at(-1), expected, `${example}: runs`)) t.comment(ran.output)
    }
  })
}
