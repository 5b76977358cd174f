import { randomBytes } from "node:crypto"
import { Automerge, connectClient, startServer, sleep, closeAll } from "./lib/harness.mjs"
const server = await startServer()
const a = await connectClient(server)
const stats = { in: 0, inBytes: 0, out: 0, outBytes: 0 }
a.adapter.on("message", m => { stats.in++; stats.inBytes += m.data?.byteLength ?? 0 })
const origSend = a.adapter.send.bind(a.adapter)
a.adapter.send = m => { stats.out++; stats.outBytes += m.data?.byteLength ?? 0; return origSend(m) }
const big = process.argv[2] === "big"
const h = a.create({ log: "", blobs: [] })
h.change(d => { Automerge.splice(d, ["log"], 0, 0, randomBytes(big ? 150000 : 1500).toString("base64")) })
h.change(d => { for (let i = 0; i < (big ? 400 : 4); i++) d.blobs.push(new Automerge.ImmutableString(randomBytes(5625).toString("base64"))) })
await a.waitServerHas(h, 30000)
console.log("server has it", JSON.stringify(stats))
const b = await connectClient(server)
const bs = { in: 0, inBytes: 0 }
b.adapter.on("message", m => { bs.in++; bs.inBytes += m.data?.byteLength ?? 0 })
const t0 = Date.now(); const hb = await b.find(h.url, 30000); console.log("b found in", Date.now() - t0)
for (let i = 0; i < 8; i++) { await sleep(2000); console.log(i, JSON.stringify(stats), "connected", a.connected, "disc", a.disconnects, "B", JSON.stringify(bs), b.connected, b.disconnects) }
await closeAll([a, b]); await server.dispose()
