// Tokens and the REST API of tandem serve, with real automerge-repo clients.
// Tandem-only: skipped when the server under test is the reference server.
import assert from "node:assert/strict"
import { createHmac, randomBytes } from "node:crypto"
import { writeFileSync } from "node:fs"
import { join } from "node:path"
import { after, before, describe, test } from "node:test"
import WebSocket from "ws"
import {
  Automerge,
  IS_REFERENCE_SERVER,
  clientsOf,
  startServer,
  tempDir,
  waitFor,
  withTimeout,
} from "../lib/harness.mjs"

const b64url = b => Buffer.from(b).toString("base64url")

/** An HS256 JWT made here, independently of Tandem's own issuer. */
function makeToken(secret, { sub, docs, ttl = 3600, jti = randomBytes(8).toString("hex") }) {
  const now = Math.floor(Date.now() / 1000)
  const head = b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }))
  const body = b64url(JSON.stringify({ sub, jti, iat: now, exp: now + ttl, docs }))
  const sig = createHmac("sha256", secret).update(`${head}.${body}`).digest("base64url")
  return { token: `${head}.${body}.${sig}`, jti }
}

describe("auth and REST", { timeout: 120_000, skip: IS_REFERENCE_SERVER && "the reference server has no auth or REST API" }, () => {
  let server
  let base
  const secret = randomBytes(32).toString("hex")
  const admin = makeToken(secret, { sub: "admin", docs: { "*": "admin" } }).token

  before(async () => {
    const dir = tempDir("tandem-auth-")
    const secretFile = join(dir, "secret")
    writeFileSync(secretFile, secret + "\n", { mode: 0o600 })
    server = await startServer({ extraArgs: ["--auth-secret-file", secretFile] })
    base = `http://127.0.0.1:${server.port}`
  })
  after(async () => {
    await server?.dispose()
  })

  async function rest(method, path, { token = admin, body, type } = {}) {
    const headers = { Authorization: `Bearer ${token}` }
    if (type) headers["Content-Type"] = type
    const res = await fetch(base + path, { method, headers, body })
    const text = await res.text()
    return { status: res.status, type: res.headers.get("content-type"), body: text ? JSON.parse(text) : null }
  }

  async function createDoc(initial) {
    const res = await rest("POST", "/api/docs", { body: JSON.stringify(initial), type: "application/json" })
    assert.equal(res.status, 201, JSON.stringify(res.body))
    return res.body
  }

  const wsURL = token => `${server.url}?token=${encodeURIComponent(token)}`

  test("a WebSocket without a valid token is refused", { timeout: 20_000 }, async () => {
    const other = makeToken("another-secret-another-secret-xx", { sub: "m", docs: { "*": "write" } }).token
    const expired = makeToken(secret, { sub: "old", docs: { "*": "write" }, ttl: -60 }).token
    for (const url of [server.url, wsURL("garbage"), wsURL(other), wsURL(expired)]) {
      const status = await withTimeout(new Promise((resolve, reject) => {
        const ws = new WebSocket(url)
        ws.on("unexpected-response", (_req, res) => {
          resolve(res.statusCode)
          ws.terminate()
        })
        ws.on("open", () => {
          ws.close()
          reject(new Error(`connection accepted: ${url}`))
        })
        ws.on("error", () => {})
      }), 5000, `refusal of ${url}`)
      assert.equal(status, 401)
    }
  })

  test("a client with a read token cannot change a document; with a write token it can", { timeout: 60_000 }, async t => {
    const connect = clientsOf(t)
    const { url, id } = await createDoc({ widgets: { cpu: { value: 1 } } })
    const reader = await connect(wsURL(makeToken(secret, { sub: "reader", docs: { [id]: "read" } }).token))
    const writer = await connect(wsURL(makeToken(secret, { sub: "writer", docs: { [url]: "write" } }).token))
    const watcher = await connect(wsURL(makeToken(secret, { sub: "watcher", docs: { [id]: "read" } }).token))
    reader.adapter.recordErrors = true
    const [hr, hw, hv] = await Promise.all([reader.find(url), writer.find(url), watcher.find(url)])

    // The reader's change is refused with an error naming the document...
    hr.change(d => {
      d.widgets.cpu.value = 666
      d.hacked = true
    })
    const rejected = Automerge.getHeads(hr.doc())
    await waitFor(
      () => reader.adapter.errors.some(m => String(m.message).includes(id)),
      5000,
      "an error message for the read-only client",
      { describe: () => JSON.stringify(reader.adapter.errors) },
    )
    // ...and its connection stays open.
    assert.equal(reader.connected, true)
    assert.equal(reader.disconnects, 0)

    // A writer's change reaches the server, the other clients and the reader.
    hw.change(d => {
      d.widgets.cpu.value = 2
    })
    const written = Automerge.getHeads(hw.doc())
    await writer.waitServerHas(hw)
    await waitFor(() => Automerge.hasHeads(hv.doc(), written) && Automerge.hasHeads(hr.doc(), written), 5000, "the write to reach both readers")
    assert.equal(hv.doc().widgets.cpu.value, 2)

    // The rejected change reached neither the other clients nor the server.
    assert.equal(Automerge.hasHeads(hw.doc(), rejected), false, "writer has the rejected change")
    assert.equal(Automerge.hasHeads(hv.doc(), rejected), false, "watcher has the rejected change")
    assert.equal(hv.doc().hacked, undefined)
    let res = await rest("GET", `/api/docs/${id}`)
    assert.deepEqual(res.body, { widgets: { cpu: { value: 2 } } })

    // Nor the disk: after a restart the stored document lacks it.
    await Promise.all(connect.all.map(c => c.close()))
    await server.restart()
    res = await rest("GET", `/api/docs/${id}`)
    assert.deepEqual(res.body, { widgets: { cpu: { value: 2 } } })
    const bin = await fetch(`${base}/api/docs/${id}/binary`, { headers: { Authorization: `Bearer ${admin}` } })
    const stored = Automerge.load(new Uint8Array(await bin.arrayBuffer()))
    assert.equal(Automerge.hasHeads(stored, rejected), false, "the server stored the rejected change")
    assert.equal(Automerge.hasHeads(stored, written), true)
  })

  test("a document the token does not cover is unavailable", { timeout: 30_000 }, async t => {
    const connect = clientsOf(t)
    const { url } = await createDoc({ secret: true })
    const other = await createDoc({ mine: true })
    const c = await connect(wsURL(makeToken(secret, { sub: "nosy", docs: { [other.id]: "write" } }).token))
    await assert.rejects(c.find(url), /unavailable/)
    const res = await rest("GET", `/api/docs/${url}`, { token: makeToken(secret, { sub: "nosy", docs: { [other.id]: "write" } }).token })
    assert.equal(res.status, 404)
    assert.equal(res.type, "application/problem+json")
  })

  test("a REST patch is seen live by a JavaScript client within a second", { timeout: 30_000 }, async t => {
    const connect = clientsOf(t)
    const { url, id } = await createDoc({ widgets: { cpu: { value: 0 } } })
    const c = await connect(wsURL(makeToken(secret, { sub: "dash", docs: { [id]: "read" } }).token))
    const h = await c.find(url)
    const writer = makeToken(secret, { sub: "job", docs: { [id]: "write" } }).token
    const start = Date.now()
    const res = await rest("PATCH", `/api/docs/${id}`, {
      token: writer,
      type: "application/json-patch+json",
      body: JSON.stringify([{ op: "replace", path: "/widgets/cpu/value", value: 42 }]),
    })
    assert.equal(res.status, 200, JSON.stringify(res.body))
    await waitFor(() => h.doc().widgets.cpu.value === 42, 1000, "the REST patch to reach the JS client", { interval: 5 })
    t.diagnostic(`REST patch seen by the JS client after ${Date.now() - start} ms`)

    // A failed test changes nothing: 409.
    const failed = await rest("PATCH", `/api/docs/${id}`, {
      token: writer,
      type: "application/json-patch+json",
      body: JSON.stringify([
        { op: "replace", path: "/widgets/cpu/value", value: 7 },
        { op: "test", path: "/widgets/cpu/value", value: 0 },
      ]),
    })
    assert.equal(failed.status, 409)
    assert.equal(failed.type, "application/problem+json")
    assert.equal((await rest("GET", `/api/docs/${id}`)).body.widgets.cpu.value, 42)
  })

  test("revoking a token closes its connection within a second", { timeout: 30_000 }, async t => {
    const connect = clientsOf(t)
    const { url, id } = await createDoc({ v: 1 })
    const { token, jti } = makeToken(secret, { sub: "revoked", docs: { [id]: "write" } })
    const c = await connect(wsURL(token))
    await c.find(url)
    const start = Date.now()
    const res = await rest("POST", "/api/revocations", { type: "application/json", body: JSON.stringify({ jti }) })
    assert.equal(res.status, 200, JSON.stringify(res.body))
    await waitFor(() => c.disconnects > 0, 1000, "the revoked client to be disconnected", { interval: 5 })
    t.diagnostic(`revoked connection closed after ${Date.now() - start} ms`)
  })
})
