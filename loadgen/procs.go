package loadgen

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tandemsync/tandem/crdt"
)

// procFleet spreads a run's clients over Config.Procs worker processes
// (Config.WorkerCommand, which runs RunWorker), so that the load generator
// is not limited to what one Go process can drive. Each worker gets a
// contiguous block of the run's members; this process keeps the run's
// bookkeeping and merges what the workers report: every change a writer
// made (with its send time) and, per change, how many of a worker's
// clients have it and when the last one got it. The machine has one clock,
// so send and delivery times from different processes compare directly.
//
// Workers end with the run: they are told to close and then killed, they
// stop by themselves at the run's deadline or when their stdin ends, and on
// Linux they get SIGKILL when this process dies.
type procFleet struct {
	lr      *loadRun
	ctx     context.Context // the run's: once it ends, workers get no grace to close
	workers []*workerHandle
}

// phaseLead is how far ahead a phase is scheduled, so that the command
// reaches every worker before it starts.
const phaseLead = 200 * time.Millisecond

// workerHandle is one worker process seen from the coordinator.
type workerHandle struct {
	i       int
	cmd     *exec.Cmd
	stdin   *os.File
	sendMu  sync.Mutex
	enc     *json.Encoder
	replies chan workerMsg
	exited  chan struct{}
	err     error // why its output ended; read after exited is closed
	stderr  *tailBuffer
	stages  map[string]*atomic.Int64
}

var setupStages = []string{"connect", "create", "open"}

func startWorker(i int, argv []string, lr *loadRun) (*workerHandle, error) {
	if len(argv) == 0 {
		return nil, fmt.Errorf("%w: no worker command", ErrConfig)
	}
	w := &workerHandle{
		i: i, replies: make(chan workerMsg, 4), exited: make(chan struct{}),
		stderr: &tailBuffer{max: 4096}, stages: map[string]*atomic.Int64{},
	}
	for _, s := range setupStages {
		w.stages[s] = new(atomic.Int64)
	}
	// Our own pipe for stdin: an *os.File pipe takes write deadlines, so a
	// stuck worker cannot block the coordinator.
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin = pr
	cmd.Stderr = w.stderr
	cmd.SysProcAttr = workerProcAttr()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		pr.Close()
		pw.Close()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		return nil, fmt.Errorf("loadgen: start worker %d: %w", i, err)
	}
	pr.Close()
	w.cmd, w.stdin, w.enc = cmd, pw, json.NewEncoder(pw)
	go w.readLoop(stdout, lr)
	return w, nil
}

// readLoop applies the worker's events as they come and hands replies to
// the caller waiting for them; it ends when the worker's output does.
func (w *workerHandle) readLoop(stdout io.Reader, lr *loadRun) {
	dec := json.NewDecoder(bufio.NewReaderSize(stdout, 1<<16))
	var err error
	for {
		var m workerMsg
		if err = dec.Decode(&m); err != nil {
			break
		}
		switch m.Type {
		case msgEvents:
			lr.applyEvents(m.Made, m.Recv)
		case msgProgress:
			if c := w.stages[m.Stage]; c != nil {
				c.Store(m.N)
			}
		default:
			select {
			case w.replies <- m:
			default:
				err = fmt.Errorf("unexpected %q", m.Type)
			}
		}
		if err != nil {
			break
		}
	}
	if !errors.Is(err, io.EOF) {
		// Output we cannot read: the worker is of no more use.
		_ = w.cmd.Process.Kill()
		_, _ = io.Copy(io.Discard, stdout)
	}
	werr := w.cmd.Wait()
	switch {
	case errors.Is(err, io.EOF) && werr == nil:
		w.err = fmt.Errorf("loadgen: worker %d exited", w.i)
	case errors.Is(err, io.EOF):
		w.err = fmt.Errorf("loadgen: worker %d: %v", w.i, werr)
	default:
		w.err = fmt.Errorf("loadgen: worker %d: bad output: %v", w.i, err)
	}
	if tail := strings.TrimSpace(w.stderr.String()); tail != "" {
		w.err = fmt.Errorf("%w; its stderr ends: %s", w.err, tail)
	}
	close(w.exited)
}

func (w *workerHandle) send(c workerCmd) error {
	w.sendMu.Lock()
	defer w.sendMu.Unlock()
	_ = w.stdin.SetWriteDeadline(time.Now().Add(30 * time.Second))
	return w.enc.Encode(c)
}

// call sends c and waits for the reply, which must be of type want.
func (w *workerHandle) call(ctx context.Context, c workerCmd, want string) (workerMsg, error) {
	if err := w.send(c); err != nil {
		select {
		case <-w.exited:
			return workerMsg{}, w.err
		default:
			return workerMsg{}, fmt.Errorf("loadgen: worker %d: %w", w.i, err)
		}
	}
	select {
	case m := <-w.replies:
		switch m.Type {
		case want:
			return m, nil
		case msgError:
			return m, fmt.Errorf("loadgen: worker %d: %s", w.i, m.Err)
		}
		return m, fmt.Errorf("loadgen: worker %d: got %q, want %q", w.i, m.Type, want)
	case <-w.exited:
		return workerMsg{}, w.err
	case <-ctx.Done():
		return workerMsg{}, ctx.Err()
	}
}

// stop asks the worker to close its clients and exit, and kills it if it
// has not within grace.
func (w *workerHandle) stop(grace time.Duration) {
	_ = w.stdin.SetWriteDeadline(time.Now().Add(time.Second))
	w.sendMu.Lock()
	_ = w.enc.Encode(workerCmd{Op: opClose})
	_ = w.stdin.Close()
	w.sendMu.Unlock()
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-w.exited:
	case <-t.C:
		_ = w.cmd.Process.Kill()
		<-w.exited
	}
}

// callAll sends cmds[i] to worker i, all at once, and waits for every
// reply; the first failure cancels the other calls. With a label, it shows
// the progress of the setup stages (summed over workers) out of total.
func (f *procFleet) callAll(ctx context.Context, cmds []workerCmd, want, label string, total int64, stages ...string) ([]workerMsg, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	out := make([]workerMsg, len(f.workers))
	var wg sync.WaitGroup
	for i, w := range f.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m, err := w.call(ctx, cmds[i], want)
			if err != nil {
				cancel(err)
			}
			out[i] = m
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	if label != "" {
		p := f.lr.cfg.Progress
		p.Begin(label, total)
		t := time.NewTicker(100 * time.Millisecond)
	wait:
		for {
			select {
			case <-done:
				break wait
			case <-t.C:
				var n int64
				for _, w := range f.workers {
					for _, s := range stages {
						n += w.stages[s].Load()
					}
				}
				p.Set(n)
			}
		}
		t.Stop()
		p.End()
	}
	<-done
	if err := context.Cause(ctx); err != nil {
		return out, err
	}
	return out, nil
}

func (f *procFleet) same(c workerCmd) []workerCmd {
	cmds := make([]workerCmd, len(f.workers))
	for i := range cmds {
		cmds[i] = c
	}
	return cmds
}

func (f *procFleet) setup(ctx context.Context) error {
	f.ctx = ctx
	lr, cfg := f.lr, f.lr.cfg
	n := lr.clientCount()
	p := min(cfg.Procs, n)
	// Contiguous blocks of members: a group's members in one worker are
	// one run, and groups spread evenly.
	owner := func(k int) int { return k * p / n }
	deadline := time.Now().Add(cfg.Timeout)
	if d, ok := ctx.Deadline(); ok {
		deadline = d
	}
	cmds := make([]workerCmd, p)
	sizes := make([]map[int]bool, p)
	for i := range cmds {
		cmds[i] = workerCmd{
			Op: opSetup, URL: lr.url, Widgets: cfg.Widgets, History: cfg.History, Preload: cfg.Preload, Light: cfg.Light, Capacity: lr.capacity,
			Concurrency: cfg.Concurrency, Seed: cfg.Seed, Deadline: deadline.UnixNano(),
		}
		sizes[i] = map[int]bool{}
	}
	for _, g := range lr.groups {
		for _, m := range g.members {
			o := owner(m.k)
			gs := cmds[o].Groups
			if len(gs) == 0 || gs[len(gs)-1].G != g.idx {
				cmds[o].Groups = append(gs, wGroup{G: g.idx, Size: len(g.members), Writers: g.writers, Base: g.members[0].k})
				gs = cmds[o].Groups
			}
			gs[len(gs)-1].Members = append(gs[len(gs)-1].Members, m.idx)
		}
		for _, m := range g.members {
			o := owner(m.k)
			if !sizes[o][g.writers] {
				sizes[o][g.writers] = true
				cmds[o].Templates = append(cmds[o].Templates, g.tmpl)
			}
		}
	}
	for i := range p {
		w, err := startWorker(i, cfg.WorkerCommand, lr)
		if err != nil {
			return err
		}
		f.workers = append(f.workers, w)
	}
	label := fmt.Sprintf("connect %d clients in %d processes, create %d documents", n, p, len(lr.groups))
	replies, err := f.callAll(ctx, cmds, msgCreated, label, int64(n+len(lr.groups)), "connect", "create")
	if err != nil {
		return err
	}
	for _, m := range replies {
		for gi, s := range m.Docs {
			id, err := crdt.ParseDocumentID(s)
			if err != nil || gi < 0 || gi >= len(lr.groups) {
				return fmt.Errorf("loadgen: a worker created group %d as %q: %v", gi, s, err)
			}
			lr.groups[gi].id = id
		}
	}
	opens := make([]workerCmd, p)
	for i := range opens {
		opens[i] = workerCmd{Op: opOpen, Docs: map[int]string{}}
		for _, wg := range cmds[i].Groups {
			id := lr.groups[wg.G].id
			if id == "" {
				return fmt.Errorf("loadgen: no worker created the document of group %d", wg.G)
			}
			opens[i].Docs[wg.G] = string(id)
		}
	}
	label = fmt.Sprintf("open the documents on %d clients", lr.opening())
	_, err = f.callAll(ctx, opens, msgReady, label, int64(lr.opening()), "open")
	return err
}

func (f *procFleet) lead() time.Duration { return phaseLead }

func (f *procFleet) write(ctx context.Context, phase int32, ps *phaseStats, rate float64, start, end time.Time) error {
	replies, err := f.callAll(ctx, f.same(workerCmd{Op: opPhase, Phase: phase, Rate: rate, Start: start.UnixNano(), End: end.UnixNano()}), msgPhaseDone, "", 0)
	for _, m := range replies {
		ps.errs.Add(m.Errs)
	}
	return err
}

func (f *procFleet) traffic(ctx context.Context) (sent, recv int64) {
	replies, err := f.callAll(ctx, f.same(workerCmd{Op: opTraffic}), msgTraffic, "", 0)
	if err != nil {
		return 0, 0
	}
	for _, m := range replies {
		sent += m.Sent
		recv += m.Received
	}
	return sent, recv
}

func (f *procFleet) unreadable(ctx context.Context) int64 {
	replies, err := f.callAll(ctx, f.same(workerCmd{Op: opTraffic}), msgTraffic, "", 0)
	if err != nil {
		return 0
	}
	var n int64
	for _, m := range replies {
		n += m.Unreadable
	}
	return n
}

func (f *procFleet) cpuSeconds() float64 {
	s, _ := procCPU(os.Getpid())
	for _, w := range f.workers {
		if c, err := procCPU(w.cmd.Process.Pid); err == nil {
			s += c
		}
	}
	return s
}

func (f *procFleet) peakRSS() int64 {
	_, n := procMem(os.Getpid())
	for _, w := range f.workers {
		_, hwm := procMem(w.cmd.Process.Pid)
		n += hwm
	}
	return n
}

func (f *procFleet) converged(ctx context.Context) (bool, error) {
	replies, err := f.callAll(ctx, f.same(workerCmd{Op: opHeads}), msgHeads, "", 0)
	if err != nil {
		return false, err
	}
	agreed := map[int]string{}
	for _, m := range replies {
		if len(m.Split) > 0 {
			return false, nil
		}
		for g, hs := range m.Heads {
			hs = slices.Clone(hs)
			slices.Sort(hs)
			key := strings.Join(hs, ",")
			if prev, ok := agreed[g]; ok && prev != key {
				return false, nil
			}
			agreed[g] = key
		}
	}
	return len(agreed) == len(f.lr.groups), nil
}

func (f *procFleet) close() {
	// Closing a few thousand clients takes a few seconds; a run that failed
	// or ran out of time does not wait for that.
	grace := 20 * time.Second
	if f.ctx == nil || f.ctx.Err() != nil {
		grace = time.Second
	}
	var wg sync.WaitGroup
	for _, w := range f.workers {
		wg.Add(1)
		go func() { defer wg.Done(); w.stop(grace) }()
	}
	wg.Wait()
}

// applyEvents counts what a worker reported. Changes belong to the phase
// in flight: a phase ends only after every worker reported all it made.
func (lr *loadRun) applyEvents(made [][4]int64, recv [][5]int64) {
	lr.phMu.RLock()
	phase := int32(len(lr.phases) - 1)
	lr.phMu.RUnlock()
	for _, e := range made {
		if m := lr.memberAt(e[0], e[1]); m != nil {
			lr.made(m, e[2], e[3], phase)
		}
	}
	for _, e := range recv {
		m := lr.memberAt(e[0], e[1])
		if m == nil || e[3] < 1 || e[3] > int64(len(m.g.members)) || e[4] <= 0 {
			continue
		}
		lr.received(m.g, m.idx, e[2], int32(e[3]), e[4])
	}
}

func (lr *loadRun) memberAt(g, w int64) *member {
	if g < 0 || g >= int64(len(lr.groups)) {
		return nil
	}
	ms := lr.groups[g].members
	if w < 0 || w >= int64(len(ms)) {
		return nil
	}
	return ms[w]
}

// tailBuffer keeps the last max bytes written to it (a worker's stderr).
type tailBuffer struct {
	mu  sync.Mutex
	b   []byte
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
