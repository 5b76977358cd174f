package transport

import "context"

// Conn is one established protocol connection. ReadMessage is called by one
// goroutine only and WriteMessage by one goroutine only (they may run
// concurrently with each other); Close may be called from any goroutine, any
// number of times.
//
// Error contract, for every implementation in this module:
//
//   - An error that wraps ErrClosed means the connection is closed and every
//     later call fails the same way; it often also wraps the reason (for
//     example ErrTooLarge or ErrPeerTimeout, or the peer's close).
//   - ReadMessage errors that do not wrap ErrClosed concern one frame only
//     (ErrMalformed, ErrUnknownType, ErrTextFrame, ErrEmptyFrame, ...); the
//     connection stays usable and the caller decides whether to go on
//     reading or to Close it. ErrUnknownType comes with the decoded Message.
//   - WriteMessage errors from encoding (ErrMissingField, ErrMalformed) leave
//     the connection usable; nothing was sent.
//   - ReadMessage does not call Message.Validate; the caller does.
//   - A ctx that ends while ReadMessage waits makes it return ctx.Err() and
//     leaves the connection usable. A ctx that ends while WriteMessage is
//     sending may close the connection, since half a message cannot be taken
//     back.
type Conn interface {
	// ReadMessage returns the next message from the peer.
	ReadMessage(ctx context.Context) (Message, error)
	// WriteMessage encodes m and sends it as one message.
	WriteMessage(ctx context.Context, m Message) error
	// Close closes the connection. reason (may be nil) is why; it is kept
	// for the errors later calls return. Only the first call has an effect.
	Close(reason error) error
	// RemoteAddr describes the peer's address, for logs.
	RemoteAddr() string
	// Done is closed once the connection is closed (by either side).
	Done() <-chan struct{}
}
