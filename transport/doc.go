// Package transport is the wire layer of Tandem: the automerge-repo v1
// message codec and the connection interface the engine talks through.
//
// # Messages
//
// Every protocol message travels as one CBOR map with text keys (one
// WebSocket binary message each). [Message] holds the fields of every
// message type; [Decode] turns a frame into a Message and [Encode] does the
// reverse. The codec follows what real JavaScript automerge-repo 2.5.x peers
// send and accept:
//
//   - Decode is lenient where JavaScript peers vary: any map header form
//     (cbor-x always sends the 2-byte-count form b9 00 NN), any key order,
//     CBOR undefined or null for an absent optional value, count and
//     timestamp as unsigned integer or float, and unknown keys (ignored, or
//     kept in [Message.Extra] for ephemeral messages so a relay can forward
//     them unchanged).
//   - Decode is strict where a wrong type would break a peer: the top level
//     must be a map with a text "type"; documentId must be text (never bytes);
//     data must be a byte string; every known field must have its type.
//   - Encode writes only what JavaScript accepts: text keys, absent optional
//     fields omitted (never undefined or null), data as a byte string, count
//     as an unsigned integer, timestamp as float64, isEphemeral always present
//     inside peerMetadata. It refuses to write an empty data for the message
//     types that require one, since JavaScript peers throw on those.
//
// Decode checks structure only; [Message.Validate] checks the fields each
// message type requires. Whether a documentId is valid base58check is the
// engine's concern.
//
// Errors are wrapped sentinels ([ErrMalformed], [ErrMissingField],
// [ErrUnknownType], [ErrTooLarge], ...) to be tested with errors.Is.
//
// # Connections
//
// [Conn] is one established protocol connection (a WebSocket in
// production, see package transport/ws). [Pipe] gives a connected in-memory
// pair for tests: it runs every message through Encode and Decode, so a test
// sees the same errors a real socket would give.
package transport
