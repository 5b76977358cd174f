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

// changeRec follows one change on its way to the other clients. Its fields
// are updated in any order (with clients in several processes, a delivery
// can be counted before the writer's report of the change arrives), so the
// change is complete once both are in: whoever sees the send time and no
// receiver left records it, and done makes that happen once.
type changeRec struct {
	phase     atomic.Int32
	sent      atomic.Int64 // unix nanos when the change was made; 0 until reported
	remaining atomic.Int32 // receivers that have not seen it yet
	last      atomic.Int64 // unix nanos of the latest delivery so far
	done      atomic.Bool
}

// writerLog is one client's changes, by sequence number (n-1).
type writerLog struct {
	recs []changeRec // only in the process that counts (not in a worker)
	// next is the sequence number of the last committed change. Only the
	// member's writer goroutine touches it, and phases run one after another.
	next int64
}

type group struct {
	idx     int // index in the run, the same in every process
	writers int // members 0..writers-1 change the document; the others only receive
	id      crdt.DocumentID
	tmpl    *template
	members []*member
}

type member struct {
	local bool // its client runs in this process
	c     *client
	lc    *lightClient // instead of c with Config.Light
	g     *group
	idx   int // index in its group
	k     int // index in the run (seeds its writer's choices)
	h     *repo.DocHandle
	log   writerLog
	seen  []int64 // highest change of each writer of the group seen here (receiver goroutine only)
}

// newGroup lays out group idx of size members, the first writers of which
// write, the first being member base of the run. local tells which members
// (by index in the group) have their client in this process; counting gives
// every writer its change records.
func newGroup(idx, size, writers, base, capacity int, local func(i int) bool, counting bool) *group {
	g := &group{idx: idx, writers: writers, members: make([]*member, size)}
	for i := range size {
		m := &member{local: local(i), g: g, idx: i, k: base + i}
		if counting && i < writers {
			m.log.recs = make([]changeRec, capacity)
			for j := range m.log.recs {
				m.log.recs[j].remaining.Store(int32(size - 1))
			}
		}
		if m.local {
			m.seen = make([]int64, writers)
		}
		g.members[i] = m
	}
	return g
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

// loadRun drives groups of clients, each group on one document. The same
// type serves the three places a run happens: everything in one process;
// the coordinator of worker processes (no local clients: it counts what the
// workers report); and a worker (local clients only: it reports to sink).
type loadRun struct {
	cfg      *Config
	url      string
	groups   []*group
	clients  []*client      // the clients of this process
	light    []*lightClient // the light clients of this process (Config.Light)
	capacity int            // changes each writer may make in the run
	sink     *eventSink
	fleet    fleet
	phases   []*phaseStats
	phMu     sync.RWMutex
	start    time.Time

	stop       chan struct{}
	recvWG     sync.WaitGroup
	recvCancel context.CancelFunc // ends the light clients' readers

	convergeSecs float64 // how long the last converge took
	// deliveries counts every (receiver, change) recorded, over the whole
	// run: with every change complete it is changes × receivers.
	deliveries atomic.Int64
}

// close stops the receivers and closes the clients (and workers), showing
// it: closing thousands of clients takes a while.
func (lr *loadRun) close() {
	n := lr.clientCount()
	lr.cfg.Progress.Begin(fmt.Sprintf("close %d clients", n), 1)
	lr.fleet.close()
	lr.cfg.Progress.End()
}

func (lr *loadRun) phase(i int32) *phaseStats {
	lr.phMu.RLock()
	defer lr.phMu.RUnlock()
	if i < 0 || int(i) >= len(lr.phases) {
		return nil
	}
	return lr.phases[i]
}

func (lr *loadRun) clientCount() int {
	n := 0
	for _, g := range lr.groups {
		n += len(g.members)
	}
	return n
}

func (lr *loadRun) writerCount() int {
	n := 0
	for _, g := range lr.groups {
		n += g.writers
	}
	return n
}

// made records that writer m committed its change n, made at sent (unix nanos).
func (lr *loadRun) made(m *member, n, sent int64, phase int32) {
	if lr.sink != nil {
		lr.sink.made(m.g.idx, m.idx, n, sent, phase)
		return
	}
	ps := lr.phase(phase)
	if ps == nil || n < 1 || n > int64(len(m.log.recs)) || sent <= 0 {
		return
	}
	rec := &m.log.recs[n-1]
	rec.phase.Store(phase)
	rec.sent.Store(sent)
	ps.made.Add(1)
	lr.tryComplete(rec)
}

// received records that count receivers had writer w's change n at (unix nanos).
func (lr *loadRun) received(g *group, w int, n int64, count int32, at int64) {
	if lr.sink != nil {
		lr.sink.received(g.idx, w, n, at)
		return
	}
	if w < 0 || w >= g.writers || count < 1 {
		return
	}
	wl := &g.members[w].log
	if n < 1 || n > int64(len(wl.recs)) {
		return
	}
	rec := &wl.recs[n-1]
	lr.deliveries.Add(int64(count))
	for {
		old := rec.last.Load()
		if at <= old || rec.last.CompareAndSwap(old, at) {
			break
		}
	}
	if rec.remaining.Add(-count) <= 0 {
		lr.tryComplete(rec)
	}
}

func (lr *loadRun) tryComplete(rec *changeRec) {
	sent := rec.sent.Load()
	if sent == 0 || rec.remaining.Load() > 0 || !rec.done.CompareAndSwap(false, true) {
		return
	}
	if ps := lr.phase(rec.phase.Load()); ps != nil {
		ps.add(time.Duration(max(0, rec.last.Load()-sent)))
	}
}

// widgetDoc is the initial document: W widgets and one entry per writer.
// A writer's entry is a bare number, not an object: with a subscription
// the Go client reads the whole document around every batch of remote
// changes, and each nested object costs it one more call into Automerge.
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
		fmt.Fprintf(&b, `"c%d":0`, i)
	}
	b.WriteString(`}}`)
	return []byte(b.String())
}

// template is the initial document of every group of one size, with its
// history, built once per run: Automerge documents are content, so many
// groups can start from the same bytes under their own ids.
type template struct {
	Writers int      `json:"writers"`
	Data    []byte   `json:"data"`
	Heads   []string `json:"heads"`
	heads   []crdt.Hash
}

// buildTemplate makes the initial document of a group of writers, with
// history changes after the first.
func buildTemplate(ctx context.Context, widgets, writers, history int) (*template, error) {
	doc, err := crdt.FromJSON(widgetDoc(widgets, writers))
	if err != nil {
		return nil, err
	}
	if _, _, err := doc.Commit("init"); err != nil {
		return nil, err
	}
	for i := range history {
		if i%1024 == 0 && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if err := doc.Set(fmt.Sprintf("/widgets/w%d/v", i%widgets), i); err != nil {
			return nil, err
		}
		if _, _, err := doc.Commit(""); err != nil {
			return nil, err
		}
	}
	t := &template{Writers: writers, Data: doc.Save(), heads: doc.Heads()}
	for _, h := range t.heads {
		t.Heads = append(t.Heads, h.String())
	}
	return t, nil
}

// parseHeads fills t.heads from t.Heads (a template received from the coordinator).
func (t *template) parseHeads() error {
	t.heads = t.heads[:0]
	for _, s := range t.Heads {
		h, err := crdt.ParseHash(s)
		if err != nil {
			return err
		}
		t.heads = append(t.heads, h)
	}
	return nil
}

// buildTemplates builds one template per number of writers in a group.
func buildTemplates(ctx context.Context, cfg *Config, groups []*group) (map[int]*template, error) {
	out := map[int]*template{}
	for _, g := range groups {
		if out[g.writers] != nil {
			continue
		}
		t, err := buildTemplate(ctx, cfg.Widgets, g.writers, cfg.History)
		if err != nil {
			return nil, err
		}
		out[g.writers] = t
	}
	return out, nil
}

func (lr *loadRun) localMembers(first bool) []*member {
	var ms []*member
	for _, g := range lr.groups {
		for _, m := range g.members {
			if m.local && (m.idx == 0) == first {
				ms = append(ms, m)
			}
		}
	}
	return ms
}

// allLocal returns every local member.
func (lr *loadRun) allLocal() []*member {
	var ms []*member
	for _, g := range lr.groups {
		for _, m := range g.members {
			if m.local {
				ms = append(ms, m)
			}
		}
	}
	return ms
}

// connect dials a client for every local member.
func (lr *loadRun) connect(ctx context.Context, prog func(int)) error {
	ms := lr.allLocal()
	if lr.cfg.Light {
		lcs, err := dialLightAll(ctx, lr.url, len(ms), lr.cfg.Concurrency, prog)
		if err != nil {
			return err
		}
		for i, m := range ms {
			m.lc = lcs[i]
		}
		lr.light = lcs
		return nil
	}
	cs, err := dialAll(ctx, lr.url, len(ms), lr.cfg.Concurrency, prog)
	if err != nil {
		return err
	}
	for i, m := range ms {
		m.c = cs[i]
	}
	lr.clients = cs
	return nil
}

// createDocs creates each group's document through its first member, for
// the groups whose first member is local.
func (lr *loadRun) createDocs(ctx context.Context, prog func(int)) error {
	ms := lr.localMembers(true)
	if lr.cfg.Light {
		return lr.uploadDocs(ctx, ms, prog)
	}
	return forEach(ctx, len(ms), lr.cfg.Concurrency, func(i int) error {
		m := ms[i]
		h, err := m.c.r.Import(ctx, m.g.tmpl.Data)
		if err != nil {
			return fmt.Errorf("loadgen: import: %w", err)
		}
		m.h, m.g.id = h, h.ID()
		if lr.cfg.History > 0 || lr.cfg.Preload {
			// Have the server hold it before the others look for it (or,
			// preloaded, bring their own copy), so that only this client
			// uploads it.
			if err := h.WaitSynced(ctx); err != nil {
				return fmt.Errorf("loadgen: upload of a document with %d changes: %w", lr.cfg.History, err)
			}
		}
		return nil
	}, prog)
}

// uploadDocs has a short-lived full client upload the initial document of
// each group led by ms (light clients only sync from the initial document
// on: somebody must bring it to the server first).
func (lr *loadRun) uploadDocs(ctx context.Context, ms []*member, prog func(int)) error {
	if len(ms) == 0 {
		return nil
	}
	creator, err := dialPaced(ctx, lr.url) // one document per group: many
	if err != nil {
		return err
	}
	defer creator.close()
	return forEach(ctx, len(ms), lr.cfg.Concurrency, func(i int) error {
		g := ms[i].g
		h, err := creator.r.Import(ctx, g.tmpl.Data)
		if err != nil {
			return fmt.Errorf("loadgen: import: %w", err)
		}
		g.id = h.ID()
		if err := h.WaitSynced(ctx); err != nil {
			return fmt.Errorf("loadgen: upload of the initial document: %w", err)
		}
		return nil
	}, prog)
}

// openDocs opens each group's document on its other local members (with
// light clients: on every local member) and waits until each has the
// initial heads.
func (lr *loadRun) openDocs(ctx context.Context, prog func(int)) error {
	if lr.cfg.Light {
		ms := lr.allLocal()
		return forEach(ctx, len(ms), lr.cfg.Concurrency, func(i int) error {
			m := ms[i]
			cs, err := m.lc.open(ctx, m.g.id, m.g.tmpl, m.idx < m.g.writers)
			if len(cs) > 0 {
				lr.deliverLight(m, cs, time.Now().UnixNano())
			}
			return err
		}, prog)
	}
	ms := lr.localMembers(false)
	return forEach(ctx, len(ms), lr.cfg.Concurrency, func(i int) error { return lr.open(ctx, ms[i]) }, prog)
}

// opening is how many clients open a document after the creators (all of
// them with light clients).
func (lr *loadRun) opening() int {
	if lr.cfg.Light {
		return lr.clientCount()
	}
	return lr.clientCount() - len(lr.groups)
}

func (lr *loadRun) open(ctx context.Context, m *member) error {
	g := m.g
	if lr.cfg.Preload {
		// A client that already has the document stored, like a returning
		// user of an automerge-repo app.
		if _, err := m.c.store.Append(ctx, string(g.id), g.tmpl.Data, g.tmpl.Heads); err != nil {
			return fmt.Errorf("loadgen: store the initial document: %w", err)
		}
	}
	var err error
	if m.h, _, err = findRetry(ctx, m.c, g.id); err != nil {
		return err
	}
	err = waitFor(ctx, 10*time.Millisecond, func() bool {
		hs, err := m.h.Heads(ctx)
		return err == nil && equalHeads(hs, g.tmpl.heads)
	})
	if err != nil {
		return fmt.Errorf("loadgen: a client did not receive the initial document: %w", err)
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

// startReceivers starts a receiver for every local member.
func (lr *loadRun) startReceivers(ctx context.Context) error {
	rctx, cancel := context.WithCancel(ctx)
	lr.recvCancel = cancel
	for _, m := range lr.allLocal() {
		lr.recvWG.Add(1)
		if m.lc != nil {
			go lr.receiveLight(rctx, m)
		} else {
			go lr.receive(ctx, m)
		}
	}
	return nil
}

func (lr *loadRun) stopReceivers() {
	select {
	case <-lr.stop:
	default:
		close(lr.stop)
	}
	if lr.recvCancel != nil {
		lr.recvCancel()
	}
	lr.recvWG.Wait()
}

// closeClients closes the clients of this process.
func (lr *loadRun) closeClients() {
	closeAll(lr.clients)
	closeLight(lr.light)
}

// unreadable counts the sync messages the light clients of this process
// could not read.
func (lr *loadRun) unreadable() int64 {
	var n int64
	for _, c := range lr.light {
		if c != nil {
			n += c.bad.Load()
		}
	}
	return n
}

// traffic sums the payload bytes of the clients of this process.
func (lr *loadRun) traffic() (sent, recv int64) {
	sent, recv = trafficOf(lr.clients)
	for _, c := range lr.light {
		if c != nil {
			sent += c.bytesOut.Load()
			recv += c.bytesIn.Load()
		}
	}
	return sent, recv
}

// receive turns the arrivals of remote changes on m's client into
// deliveries. It waits on the client's own signal rather than on a
// subscription: a subscription makes the Go client compute the paths each
// remote batch touched, by reading the whole document before and after it,
// and with hundreds of clients in a process that work, not the server,
// would bound the run.
func (lr *loadRun) receive(ctx context.Context, m *member) {
	defer lr.recvWG.Done()
	for {
		select {
		case <-lr.stop:
			return
		case <-ctx.Done():
			return
		case <-m.c.changed:
		}
		lr.deliver(ctx, m)
	}
}

// deliver reads the sequence numbers of the writers on m's document: every
// change of a writer up to its number has reached m now (one writer's
// changes reach a peer in order).
func (lr *loadRun) deliver(ctx context.Context, m *member) {
	var ws map[string]any
	err := m.h.Read(ctx, func(d *crdt.Doc) error {
		v, err := d.Get("/writers")
		if err != nil {
			return err
		}
		ws, _ = v.(map[string]any)
		return nil
	})
	if err != nil {
		return
	}
	now := time.Now().UnixNano()
	for key, v := range ws {
		w, err := strconv.Atoi(strings.TrimPrefix(key, "c"))
		if err != nil || w < 0 || w >= m.g.writers || w == m.idx {
			continue
		}
		n, ok := toInt(v)
		if !ok {
			continue
		}
		n = min(n, int64(lr.capacity))
		for k := m.seen[w] + 1; k <= n; k++ {
			lr.received(m.g, w, k, 1, now)
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

// write makes changes on m at rate per second from start until end.
func (lr *loadRun) write(ctx context.Context, m *member, rate float64, start, end time.Time, phase int32, ps *phaseStats, rng *rand.Rand) {
	interval := time.Duration(float64(time.Second) / rate)
	interval = max(interval, 10*time.Microsecond)
	// Writers start at random points of their first interval, so that
	// clients do not all write at once.
	// A slow writer's first turn may fall after the phase: it then waits
	// for the end, so that a phase always lasts its duration.
	at := start.Add(time.Duration(rng.Int64N(int64(interval))))
	if at.After(end) {
		at = end
	}
	first := time.NewTimer(time.Until(at))
	defer first.Stop()
	select {
	case <-first.C:
	case <-ctx.Done():
		return
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	// A slow writer (one change a minute) stops at the end, not at its next turn.
	stop := time.NewTimer(time.Until(end))
	defer stop.Stop()
	widgets := lr.cfg.Widgets
	for {
		now := time.Now()
		if !now.Before(end) || ctx.Err() != nil {
			return
		}
		n := m.log.next + 1
		if n > int64(lr.capacity) {
			return
		}
		ts := now.UnixNano()
		k := rng.IntN(widgets)
		set := func(d *crdt.Doc) error {
			w := "/widgets/w" + strconv.Itoa(k)
			c := "/writers/c" + strconv.Itoa(m.idx)
			for _, s := range [...]struct {
				p string
				v any
			}{{w + "/v", n}, {w + "/t", ts}, {w + "/by", m.idx}, {c, n}} {
				if err := d.Set(s.p, s.v); err != nil {
					return err
				}
			}
			return nil
		}
		var (
			committed bool
			err       error
		)
		if m.lc != nil {
			committed, err = m.lc.change(ctx, set, changeMsg(m.idx, n))
		} else {
			_, err = m.h.Change(ctx, set)
			committed = err == nil
		}
		if committed {
			// A light writer's change that could not be sent still
			// took its number; otherwise nothing was committed and the
			// number is free again.
			m.log.next = n
		}
		if err != nil {
			ps.errs.Add(1)
		} else {
			lr.made(m, n, ts, phase)
		}
		select {
		case <-tick.C:
		case <-stop.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// writeLocal runs the writer of every local member for one phase and
// returns when all have stopped.
func (lr *loadRun) writeLocal(ctx context.Context, phase int32, ps *phaseStats, rate float64, start, end time.Time) {
	var wg sync.WaitGroup
	seed := uint64(lr.cfg.Seed) + uint64(phase)*1_000_003
	for _, g := range lr.groups {
		for _, m := range g.members[:g.writers] {
			if !m.local {
				continue
			}
			rng := rand.New(rand.NewPCG(seed, uint64(m.k)+1))
			wg.Add(1)
			go func() {
				defer wg.Done()
				lr.write(ctx, m, rate, start, end, phase, ps, rng)
			}()
		}
	}
	wg.Wait()
}

// localHeads returns, per local group, the heads its local members agree
// on, or nil when they do not (yet).
func (lr *loadRun) localHeads(ctx context.Context) map[int][]crdt.Hash {
	out := map[int][]crdt.Hash{}
	for _, g := range lr.groups {
		var first []crdt.Hash
		agree, some := true, false
		for _, m := range g.members {
			var (
				hs  []crdt.Hash
				err error
			)
			switch {
			case !m.local:
				continue
			case m.lc != nil:
				hs = m.lc.headsNow()
			case m.h == nil:
				continue
			default:
				hs, err = m.h.Heads(ctx)
			}
			if err != nil {
				agree = false
				break
			}
			if !some {
				first, some = hs, true
			} else if !equalHeads(first, hs) {
				agree = false
				break
			}
		}
		if !some {
			continue
		}
		if !agree {
			first = nil
		}
		out[g.idx] = first
	}
	return out
}

// runPhase runs every member at rate for d, then waits up to drain for the
// phase's changes to reach everybody.
func (lr *loadRun) runPhase(ctx context.Context, rate float64, d, drain time.Duration, label string) (*Result, error) {
	cfg := lr.cfg
	ps := &phaseStats{}
	lr.phMu.Lock()
	idx := int32(len(lr.phases))
	lr.phases = append(lr.phases, ps)
	lr.phMu.Unlock()

	res := &Result{Scenario: cfg.Scenario, Started: time.Now()}
	nClients := lr.clientCount()
	res.Clients, res.Docs = nClients, len(lr.groups)
	res.Offered = float64(lr.writerCount()) * rate
	sent0, recv0 := lr.fleet.traffic(ctx)
	cpu0 := lr.cpu()
	ccpu0 := lr.fleet.cpuSeconds()

	start := time.Now().Add(lr.fleet.lead())
	end := start.Add(d)
	done := make(chan struct{})
	var werr error
	go func() {
		defer close(done)
		werr = lr.fleet.write(ctx, idx, ps, rate, start, end)
	}()
	cfg.Progress.Begin(label, d.Milliseconds())
	progressUntil(ctx, cfg.Progress, start, end, done)
	cfg.Progress.End()
	if werr != nil {
		return nil, werr
	}
	ccpu := lr.fleet.cpuSeconds() - ccpu0
	cpuLoad := lr.cpu()

	dctx, cancel := context.WithTimeout(ctx, drain)
	_ = waitFor(dctx, 5*time.Millisecond, func() bool { return ps.complete.Load() >= ps.made.Load() })
	cancel()
	cpuEnd := lr.cpu()
	sent1, recv1 := lr.fleet.traffic(ctx)

	// Changes are made in [start, end); the wall time until the last
	// writer stopped and the drain are longer.
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
	res.ClientCPUPercent = 100 * ccpu / loadSecs
	res.ClientPeakRSSBytes = lr.fleet.peakRSS()
	if cfg.Spawn != nil {
		res.ServerCPUSeconds = cpuEnd - cpu0
		res.ServerCPUPercent = 100 * (cpuLoad - cpu0) / loadSecs
		if res.Changes > 0 {
			res.CPUPerChangeUs = 1e6 * res.ServerCPUSeconds / float64(res.Changes)
		}
		res.PeakRSSBytes = cfg.Spawn.Sample().HWMBytes
	}
	return res, nil
}

func (lr *loadRun) cpu() float64 {
	if lr.cfg.Spawn == nil {
		return 0
	}
	return lr.cfg.Spawn.Sample().CPUSeconds
}

// progressUntil reports elapsed milliseconds until end or until done closes.
func progressUntil(ctx context.Context, p Progress, start, end time.Time, done <-chan struct{}) {
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
			p.Set(max(0, min(now.Sub(start), end.Sub(start))).Milliseconds())
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
	lr.cfg.Progress.Begin("wait until every client has the same heads", 1)
	defer lr.cfg.Progress.End()
	t0 := time.Now()
	defer func() { lr.convergeSecs = time.Since(t0).Seconds() }()
	// Asking the workers costs each a read of every client's heads.
	every := 20 * time.Millisecond
	if lr.cfg.Procs > 1 {
		every = 200 * time.Millisecond
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		ok, err := lr.fleet.converged(cctx)
		if ok {
			return true
		}
		if err != nil {
			return false
		}
		select {
		case <-cctx.Done():
			return false
		case <-t.C:
		}
	}
}
