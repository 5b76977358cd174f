package transport

import (
	"context"
	"fmt"
	"sync"
)

// PipeBuffer is how many messages each direction of a Pipe holds before
// WriteMessage blocks.
const PipeBuffer = 16

// Pipe returns the two ends of an in-memory connection, for tests of code
// that uses Conn. What one end writes the other reads, in order. Each message
// goes through Encode and Decode, so the ends see the same errors a real
// connection gives (an empty sync data fails in WriteMessage, an unknown type
// arrives with ErrUnknownType) and never share memory.
//
// Each direction buffers PipeBuffer messages; then WriteMessage blocks until
// the reader catches up, ctx ends or the pipe is closed. Closing either end
// closes both: Done is closed on both ends, writes fail with ErrClosed, the
// closing end's reads fail at once, and the other end first reads what was
// already buffered. RemoteAddr is "pipe:a" or "pipe:b", naming the other end.
func Pipe() (Conn, Conn) {
	s := &pipeState{done: make(chan struct{})}
	ab := make(chan []byte, PipeBuffer)
	ba := make(chan []byte, PipeBuffer)
	a := &pipeConn{state: s, side: 'a', in: ba, out: ab, remote: "pipe:b"}
	b := &pipeConn{state: s, side: 'b', in: ab, out: ba, remote: "pipe:a"}
	return a, b
}

// pipeState is shared by both ends. closer and reason are written once,
// before done is closed, and read only after done is closed.
type pipeState struct {
	once   sync.Once
	done   chan struct{}
	closer byte
	reason error
}

type pipeConn struct {
	state  *pipeState
	side   byte
	in     <-chan []byte
	out    chan<- []byte
	remote string
}

func (c *pipeConn) closed() bool {
	select {
	case <-c.state.done:
		return true
	default:
		return false
	}
}

// closedErr describes the closure; call it only once done is closed.
func (c *pipeConn) closedErr() error {
	s := c.state
	switch {
	case s.closer == c.side && s.reason != nil:
		return fmt.Errorf("%w: %w", ErrClosed, s.reason)
	case s.closer == c.side:
		return ErrClosed
	case s.reason != nil:
		return fmt.Errorf("%w by peer: %v", ErrClosed, s.reason)
	default:
		return fmt.Errorf("%w by peer", ErrClosed)
	}
}

// afterClose is ReadMessage once the pipe is closed: the end that did not
// close still gets what was buffered before the close.
func (c *pipeConn) afterClose() (Message, error) {
	if c.state.closer != c.side {
		select {
		case b := <-c.in:
			return Decode(b)
		default:
		}
	}
	return Message{}, c.closedErr()
}

func (c *pipeConn) ReadMessage(ctx context.Context) (Message, error) {
	if c.closed() {
		return c.afterClose()
	}
	if err := ctx.Err(); err != nil {
		return Message{}, err
	}
	select {
	case b := <-c.in:
		return Decode(b)
	case <-c.state.done:
		return c.afterClose()
	case <-ctx.Done():
		return Message{}, ctx.Err()
	}
}

func (c *pipeConn) WriteMessage(ctx context.Context, m Message) error {
	if c.closed() {
		return c.closedErr()
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	b, err := Encode(m)
	if err != nil {
		return err
	}
	select {
	case c.out <- b:
		return nil
	case <-c.state.done:
		return c.closedErr()
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *pipeConn) Close(reason error) error {
	c.state.once.Do(func() {
		c.state.closer = c.side
		c.state.reason = reason
		close(c.state.done)
	})
	return nil
}

func (c *pipeConn) RemoteAddr() string { return c.remote }

func (c *pipeConn) Done() <-chan struct{} { return c.state.done }
