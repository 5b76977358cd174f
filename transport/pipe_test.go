package transport

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// waitTimeout bounds every wait on a condition in these tests.
const waitTimeout = 5 * time.Second

func syncMsg(i int) Message {
	return Message{Type: TypeSync, SenderID: "a", TargetID: "b", DocumentID: "d", Data: []byte{0x42, byte(i)}}
}

func TestPipeRoundTrip(t *testing.T) {
	a, b := Pipe()
	defer a.Close(nil)
	ctx := context.Background()
	if err := a.WriteMessage(ctx, syncMsg(1)); err != nil {
		t.Fatal(err)
	}
	got, err := b.ReadMessage(ctx)
	if err != nil || got.Data[1] != 1 || got.Type != TypeSync {
		t.Fatalf("b read %+v, %v", got, err)
	}
	if err := b.WriteMessage(ctx, Message{Type: TypeDocUnavailable, SenderID: "b", TargetID: "a", DocumentID: "d"}); err != nil {
		t.Fatal(err)
	}
	if got, err := a.ReadMessage(ctx); err != nil || got.Type != TypeDocUnavailable {
		t.Fatalf("a read %+v, %v", got, err)
	}
	if a.RemoteAddr() != "pipe:b" || b.RemoteAddr() != "pipe:a" {
		t.Fatalf("RemoteAddr %q %q", a.RemoteAddr(), b.RemoteAddr())
	}
}

func TestPipeCopiesMessages(t *testing.T) {
	a, b := Pipe()
	defer a.Close(nil)
	m := syncMsg(1)
	if err := a.WriteMessage(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	m.Data[1] = 99
	got, err := b.ReadMessage(context.Background())
	if err != nil || got.Data[1] != 1 {
		t.Fatalf("read %+v, %v; writer's later change leaked through", got, err)
	}
}

func TestPipeCodecErrors(t *testing.T) {
	a, b := Pipe()
	defer a.Close(nil)
	ctx := context.Background()
	if err := a.WriteMessage(ctx, Message{Type: TypeSync, SenderID: "a"}); !errors.Is(err, ErrMissingField) {
		t.Fatalf("empty data: %v", err)
	}
	if err := a.WriteMessage(ctx, Message{Type: "future", SenderID: "a"}); err != nil {
		t.Fatal(err)
	}
	m, err := b.ReadMessage(ctx)
	if !errors.Is(err, ErrUnknownType) || m.Type != "future" || m.SenderID != "a" {
		t.Fatalf("unknown type: %+v, %v", m, err)
	}
	// Still usable.
	if err := a.WriteMessage(ctx, syncMsg(2)); err != nil {
		t.Fatal(err)
	}
	if _, err := b.ReadMessage(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestPipeBoundedAndContext(t *testing.T) {
	a, b := Pipe()
	defer b.Close(nil)
	for i := range PipeBuffer {
		if err := a.WriteMessage(context.Background(), syncMsg(i)); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := a.WriteMessage(ctx, syncMsg(0)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("write to a full pipe: %v", err)
	}
	cancelled, cancel2 := context.WithCancel(context.Background())
	cancel2()
	if _, err := a.ReadMessage(cancelled); !errors.Is(err, context.Canceled) {
		t.Fatalf("read with cancelled ctx: %v", err)
	}
	// A blocked writer proceeds once the reader takes one message.
	done := make(chan error, 1)
	go func() { done <- a.WriteMessage(context.Background(), syncMsg(100)) }()
	if _, err := b.ReadMessage(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("blocked writer did not proceed")
	}
}

func TestPipeClose(t *testing.T) {
	a, b := Pipe()
	ctx := context.Background()
	for i := range 3 {
		if err := a.WriteMessage(ctx, syncMsg(i)); err != nil {
			t.Fatal(err)
		}
	}
	// A reader blocked on an empty direction is released by Close.
	readErr := make(chan error, 1)
	go func() { _, err := a.ReadMessage(ctx); readErr <- err }()

	reason := errors.New("test is over")
	if err := a.Close(reason); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(nil); err != nil {
		t.Fatal("second Close:", err)
	}
	select {
	case err := <-readErr:
		if !errors.Is(err, ErrClosed) || !errors.Is(err, reason) {
			t.Fatalf("pending read: %v", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("Close did not release a pending ReadMessage")
	}
	for _, c := range []Conn{a, b} {
		select {
		case <-c.Done():
		default:
			t.Fatal("Done not closed")
		}
	}
	// The other end still reads what was buffered, then ErrClosed.
	for i := range 3 {
		m, err := b.ReadMessage(ctx)
		if err != nil || m.Data[1] != byte(i) {
			t.Fatalf("buffered message %d: %+v, %v", i, m, err)
		}
	}
	if _, err := b.ReadMessage(ctx); !errors.Is(err, ErrClosed) || errors.Is(err, reason) {
		t.Fatalf("read after drain: %v", err)
	}
	if err := b.WriteMessage(ctx, syncMsg(0)); !errors.Is(err, ErrClosed) {
		t.Fatalf("write after peer close: %v", err)
	}
	if err := a.WriteMessage(ctx, syncMsg(0)); !errors.Is(err, ErrClosed) {
		t.Fatalf("write after close: %v", err)
	}
	if _, err := a.ReadMessage(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("read after close: %v", err)
	}
}

func TestPipeCloseReleasesBlockedWriter(t *testing.T) {
	a, b := Pipe()
	for i := range PipeBuffer {
		if err := a.WriteMessage(context.Background(), syncMsg(i)); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 1)
	go func() { done <- a.WriteMessage(context.Background(), syncMsg(0)) }()
	b.Close(nil)
	select {
	case err := <-done:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("blocked write: %v", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("Close did not release a blocked WriteMessage")
	}
}

// TestPipeConcurrent runs one reader and one writer per end plus concurrent
// Close calls; meant for -race.
func TestPipeConcurrent(t *testing.T) {
	a, b := Pipe()
	const n = 500
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for _, ends := range [][2]Conn{{a, b}, {b, a}} {
		w, r := ends[0], ends[1]
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := range n {
				if err := w.WriteMessage(context.Background(), syncMsg(i)); err != nil {
					errs <- fmt.Errorf("write %d: %w", i, err)
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			for i := range n {
				m, err := r.ReadMessage(context.Background())
				if err != nil {
					errs <- fmt.Errorf("read %d: %w", i, err)
					return
				}
				if m.Data[1] != byte(i) {
					errs <- fmt.Errorf("read %d: out of order (%d)", i, m.Data[1])
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	var cw sync.WaitGroup
	for range 4 {
		cw.Add(2)
		go func() { defer cw.Done(); a.Close(nil) }()
		go func() { defer cw.Done(); b.Close(nil) }()
	}
	cw.Wait()
	<-a.Done()
}
