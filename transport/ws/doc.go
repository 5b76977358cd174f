// Package ws carries the automerge-repo protocol over WebSocket, using
// gorilla/websocket. Accept upgrades an incoming HTTP request (server side)
// and Dial opens a connection (client side); both return a transport.Conn.
//
// Every protocol message is one binary WebSocket message holding one CBOR
// map (see package transport). Text messages, empty messages and messages
// over Config.MaxMessageSize are reported by ReadMessage with ErrTextFrame,
// ErrEmptyFrame and ErrTooLarge.
//
// Each connection runs two goroutines of its own, both stopped by Close:
//
//   - a reader, which reads one message ahead of ReadMessage and handles
//     control frames (answers pings, notes pongs). Because it reads even
//     while nobody calls ReadMessage, a peer's close or silence is noticed
//     and Done closes. It holds at most one message until ReadMessage takes
//     it (a slow consumer pushes back on the peer through TCP); while it
//     holds one it reads nothing, and the liveness check is suspended.
//   - a keepalive, which sends a ping every Config.PingInterval, as the
//     JavaScript server does (JavaScript clients never ping, but browsers
//     and Node answer pings). A peer from which nothing at all has arrived
//     since the previous ping is dropped at the next tick, so within two
//     intervals of falling silent: ReadMessage returns an error wrapping
//     ErrPeerTimeout and transport.ErrClosed, and Done closes.
//
// Writes happen in the caller's goroutine. A message up to 1 MiB is one
// frame written under one deadline (Config.WriteTimeout); a larger one is
// sent as a fragmented message whose deadline is renewed for each MiB, so a
// large document reaches a slow but live peer, and pings can be interleaved
// between its fragments.
package ws
