// Test harness for the sync-server client suite (test/*.test.mjs).
//
// The server under test is started from the command template in
// $TANDEM_SERVER_CMD, with {port} and {dir} placeholders, e.g.
//   TANDEM_SERVER_CMD='/path/to/tandem serve --addr 127.0.0.1:{port} --data {dir}'
// Default: the reference server in this directory (node ref-server.mjs {port} {dir}).
// The harness picks a free loopback port itself and waits until the server
// accepts TCP connections, so the server need not print anything.
// A test may append arguments of its own: startServer({ extraArgs: [...] })
// (placeholders are filled there too); other tests are unaffected.
//
// Every wait in here has a deadline.

import { spawn } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import net from "node:net"
import os from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { monitorEventLoopDelay } from "node:perf_hooks"
import * as Automerge from "@automerge/automerge"
import { Repo } from "@automerge/automerge-repo"
import { cbor } from "@automerge/automerge-repo/slim"
import { BrowserWebSocketClientAdapter } from "@automerge/automerge-repo-network-websocket"
import { NodeFSStorageAdapter } from "@automerge/automerge-repo-storage-nodefs"
import { canonical } from "./json.mjs"

const here = dirname(fileURLToPath(import.meta.url))
export const JS_DIR = join(here, "..")

const DEFAULT_CMD = `${quote(process.execPath)} ${quote(join(JS_DIR, "ref-server.mjs"))} {port} {dir}`
export const SERVER_CMD = process.env.TANDEM_SERVER_CMD || DEFAULT_CMD
/** True when the server under test is the reference (Node) server, which has no Tandem-only features (auth, REST API). */
export const IS_REFERENCE_SERVER = !process.env.TANDEM_SERVER_CMD || /ref-server\.mjs/.test(process.env.TANDEM_SERVER_CMD)
export const STRICT = Boolean(process.env.TANDEM_STRICT)
const SERVER_LOG = Boolean(process.env.TANDEM_SERVER_LOG)
/** URL path of the sync endpoint (Tandem serves /sync; the reference server accepts any path). */
export const SYNC_PATH = process.env.TANDEM_SYNC_PATH ?? "/sync"

function quote(s) {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`
}

// ---------------------------------------------------------------- waiting

// How long this process's event loop has been stalled. When clients are
// starved of CPU they cannot answer the server's pings, and a server may
// rightly drop them; failure messages include this to tell the cases apart.
const loopDelay = monitorEventLoopDelay({ resolution: 20 })
loopDelay.enable()
export function eventLoopReport() {
  return `event loop delay in this test process: max ${maxEventLoopDelayMs()} ms, p99 ${(loopDelay.percentile(99) / 1e6).toFixed(0)} ms`
}
export function maxEventLoopDelayMs() {
  return Math.round(loopDelay.max / 1e6)
}
export function resetEventLoopDelay() {
  loopDelay.reset()
}

export function sleep(ms) {
  return new Promise(resolve => setTimeout(resolve, ms))
}

/**
 * Polls predicate (sync or async) every `interval` ms until it returns a truthy
 * value, which is returned. Throws after timeoutMs, naming `what` and, if
 * given, the result of describe() (the state that did not converge).
 */
export async function waitFor(predicate, timeoutMs, what = "condition", { interval = 20, describe } = {}) {
  const deadline = Date.now() + timeoutMs
  let lastError
  for (;;) {
    try {
      const v = await predicate()
      if (v) return v
    } catch (e) {
      lastError = e
    }
    if (Date.now() >= deadline) {
      let msg = `timed out after ${timeoutMs} ms waiting for ${what}`
      if (describe) {
        try {
          msg += `\nstate: ${describe()}`
        } catch {}
      }
      msg += `\n${eventLoopReport()}`
      if (lastError) msg += `\nlast error: ${lastError?.stack ?? lastError}`
      throw new Error(msg)
    }
    await sleep(interval)
  }
}

/** Rejects if promise does not settle within ms. */
export function withTimeout(promise, ms, what = "operation") {
  let timer
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

// ---------------------------------------------------------------- server

/** A free TCP port on 127.0.0.1 (bind port 0, read it, close). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.unref()
    srv.on("error", reject)
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address()
      srv.close(() => resolve(port))
    })
  })
}

/** Splits a command template into argv (whitespace-separated, '…' and "…" quoting), then fills placeholders. */
export function buildArgv(template, vars) {
  const argv = []
  let cur = ""
  let inToken = false
  let q = null
  for (const ch of template) {
    if (q) {
      if (ch === q) q = null
      else cur += ch
    } else if (ch === "'" || ch === '"') {
      q = ch
      inToken = true
    } else if (/\s/.test(ch)) {
      if (inToken) argv.push(cur)
      cur = ""
      inToken = false
    } else {
      cur += ch
      inToken = true
    }
  }
  if (q) throw new Error(`unbalanced quote in server command: ${template}`)
  if (inToken) argv.push(cur)
  return argv.map(a => a.replace(/\{(\w+)\}/g, (m, k) => (k in vars ? String(vars[k]) : m)))
}

function canConnect(port) {
  return new Promise(resolve => {
    const s = net.connect({ host: "127.0.0.1", port })
    s.once("connect", () => {
      s.destroy()
      resolve(true)
    })
    s.once("error", () => {
      s.destroy()
      resolve(false)
    })
  })
}

const liveServers = new Set()
function killAllServers() {
  for (const s of liveServers) s.signal("SIGKILL")
}
process.on("exit", killAllServers)
for (const sig of ["SIGINT", "SIGTERM"]) {
  process.once(sig, () => {
    killAllServers()
    process.exit(130)
  })
}

export class Server {
  /** @param {{port: number, dir: string, ownsDir?: boolean, extraArgs?: string[]}} opts */
  constructor({ port, dir, ownsDir = false, extraArgs = [] }) {
    this.port = port
    this.dir = dir
    this.ownsDir = ownsDir
    this.extraArgs = extraArgs // appended to the command template's argv
    this.proc = null
    this.log = "" // last 64 KiB of stdout+stderr, for failure messages
    this.exited = null // promise of {code, signal} for the current process
  }

  get url() {
    return `ws://127.0.0.1:${this.port}${SYNC_PATH}`
  }

  /** True while the current server process is running. */
  get alive() {
    return this.proc !== null && this.proc.exitCode === null && this.proc.signalCode === null
  }

  logTail(n = 2000) {
    return this.log.slice(-n)
  }

  async start(timeoutMs = 20000) {
    if (this.alive) throw new Error("server already running")
    const vars = { port: this.port, dir: this.dir }
    const fill = a => a.replace(/\{(\w+)\}/g, (m, k) => (k in vars ? String(vars[k]) : m))
    const [cmd, ...args] = [...buildArgv(SERVER_CMD, vars), ...this.extraArgs.map(fill)]
    // Own process group, so that stop/kill reach wrappers' children too (e.g. `go run`).
    const proc = spawn(cmd, args, { cwd: JS_DIR, detached: true, stdio: ["ignore", "pipe", "pipe"] })
    this.proc = proc
    liveServers.add(this)
    const append = chunk => {
      this.log = (this.log + chunk.toString()).slice(-65536)
      if (SERVER_LOG) process.stderr.write(chunk)
    }
    proc.stdout.on("data", append)
    proc.stderr.on("data", append)
    this.exited = new Promise(resolve => {
      proc.once("exit", (code, signal) => {
        liveServers.delete(this)
        resolve({ code, signal })
      })
      proc.once("error", err => {
        append(`spawn error: ${err.message}\n`)
        liveServers.delete(this)
        resolve({ code: null, signal: null, error: err })
      })
    })
    try {
      await waitFor(
        async () => {
          if (!this.alive) throw new Error("server process exited during start-up")
          return canConnect(this.port)
        },
        timeoutMs,
        `server to accept connections on 127.0.0.1:${this.port}`,
        { interval: 25 },
      )
    } catch (e) {
      this.signal("SIGKILL")
      throw new Error(`${e.message}\ncommand: ${[cmd, ...args].join(" ")}\nserver output:\n${this.logTail()}`)
    }
    return this
  }

  signal(sig) {
    if (!this.alive) return
    try {
      process.kill(-this.proc.pid, sig)
    } catch {
      try {
        this.proc.kill(sig)
      } catch {}
    }
  }

  /**
   * Graceful stop: SIGTERM, then SIGKILL if it has not exited after timeoutMs.
   * Resolves to {code, signal, forced}; forced is true if SIGKILL was needed.
   */
  async stop(timeoutMs = 10000) {
    if (!this.proc) return null
    if (this.alive) {
      this.signal("SIGTERM")
      try {
        return { ...(await withTimeout(this.exited, timeoutMs, "server to exit after SIGTERM")), forced: false }
      } catch {
        this.signal("SIGKILL")
        return { ...(await withTimeout(this.exited, 5000, "server to exit after SIGKILL")), forced: true }
      }
    }
    return { ...(await this.exited), forced: false }
  }

  /** Hard kill (SIGKILL), waits until the process is gone. */
  async kill() {
    if (!this.proc) return null
    this.signal("SIGKILL")
    return withTimeout(this.exited, 5000, "server to exit after SIGKILL")
  }

  /** SIGTERM (graceful) then start again on the same port and directory. */
  async restart() {
    await this.stop()
    return this.start()
  }

  /** Stops the server and removes its data directory if the harness created it. */
  async dispose() {
    await this.stop()
    if (this.ownsDir) rmSync(this.dir, { recursive: true, force: true })
  }
}

export function tempDir(prefix = "tandem-interop-") {
  return mkdtempSync(join(os.tmpdir(), prefix))
}

/**
 * Starts the server under test on a fresh free port and (unless given) a fresh
 * data directory; extraArgs are appended to its command line.
 */
export async function startServer({ dir, extraArgs } = {}) {
  const port = await freePort()
  const server = new Server({ port, dir: dir ?? tempDir("tandem-server-"), ownsDir: !dir, extraArgs })
  return server.start()
}

// ---------------------------------------------------------------- clients

/**
 * The real automerge-repo WebSocket client adapter with three fixes for
 * client-side bugs of 2.5.6 that do not change anything on the wire:
 *  - once disconnected it stays disconnected (2.5.6 can otherwise reconnect
 *    from a pending retry timer after disconnect(), keeping the process alive);
 *  - socket errors other than ECONNREFUSED (e.g. ECONNRESET when the server is
 *    killed) are not rethrown from the event handler, which in 2.5.6 crashes
 *    the process; the close event that follows triggers the normal reconnect;
 *  - a message sent while the socket is not open is dropped, as automerge-repo
 *    2.6 does, instead of throwing "Websocket not ready": in 2.5.6 that throw
 *    happens inside the document update that answers a sync message, and
 *    leaves the handle unusable for good ("Attempting to change an outdated
 *    document"), so one server-side disconnect at the wrong moment would stop
 *    that client from ever syncing the document again.
 */
class TestClientAdapter extends BrowserWebSocketClientAdapter {
  #closed = false
  // traffic counters (protocol messages and their `data` bytes), for diagnostics
  traffic = { sent: 0, sentBytes: 0, received: 0, receivedBytes: 0 }
  // `error` messages from the server (the adapter itself only logs them),
  // collected once a test sets recordErrors (decoding costs CPU)
  recordErrors = false
  errors = []
  onError = () => {}
  connect(peerId, peerMetadata) {
    if (this.#closed) return
    super.connect(peerId, peerMetadata)
  }
  disconnect() {
    this.#closed = true
    if (this.socket && this.peerId) super.disconnect()
  }
  send(message) {
    if (this.socket && this.socket.readyState !== this.socket.OPEN) return
    super.send(message)
    this.traffic.sent++
    this.traffic.sentBytes += message.data?.byteLength ?? 0
  }
  receiveMessage(messageBytes) {
    this.traffic.received++
    if (this.recordErrors) {
      try {
        const m = cbor.decode(new Uint8Array(messageBytes))
        if (m?.type === "error") this.errors.push(m)
      } catch {}
    }
    super.receiveMessage(messageBytes)
  }
}

/** Sums the traffic counters of clients: "N messages (B bytes of data) received, ... sent". */
export function trafficReport(clients) {
  const t = { sent: 0, sentBytes: 0, received: 0 }
  for (const c of clients) {
    t.sent += c.adapter.traffic.sent
    t.sentBytes += c.adapter.traffic.sentBytes
    t.received += c.adapter.traffic.received
  }
  return `${clients.length} clients received ${t.received} messages and sent ${t.sent} (${t.sentBytes} bytes of sync data)`
}

export class Client {
  /**
   * @param {string} url ws:// URL of the server
   * @param {{storageDir?: string, retryInterval?: number}} opts
   */
  constructor(url, { storageDir, retryInterval = 5000 } = {}) {
    this.adapter = new TestClientAdapter(url, retryInterval)
    this.repo = new Repo({
      network: [this.adapter],
      storage: storageDir ? new NodeFSStorageAdapter(storageDir) : undefined,
    })
    // The heads the server last advertised to us, per document (from the
    // Automerge sync state of our connection to it).
    this.serverHeads = new Map()
    this.repo.synchronizer.on("sync-state", ({ documentId, syncState }) => {
      this.serverHeads.set(documentId, syncState.theirHeads ?? [])
    })
    // Connection drops seen while this client was meant to be open.
    this.disconnects = 0
    this.adapter.on("peer-disconnected", () => {
      if (!this.closed) this.disconnects++
    })
    this.closed = false
  }

  get peerId() {
    return this.repo.peerId
  }

  /** True when the client has a connected peer (i.e. the server answered join). */
  get connected() {
    return this.repo.peers.length > 0
  }

  async waitConnected(timeoutMs = 10000) {
    await waitFor(() => this.connected, timeoutMs, `client ${this.peerId} to be connected`)
    return this
  }

  create(initial) {
    return this.repo.create(initial)
  }

  /** repo.find with a deadline (find() itself can wait 60 s for an unresponsive peer). */
  find(url, timeoutMs = 10000) {
    return withTimeout(this.repo.find(url, { signal: AbortSignal.timeout(timeoutMs + 1000) }), timeoutMs, `find(${url})`)
  }

  /** Waits until the server has acknowledged exactly this client's current heads of handle's document. */
  async waitServerHas(handle, timeoutMs = 10000) {
    await waitFor(
      () => sameHeads(this.serverHeads.get(handle.documentId) ?? [], Automerge.getHeads(handle.doc())),
      timeoutMs,
      `server to acknowledge heads of ${handle.url} from ${this.peerId}`,
      {
        describe: () =>
          `local ${JSON.stringify(Automerge.getHeads(handle.doc()))} server ${JSON.stringify(this.serverHeads.get(handle.documentId))}`,
      },
    )
  }

  async close() {
    if (this.closed) return
    this.closed = true
    await withTimeout(this.repo.shutdown(), 10000, `shutdown of client ${this.peerId}`)
  }
}

/** Connects a new client (no storage unless storageDir is given) and waits until the server answered join. */
export async function connectClient(server, opts) {
  const c = new Client(typeof server === "string" ? server : server.url, opts)
  try {
    return await c.waitConnected()
  } catch (e) {
    await c.close().catch(() => {})
    throw e
  }
}

/**
 * Returns connect(server, opts) for use inside one test: every client it
 * connects is closed when that test ends (t.after), pass or fail.
 */
export function clientsOf(t) {
  const list = []
  t.after(() => closeAll(list))
  const connect = async (server, opts) => {
    const c = await connectClient(server, opts)
    list.push(c)
    return c
  }
  connect.all = list
  return connect
}

export async function closeAll(clients) {
  await Promise.all(clients.filter(Boolean).map(c => c.close()))
}

// ---------------------------------------------------------------- documents

export function sortedHeads(doc) {
  return [...Automerge.getHeads(doc)].sort()
}

export function sameHeads(a, b) {
  if (a.length === 0 || a.length !== b.length) return false
  const sa = [...a].sort()
  const sb = [...b].sort()
  return sa.every((h, i) => h === sb[i])
}

/** Heads (sorted) and canonical JSON of a handle's document. */
export function snapshot(handle) {
  const doc = handle.doc()
  return { heads: sortedHeads(doc), json: JSON.stringify(canonical(doc)) }
}

/**
 * Waits until all handles have the same non-empty heads and identical JSON;
 * returns that snapshot. `clients` (optional) only enriches the failure message.
 */
export async function waitConverged(handles, timeoutMs = 30000, { clients = [] } = {}) {
  let snaps = []
  await waitFor(
    () => {
      // Heads first (cheap); the JSON only once all heads agree. Polling must
      // not eat the CPU the clients need to answer the server's pings.
      const heads = handles.map(h => sortedHeads(h.doc()))
      snaps = heads.map(h => ({ heads: h, json: null }))
      if (heads[0].length === 0 || !heads.every(h => sameHeads(h, heads[0]))) return false
      snaps = handles.map(snapshot)
      return snaps.every(s => sameHeads(s.heads, snaps[0].heads) && s.json === snaps[0].json)
    },
    timeoutMs,
    `${handles.length} replicas to converge`,
    {
      interval: 100,
      describe: () => {
        const distinct = new Map()
        for (const s of snaps) distinct.set(s.heads.join(","), (distinct.get(s.heads.join(",")) ?? 0) + 1)
        let d = `${distinct.size} distinct head sets: ${[...distinct.entries()].map(([h, n]) => `${n}×[${h.slice(0, 40)}…]`).join(" ")}`
        const dropped = clients.filter(c => c.disconnects > 0)
        if (dropped.length) {
          d += `\n${dropped.length} of ${clients.length} clients lost their connection during the test (${dropped.map(c => `${c.peerId}×${c.disconnects}`).join(", ")})`
        }
        return d
      },
    },
  )
  return snaps[0]
}

export { Automerge, canonical }
