import { Automerge, connectClient, startServer, closeAll, waitConverged, eventLoopReport } from "./lib/harness.mjs"
const server = await startServer()
const N = 30
const cs = await Promise.all(Array.from({ length: N }, () => connectClient(server)))
const st = { in: 0, inBytes: 0, out: 0, outBytes: 0, maxIn: 0 }
for (const c of cs) {
  c.adapter.on("message", m => { st.in++; st.inBytes += m.data?.byteLength ?? 0; st.maxIn = Math.max(st.maxIn, m.data?.byteLength ?? 0) })
  const o = c.adapter.send.bind(c.adapter); c.adapter.send = m => { st.out++; st.outBytes += m.data?.byteLength ?? 0; return o(m) }
}
const t0 = Date.now()
const h0 = cs[0].create({ counter: new Automerge.Counter(0), byClient: {}, events: [] })
await cs[0].waitServerHas(h0)
const handles = [h0, ...(await Promise.all(cs.slice(1).map(c => c.find(h0.url, 20_000))))]
console.log("found", Date.now() - t0, JSON.stringify(st))
await Promise.all(handles.map(async (h, i) => { for (let k = 0; k < 3; k++) { h.change(d => { d.counter.increment(1); d.byClient[`c${i}`] = k; d.events.push(`${i}:${k}`) }); await new Promise(r => setTimeout(r, 5 * ((i + k) % 7))) } }))
try { await waitConverged(handles, 45000, { clients: cs }); console.log("converged", Date.now() - t0) } catch (e) { console.log(e.message) }
console.log(JSON.stringify(st), eventLoopReport(), "disconnects", cs.reduce((n, c) => n + c.disconnects, 0))
await closeAll(cs); await server.dispose()
