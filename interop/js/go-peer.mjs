// A real automerge-repo client that edits a document together with a Go
// client, for the Go test TestGoAndJavaScriptClientsConverge.
//
// Usage: node go-peer.mjs WS_URL AUTOMERGE_URL ROUNDS
//
// It finds the document, writes js/<i> = i for i < ROUNDS (one change each),
// waits until the document holds go/<i> for every i < ROUNDS (written by the
// Go client), then prints one JSON line {"heads": [...hex], "doc": {...}} and
// keeps syncing until its standard input closes. Every wait has a deadline.

import * as Automerge from "@automerge/automerge"
import { Repo } from "@automerge/automerge-repo"
import { BrowserWebSocketClientAdapter } from "@automerge/automerge-repo-network-websocket"
import { canonical } from "./lib/json.mjs"

const [wsUrl, docUrl, roundsArg] = process.argv.slice(2)
const rounds = Number(roundsArg)
if (!wsUrl || !docUrl || !Number.isInteger(rounds) || rounds < 1) {
  process.stderr.write("usage: node go-peer.mjs WS_URL AUTOMERGE_URL ROUNDS\n")
  process.exit(2)
}
const deadline = setTimeout(() => {
  process.stderr.write("go-peer: timed out\n")
  process.exit(3)
}, 60_000)

const repo = new Repo({ network: [new BrowserWebSocketClientAdapter(wsUrl)] })
const handle = await repo.find(docUrl)
for (let i = 0; i < rounds; i++) {
  handle.change(d => {
    d.js[String(i)] = i
  })
}
const hasAllGo = () => {
  const d = handle.doc()
  return d && d.go && Object.keys(d.go).length >= rounds
}
while (!hasAllGo()) {
  await new Promise(r => setTimeout(r, 20))
}
const doc = handle.doc()
process.stdout.write(JSON.stringify({ heads: Automerge.getHeads(doc), doc: canonical(doc) }) + "\n")

process.stdin.resume()
process.stdin.on("end", async () => {
  clearTimeout(deadline)
  await repo.shutdown()
  process.exit(0)
})
