package loadgen

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tandemsync/tandem/crdt"
	"github.com/tandemsync/tandem/repo"
)

// changeRec follows one change on its way to the other clients.
type changeRec struct {
	phase     atomic.Int32
	sent      atomic.Int64 // unix nanos when the change was made
	remaining atomic.Int32 // clients that have not seen it yet
	last      atomic.Int64 // unix nanos of the latest delivery so far
}

// writerLog is one client's changes, by sequence number (n-1).
type writerLog struct {
	recs       []changeRec
	registered atomic.Int64
}

type group struct {
	id      crdt.DocumentID
	members []*member
}

type member struct {
	c    *client
	g    *group
	idx  int
	h    *repo.DocHandle
	log  writerLog
	seen []int64 // highest change of each writer of the group seen here (receiver goroutine only)
}

// phaseStats collects one phase (the whole run of a dashboard, one ramp step).
type phaseStats struct {
	made     atomic.Int64
	errs     atomic.Int64
	complete atomic.Int64
	mu       sync.Mutex
	lat      []time.Duration
	window   []time.Duration // completed since the last timeline sample
}

func (p *phaseStats) add(d time.Duration) {
	p.complete.Add(1)
	p.mu.Lock()
	p.lat = append(p.lat, d)
	p.window = append(p.window, d)
	p.mu.Unlock()
}

// loadRun drives groups of clients, each group on one document.
type loadRun struct {
	cfg     *Config
	groups  []*group
	clients []*client
	phases  []*phaseStats
	phMu    sync.RWMutex
	start   time.Time

	stop     chan struct{}
	recvWG   sync.WaitGroup
	recvErrs atomic.Int64
}

func (lr *loadRun) phase(i int32) *phaseStats {
	lr.phMu.RLock()
	defer lr.phMu.RUnlock()
	return lr.phases[i]
}

// widgetDoc is the initial document: W widgets and one entry per writer.
func widgetDoc(widgets, writers int) []byte {
	var b strings.Builder
	b.WriteString(`{"title":"load","widgets":{`)
	for i := range widgets {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"w%d":{"kind":"gauge","v":0,"t":0,"by":-1}`, i)
	}
	b.WriteString(`},"writers":{`)
	for i := range writers {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"c%d":{"n":0,"t":0}`, i)
	}
	b.WriteString(`}}`)
	return []byte(b.String())
}

// setupGroups connects sizes[i] clients per group, creates each group's
// document (with cfg.History changes) through its first client and opens it
// on the others, then waits until every member has the creator's heads.
func setupGroups(ctx context.Context, cfg *Config, url string, sizes []int, capacity int) (*loadRun, error) {
	lr := &loadRun{cfg: cfg, stop: make(chan struct{})}
	total := 0
	for _, s := range sizes {
		total += s
	}
	cfg.Progress.Begin(fmt.Sprintf("connect %d clients", total), int64(total))
	cs, err := dialAll(ctx, url, total, cfg.Concurrency, func(n int) { cfg.Progress.Set(int64(n)) })
	cfg.Progress.End()
	if err != nil {
		return nil, err
	}
	lr.clients = cs
	k := 0
	for _, s := range sizes {
		g := &group{}
		for i := range s {
			m := &member{c: cs[k], g: g, idx: i, seen: make([]int64, s)}
			m.log.recs = make([]changeRec, capacity)
			g.members = append(g.members, m)
			k++
		}
		lr.groups = append(lr.groups, g)
	}
	cfg.Progress.Begin(fmt.Sprintf("create %d documents", len(lr.groups)), int64(len(lr.groups)))
	err = forEach(ctx, len(lr.groups), cfg.Concurrency, func(i int) error {
		return lr.openGroup(ctx, lr.groups[i])
	}, func(n int) { cfg.Progress.Set(int64(n)) })
	cfg.Progress.End()
	if err != nil {
		closeAll(cs)
		return nil, err
	}
	return lr, nil
}

func (lr *loadRun) openGroup(ctx context.Context, g *group) error {
	cfg := lr.cfg
	creator := g.members[0]
	doc, err := crdt.FromJSON(widgetDoc(cfg.Widgets, len(g.members)))
	if err != nil {
		return err
	}
	if _, _, err := doc.Commit("init"); err != nil {
		return err
	}
	for i := range cfg.History {
		if err := doc.Set(fmt.Sprintf("/widgets/w%d/v", i%cfg.Widgets), i); err != nil {
			return err
		}
		if _, _, err := doc.Commit(""); err != nil {
			return err
		}
	}
	h, err := creator.c.r.Import(ctx, doc.Save())
	if err != nil {
		return fmt.Errorf("loadgen: import: %w", err)
	}
	creator.h = h
	g.id = h.ID()
	want, err := h.Heads(ctx)
	if err != nil {
		return err
	}
	for _, m := range g.members[1:] {
		if m.h, _, err = findRetry(ctx, m.c, g.id); err != nil {
			return err
		}
	}
	for _, m := range g.members[1:] {
		err := waitFor(ctx, 10*time.Millisecond, func() bool {
			hs, err := m.h.Heads(ctx)
			return err == nil && equalHeads(hs, want)
		})
		if err != nil {
			return fmt.Errorf("loadgen: a client did not receive the initial document: %w", err)
		}
	}
	return nil
}

// forEach runs fn(0..n-1) with at most conc in flight; it stops at the first error.
func forEach(ctx context.Context, n, conc int, fn func(int) error, prog func(int)) error {
	var (
		mu    sync.Mutex
		first error
		done  int
		wg    sync.WaitGroup
	)
	sem := make(chan struct{}, conc)
	for i := range n {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		mu.Lock()
		stop := first != nil || ctx.Err() != nil
		mu.Unlock()
		if stop {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			err := fn(i)
			mu.Lock()
			defer mu.Unlock()
			if err != nil && first == nil {
				first = err
			}
			done++
			prog(done)
		}()
	}
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}

// startReceivers subscribes every member and starts its receiver.
func (lr *loadRun) startReceivers(ctx context.Context) error {
	for _, g := range lr.groups {
		for _, m := range g.members {
			sub, err := m.h.Subscribe(ctx)
			if err != nil {
				return err
			}
			lr.recvWG.Add(1)
			go lr.receive(ctx, m, sub)
		}
	}
	return nil
}

func (lr *loadRun) stopReceivers() {
	close(lr.stop)
	lr.recvWG.Wait()
}

// receive turns subscription events into deliveries.
func (lr *loadRun) receive(ctx context.Context, m *member, sub *repo.Subscription) {
	defer lr.recvWG.Done()
	defer func() { sub.Close() }()
	writers := map[int]bool{}
	for resub := 0; resub < 100; {
		select {
		case <-lr.stop:
			return
		case <-ctx.Done():
			return
		case e, ok := <-sub.Events():
			if !ok {
				// Too slow (or closed): subscribe again and read everything.
				lr.recvErrs.Add(1)
				resub++
				ns, err := m.h.Subscribe(ctx)
				if err != nil {
					return
				}
				sub = ns
				for i := range m.g.members {
					if i != m.idx {
						writers[i] = true
					}
				}
			} else {
				addWriters(writers, e)
			}
		}
		// Take whatever else is queued, then read once.
		for more := len(sub.Events()); more > 0; more-- {
			e, ok := <-sub.Events()
			if !ok {
				break
			}
			addWriters(writers, e)
		}
		delete(writers, m.idx)
		if len(writers) > 0 {
			lr.deliver(ctx, m, writers)
			clear(writers)
		}
	}
}

// addWriters notes the writers whose entries a remote event touched.
func addWriters(ws map[int]bool, e repo.Event) {
	if !e.Remote {
		return
	}
	for _, p := range e.Paths {
		rest, ok := strings.CutPrefix(p, "/writers/c")
		if !ok {
			if p == "" || p == "/writers" {
				ws[-1] = true // whole-document change: read everybody
			}
			continue
		}
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			rest = rest[:i]
		}
		if n, err := strconv.Atoi(rest); err == nil {
			ws[n] = true
		}
	}
}

func (lr *loadRun) deliver(ctx context.Context, m *member, writers map[int]bool) {
	if writers[-1] {
		delete(writers, -1)
		for i := range m.g.members {
			if i != m.idx {
				writers[i] = true
			}
		}
	}
	got := make(map[int]int64, len(writers))
	err := m.h.Read(ctx, func(d *crdt.Doc) error {
		for w := range writers {
			if w < 0 || w >= len(m.g.members) {
				continue
			}
			v, err := d.Get("/writers/c" + strconv.Itoa(w) + "/n")
			if err != nil {
				continue
			}
			if n, ok := toInt(v); ok {
				got[w] = n
			}
		}
		return nil
	})
	if err != nil {
		return
	}
	now := time.Now().UnixNano()
	for w, n := range got {
		wl := &m.g.members[w].log
		n = min(n, wl.registered.Load(), int64(len(wl.recs)))
		for k := m.seen[w] + 1; k <= n; k++ {
			rec := &wl.recs[k-1]
			for {
				old := rec.last.Load()
				if now <= old || rec.last.CompareAndSwap(old, now) {
					break
				}
			}
			if rec.remaining.Add(-1) == 0 {
				lr.phase(rec.phase.Load()).add(time.Duration(rec.last.Load() - rec.sent.Load()))
			}
		}
		if n > m.seen[w] {
			m.seen[w] = n
		}
	}
}

func toInt(v any) (int64, bool) {
	switch x := v.(type) {
	case int64:
		return x, true
	case int:
		return int64(x), true
	case uint64:
		if x > math.MaxInt64 {
			return 0, false
		}
		return int64(x), true
	case float64:
		return int64(x), true
	}
	return 0, false
}

// write makes changes on m at rate per second until end.
func (lr *loadRun) write(ctx context.Context, m *member, rate float64, end time.Time, phase int32, ps *phaseStats, rng *rand.Rand) {
	interval := time.Duration(float64(time.Second) / rate)
	interval = max(interval, 10*time.Microsecond)
	first := time.NewTimer(time.Duration(rng.Int64N(int64(interval))))
	defer first.Stop()
	select {
	case <-first.C:
	case <-ctx.Done():
		return
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	size := int32(len(m.g.members))
	widgets := lr.cfg.Widgets
	for {
		now := time.Now()
		if !now.Before(end) || ctx.Err() != nil {
			return
		}
		n := m.log.registered.Load() + 1
		if n > int64(len(m.log.recs)) {
			return
		}
		rec := &m.log.recs[n-1]
		ts := now.UnixNano()
		rec.phase.Store(phase)
		rec.sent.Store(ts)
		rec.last.Store(ts)
		rec.remaining.Store(size - 1)
		m.log.registered.Store(n)
		k := rng.IntN(widgets)
		_, err := m.h.Change(ctx, func(d *crdt.Doc) error {
			w := "/widgets/w" + strconv.Itoa(k)
			c := "/writers/c" + strconv.Itoa(m.idx)
			for _, s := range [...]struct {
				p string
				v any
			}{{w + "/v", n}, {w + "/t", ts}, {w + "/by", m.idx}, {c + "/n", n}, {c + "/t", ts}} {
				if err := d.Set(s.p, s.v); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			// Nothing was committed: the number is free again.
			m.log.registered.Store(n - 1)
			ps.errs.Add(1)
		} else {
			ps.made.Add(1)
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return
		}
	}
}

// runPhase runs every member at rate for d, then waits up to drain for the
// phase's changes to reach everybody.
func (lr *loadRun) runPhase(ctx context.Context, rate float64, d, drain time.Duration, label string) *Result {
	cfg := lr.cfg
	ps := &phaseStats{}
	lr.phMu.Lock()
	idx := int32(len(lr.phases))
	lr.phases = append(lr.phases, ps)
	lr.phMu.Unlock()

	res := &Result{Scenario: cfg.Scenario, Started: time.Now()}
	nClients := 0
	for _, g := range lr.groups {
		nClients += len(g.members)
	}
	res.Clients, res.Docs = nClients, len(lr.groups)
	res.Offered = float64(nClients) * rate
	sent0, recv0 := trafficOf(lr.clients)
	cpu0 := lr.cpu()

	start := time.Now()
	end := start.Add(d)
	var wg sync.WaitGroup
	seed := uint64(cfg.Seed) + uint64(idx)*1_000_003
	k := uint64(0)
	for _, g := range lr.groups {
		for _, m := range g.members {
			k++
			rng := rand.New(rand.NewPCG(seed, k))
			wg.Add(1)
			go func() {
				defer wg.Done()
				lr.write(ctx, m, rate, end, idx, ps, rng)
			}()
		}
	}
	cfg.Progress.Begin(label, d.Milliseconds())
	progressUntil(ctx, cfg.Progress, start, end, &wg)
	wg.Wait()
	cfg.Progress.End()
	cpuLoad := lr.cpu()

	dctx, cancel := context.WithTimeout(ctx, drain)
	_ = waitFor(dctx, 5*time.Millisecond, func() bool { return ps.complete.Load() >= ps.made.Load() })
	cancel()
	cpuEnd := lr.cpu()
	sent1, recv1 := trafficOf(lr.clients)

	// Changes are made in [start, end); a writer notices the end at its
	// next tick, so the wall time until the last one stopped is longer.
	loadSecs := d.Seconds()
	res.Elapsed = time.Since(start).Seconds()
	res.Changes = ps.made.Load()
	res.Errors = ps.errs.Load()
	res.Complete = ps.complete.Load()
	res.Incomplete = res.Changes - res.Complete
	res.Achieved = float64(res.Changes) / loadSecs
	res.Delivered = float64(res.Complete) / loadSecs
	ps.mu.Lock()
	res.latencies = append([]time.Duration(nil), ps.lat...)
	ps.mu.Unlock()
	res.Latency = summarize(res.latencies)
	res.BytesSent, res.BytesReceived = sent1-sent0, recv1-recv0
	if cfg.Spawn != nil {
		res.ServerCPUSeconds = cpuEnd - cpu0
		res.ServerCPUPercent = 100 * (cpuLoad - cpu0) / loadSecs
		if res.Changes > 0 {
			res.CPUPerChangeUs = 1e6 * res.ServerCPUSeconds / float64(res.Changes)
		}
		res.PeakRSSBytes = cfg.Spawn.Sample().HWMBytes
	}
	return res
}

func (lr *loadRun) cpu() float64 {
	if lr.cfg.Spawn == nil {
		return 0
	}
	return lr.cfg.Spawn.Sample().CPUSeconds
}

// progressUntil reports elapsed milliseconds until end or until wg is done.
func progressUntil(ctx context.Context, p Progress, start, end time.Time, wg *sync.WaitGroup) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-done:
			p.Set(end.Sub(start).Milliseconds())
			return
		case <-ctx.Done():
			<-done
			return
		case now := <-t.C:
			p.Set(min(now.Sub(start), end.Sub(start)).Milliseconds())
		}
	}
}

// sampleTimeline records the run's rates every second until stop closes.
func (lr *loadRun) sampleTimeline(stop <-chan struct{}, out *[]Sample, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var lastMade, lastComplete int64
	lastCPU := lr.cpu()
	last := time.Now()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			var made, complete int64
			var window []time.Duration
			lr.phMu.RLock()
			for _, p := range lr.phases {
				made += p.made.Load()
				complete += p.complete.Load()
				p.mu.Lock()
				window = append(window, p.window...)
				p.window = p.window[:0]
				p.mu.Unlock()
			}
			lr.phMu.RUnlock()
			dt := now.Sub(last).Seconds()
			s := Sample{
				T:         now.Sub(lr.start).Seconds(),
				Made:      float64(made-lastMade) / dt,
				Delivered: float64(complete-lastComplete) / dt,
				P99:       summarize(window).P99,
			}
			if lr.cfg.Spawn != nil {
				ps := lr.cfg.Spawn.Sample()
				s.CPU = 100 * (ps.CPUSeconds - lastCPU) / dt
				s.RSS = ps.RSSBytes
				lastCPU = ps.CPUSeconds
			}
			*out = append(*out, s)
			lastMade, lastComplete, last = made, complete, now
		}
	}
}

// converge waits until every member of every group has the same heads.
func (lr *loadRun) converge(ctx context.Context, d time.Duration) bool {
	cctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	err := waitFor(cctx, 20*time.Millisecond, func() bool {
		for _, g := range lr.groups {
			var first []crdt.Hash
			for i, m := range g.members {
				hs, err := m.h.Heads(cctx)
				if err != nil {
					return false
				}
				if i == 0 {
					first = hs
				} else if !equalHeads(first, hs) {
					return false
				}
			}
		}
		return true
	})
	return err == nil
}
