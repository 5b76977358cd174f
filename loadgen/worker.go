package loadgen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/tandemsync/tandem/crdt"
)

// The coordinator of a run over several processes (Config.Procs) and its
// workers talk in JSON values, one per line: commands on the worker's
// stdin, replies and reports on its stdout. A worker answers each command
// with one reply (or "error") and, meanwhile, streams "events" (the changes
// its writers made and the deliveries its receivers saw, every
// flushInterval) and "progress". Replies to a phase come after the events of
// every change the phase made, so that the coordinator knows how many
// changes to wait for.
const (
	opSetup   = "setup"   // connect clients, create the documents of groups led here → created
	opOpen    = "open"    // open the documents on the other members, start receivers → ready
	opPhase   = "phase"   // write from Start to End at Rate → phase_done
	opTraffic = "traffic" // → traffic
	opHeads   = "heads"   // → heads
	opClose   = "close"   // close the clients and exit

	msgCreated   = "created"
	msgReady     = "ready"
	msgPhaseDone = "phase_done"
	msgTraffic   = "traffic"
	msgHeads     = "heads"
	msgEvents    = "events"
	msgProgress  = "progress"
	msgError     = "error"

	flushInterval = 100 * time.Millisecond
)

type workerCmd struct {
	Op string `json:"op"`

	// setup
	URL         string      `json:"url,omitempty"`
	Widgets     int         `json:"widgets,omitempty"`
	History     int         `json:"history,omitempty"`
	Preload     bool        `json:"preload,omitempty"`
	Light       bool        `json:"light,omitempty"`
	Capacity    int         `json:"capacity,omitempty"`
	Concurrency int         `json:"concurrency,omitempty"`
	Seed        int64       `json:"seed,omitempty"`
	Deadline    int64       `json:"deadline,omitempty"` // unix nanos: the worker gives up then
	Groups      []wGroup    `json:"groups,omitempty"`
	Templates   []*template `json:"templates,omitempty"`

	// open: group → document id
	Docs map[int]string `json:"docs,omitempty"`

	// phase
	Phase int32   `json:"phase"`
	Rate  float64 `json:"rate,omitempty"`
	Start int64   `json:"start,omitempty"` // unix nanos
	End   int64   `json:"end,omitempty"`
}

// wGroup is a group with some members in the worker.
type wGroup struct {
	G       int   `json:"g"`       // index in the run
	Size    int   `json:"size"`    // members in all
	Writers int   `json:"writers"` // members 0..Writers-1 write
	Base    int   `json:"base"`    // index in the run of its first member
	Members []int `json:"members"` // the worker's members, by index in the group
}

type workerMsg struct {
	Type string `json:"type"`
	Err  string `json:"err,omitempty"`

	// progress: units done in a stage of the setup
	Stage string `json:"stage,omitempty"`
	N     int64  `json:"n,omitempty"`

	// created: group → document id
	Docs map[int]string `json:"docs,omitempty"`

	// events: made rows are {group, writer, n, sent}, recv rows {group,
	// writer, n, receivers, latest delivery}; times in unix nanos (one
	// machine, one clock).
	Made [][4]int64 `json:"made,omitempty"`
	Recv [][5]int64 `json:"recv,omitempty"`

	// phase_done
	Phase int32 `json:"phase"`
	Errs  int64 `json:"errs,omitempty"`

	// traffic
	Sent       int64 `json:"sent,omitempty"`
	Received   int64 `json:"received,omitempty"`
	Unreadable int64 `json:"unreadable,omitempty"` // sync messages light clients could not read

	// heads: per group, the heads the worker's members agree on; Split
	// lists groups whose members here do not agree yet.
	Heads map[int][]string `json:"heads,omitempty"`
	Split []int            `json:"split,omitempty"`
}

// eventSink gathers a worker's changes and deliveries between flushes.
// Deliveries are summed per change: the coordinator needs only how many
// of the worker's clients have a change and when the last one got it.
type eventSink struct {
	mu    sync.Mutex
	madeQ [][4]int64
	recv  map[[3]int64]*[2]int64

	flushMu sync.Mutex // orders flushes, so a phase's reply follows its events
}

func newEventSink() *eventSink { return &eventSink{recv: map[[3]int64]*[2]int64{}} }

func (s *eventSink) made(g, w int, n, sent int64, _ int32) {
	s.mu.Lock()
	s.madeQ = append(s.madeQ, [4]int64{int64(g), int64(w), n, sent})
	s.mu.Unlock()
}

func (s *eventSink) received(g, w int, n, at int64) {
	k := [3]int64{int64(g), int64(w), n}
	s.mu.Lock()
	if a := s.recv[k]; a != nil {
		a[0]++
		a[1] = max(a[1], at)
	} else {
		s.recv[k] = &[2]int64{1, at}
	}
	s.mu.Unlock()
}

// flush sends what was gathered since the last flush.
func (s *eventSink) flush(send func(workerMsg) error) error {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	s.mu.Lock()
	made, recv := s.madeQ, s.recv
	s.madeQ, s.recv = nil, map[[3]int64]*[2]int64{}
	s.mu.Unlock()
	if len(made) == 0 && len(recv) == 0 {
		return nil
	}
	rows := make([][5]int64, 0, len(recv))
	for k, a := range recv {
		rows = append(rows, [5]int64{k[0], k[1], k[2], a[0], a[1]})
	}
	return send(workerMsg{Type: msgEvents, Made: made, Recv: rows})
}

// RunWorker is the worker side of a run spread over processes
// (Config.Procs; `tandem bench` starts its own binary as `tandem
// bench-worker`). It reads commands from in and writes replies to out until
// in ends, a close command, the deadline the coordinator set, or ctx ends;
// then it closes its clients.
func RunWorker(ctx context.Context, in io.Reader, out io.Writer) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var sendMu sync.Mutex
	enc := json.NewEncoder(out)
	send := func(m workerMsg) error {
		sendMu.Lock()
		defer sendMu.Unlock()
		return enc.Encode(m)
	}
	cmds := make(chan workerCmd)
	go func() {
		// The end of in means the coordinator is gone: stop everything.
		defer cancel()
		dec := json.NewDecoder(in)
		for {
			var c workerCmd
			if err := dec.Decode(&c); err != nil {
				return
			}
			select {
			case cmds <- c:
			case <-ctx.Done():
				return
			}
		}
	}()

	w := &worker{send: send}
	defer w.close()
	for {
		var c workerCmd
		select {
		case <-ctx.Done():
			if w.lr == nil {
				return nil // the coordinator left before any work
			}
			return fmt.Errorf("loadgen: worker stopped: %w", context.Cause(ctx))
		case c = <-cmds:
		}
		if c.Op == opClose {
			return nil
		}
		reply, err := w.do(ctx, cancel, c)
		if err != nil {
			reply = workerMsg{Type: msgError, Err: err.Error()}
		}
		if serr := send(reply); serr != nil {
			return serr
		}
	}
}

// worker is the state of RunWorker between commands.
type worker struct {
	send      func(workerMsg) error
	lr        *loadRun
	flushStop chan struct{}
	flushDone chan struct{}
	deadline  *time.Timer
}

var errWorkerState = errors.New("loadgen: worker: command out of order")

func (w *worker) do(ctx context.Context, cancel context.CancelFunc, c workerCmd) (workerMsg, error) {
	if c.Op != opSetup && w.lr == nil {
		return workerMsg{}, fmt.Errorf("%w: %q before setup", errWorkerState, c.Op)
	}
	switch c.Op {
	case opSetup:
		if w.lr != nil {
			return workerMsg{}, fmt.Errorf("%w: setup twice", errWorkerState)
		}
		if c.Deadline > 0 {
			w.deadline = time.AfterFunc(time.Until(time.Unix(0, c.Deadline)), cancel)
		}
		return w.setup(ctx, c)
	case opOpen:
		return w.open(ctx, c)
	case opPhase:
		return w.phase(ctx, c)
	case opTraffic:
		sent, recv := w.lr.traffic()
		return workerMsg{Type: msgTraffic, Sent: sent, Received: recv, Unreadable: w.lr.unreadable()}, nil
	case opHeads:
		m := workerMsg{Type: msgHeads, Heads: map[int][]string{}}
		for g, hs := range w.lr.localHeads(ctx) {
			if hs == nil {
				m.Split = append(m.Split, g)
				continue
			}
			s := make([]string, len(hs))
			for i, h := range hs {
				s[i] = h.String()
			}
			m.Heads[g] = s
		}
		return m, nil
	}
	return workerMsg{}, fmt.Errorf("%w: unknown command %q", errWorkerState, c.Op)
}

func (c *workerCmd) validate() error {
	bad := func(f string, a ...any) error {
		return fmt.Errorf("%w: worker setup: "+f, append([]any{ErrConfig}, a...)...)
	}
	if err := CheckLoopback(c.URL); err != nil {
		return err
	}
	switch {
	case c.Widgets < 1 || c.Widgets > maxWidgets:
		return bad("widgets %d", c.Widgets)
	case c.Capacity < 1 || c.Capacity > maxChanges:
		return bad("capacity %d", c.Capacity)
	case c.Concurrency < 1 || c.Concurrency > 4096:
		return bad("concurrency %d", c.Concurrency)
	case c.History < 0 || c.History > maxHistory:
		return bad("history %d", c.History)
	case len(c.Groups) == 0 || len(c.Groups) > maxClients:
		return bad("%d groups", len(c.Groups))
	}
	total := 0
	for _, g := range c.Groups {
		if g.G < 0 || g.Size < 2 || g.Size > maxClients || g.Writers < 1 || g.Writers > g.Size || g.Base < 0 || len(g.Members) == 0 || len(g.Members) > g.Size {
			return bad("group %+v", g)
		}
		for _, i := range g.Members {
			if i < 0 || i >= g.Size {
				return bad("group %d: member %d", g.G, i)
			}
		}
		total += len(g.Members)
		if total > maxClients {
			return bad("more than %d clients", maxClients)
		}
	}
	return nil
}

func (w *worker) progress(stage string) func(int) {
	return func(n int) { _ = w.send(workerMsg{Type: msgProgress, Stage: stage, N: int64(n)}) }
}

func (w *worker) setup(ctx context.Context, c workerCmd) (workerMsg, error) {
	if err := c.validate(); err != nil {
		return workerMsg{}, err
	}
	cfg := &Config{
		Widgets: c.Widgets, History: c.History, Preload: c.Preload, Light: c.Light, Concurrency: c.Concurrency, Seed: c.Seed,
		Progress: nopProgress{}, Logger: slog.New(slog.DiscardHandler),
	}
	tmpls := map[int]*template{}
	for _, t := range c.Templates {
		if t == nil {
			continue
		}
		if err := t.parseHeads(); err != nil {
			return workerMsg{}, err
		}
		tmpls[t.Writers] = t
	}
	lr := &loadRun{cfg: cfg, url: c.URL, capacity: c.Capacity, sink: newEventSink(), stop: make(chan struct{})}
	for _, wg := range c.Groups {
		local := map[int]bool{}
		for _, i := range wg.Members {
			local[i] = true
		}
		g := newGroup(wg.G, wg.Size, wg.Writers, wg.Base, c.Capacity, func(i int) bool { return local[i] }, false)
		if g.tmpl = tmpls[wg.Writers]; g.tmpl == nil {
			return workerMsg{}, fmt.Errorf("%w: worker setup: no initial document for %d writers", ErrConfig, wg.Writers)
		}
		lr.groups = append(lr.groups, g)
	}
	w.lr = lr
	if err := lr.connect(ctx, w.progress("connect")); err != nil {
		return workerMsg{}, err
	}
	if err := lr.createDocs(ctx, w.progress("create")); err != nil {
		return workerMsg{}, err
	}
	m := workerMsg{Type: msgCreated, Docs: map[int]string{}}
	for _, g := range lr.groups {
		if g.members[0].local {
			m.Docs[g.idx] = string(g.id)
		}
	}
	return m, nil
}

func (w *worker) open(ctx context.Context, c workerCmd) (workerMsg, error) {
	lr := w.lr
	for _, g := range lr.groups {
		if g.members[0].local {
			continue
		}
		id, err := crdt.ParseDocumentID(c.Docs[g.idx])
		if err != nil {
			return workerMsg{}, fmt.Errorf("loadgen: worker open: group %d: %w", g.idx, err)
		}
		g.id = id
	}
	if err := lr.openDocs(ctx, w.progress("open")); err != nil {
		return workerMsg{}, err
	}
	if err := lr.startReceivers(ctx); err != nil {
		return workerMsg{}, err
	}
	w.flushStop, w.flushDone = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(w.flushDone)
		t := time.NewTicker(flushInterval)
		defer t.Stop()
		for {
			select {
			case <-w.flushStop:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				if lr.sink.flush(w.send) != nil {
					return
				}
			}
		}
	}()
	return workerMsg{Type: msgReady}, nil
}

func (w *worker) phase(ctx context.Context, c workerCmd) (workerMsg, error) {
	if w.flushStop == nil {
		return workerMsg{}, fmt.Errorf("%w: phase before open", errWorkerState)
	}
	d := time.Duration(c.End - c.Start)
	if !(c.Rate > 0 && c.Rate <= maxRate) || c.Start <= 0 || d <= 0 || d > maxDuration || c.Phase < 0 {
		return workerMsg{}, fmt.Errorf("%w: worker phase: rate %v, %v", ErrConfig, c.Rate, d)
	}
	ps := &phaseStats{}
	w.lr.writeLocal(ctx, c.Phase, ps, c.Rate, time.Unix(0, c.Start), time.Unix(0, c.End))
	if err := w.lr.sink.flush(w.send); err != nil {
		return workerMsg{}, err
	}
	return workerMsg{Type: msgPhaseDone, Phase: c.Phase, Errs: ps.errs.Load()}, ctx.Err()
}

func (w *worker) close() {
	if w.deadline != nil {
		w.deadline.Stop()
	}
	if w.flushStop != nil {
		close(w.flushStop)
		<-w.flushDone
	}
	if w.lr != nil {
		w.lr.stopReceivers()
		w.lr.closeClients()
	}
}
