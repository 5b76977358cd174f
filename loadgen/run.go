package loadgen

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/tandemsync/tandem/crdt"
)

// Run runs cfg.Scenario against the server and returns what it measured.
// When cfg.Spawn is set, Run starts the server and stops it before it
// returns. Run is bounded by cfg.Timeout (and ctx).
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	res := &Result{Scenario: cfg.Scenario, Started: time.Now(), Params: cfg.params()}
	load0 := loadAvg()
	url := cfg.Server
	if cfg.Spawn != nil {
		cfg.Progress.Begin("start server", 1)
		u, err := cfg.Spawn.Start(ctx)
		cfg.Progress.End()
		if err != nil {
			return nil, err
		}
		url = u
		res.Server = "spawn: " + cfg.Spawn.Command
		defer func() { _ = cfg.Spawn.Stop(context.Background()) }()
	} else {
		res.Server = url
	}
	var err error
	switch cfg.Scenario {
	case Dashboard:
		err = runLoad(ctx, &cfg, url, res, []int{cfg.Clients})
	case Rooms:
		sizes := make([]int, cfg.Docs)
		for i := range sizes {
			sizes[i] = cfg.RoomClients
		}
		err = runLoad(ctx, &cfg, url, res, sizes)
	case Ramp:
		err = runRamp(ctx, &cfg, url, res)
	case ManyDocs:
		err = runManyDocs(ctx, &cfg, url, res)
	case LargeDoc:
		err = runLargeDoc(ctx, &cfg, url, res)
	}
	res.Elapsed = time.Since(res.Started).Seconds()
	if load0 != "" {
		// On a shared machine other work moves every figure: say how busy it was.
		res.Notes = append(res.Notes, fmt.Sprintf("machine load average (1 min): %s at the start, %s at the end, %d cores", load0, loadAvg(), runtime.NumCPU()))
	}
	if cfg.Spawn != nil {
		if s := cfg.Spawn.Sample(); s.HWMBytes > res.PeakRSSBytes {
			res.PeakRSSBytes = s.HWMBytes
		}
	} else if err == nil {
		res.Notes = append(res.Notes, "server CPU and memory are measured only with --spawn")
	}
	if err != nil {
		return res, err
	}
	return res, nil
}

// loadAvg is the 1-minute load average from /proc/loadavg ("" if unknown).
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

func (c *Config) params() map[string]any {
	p := map[string]any{}
	switch c.Scenario {
	case Dashboard:
		p["clients"], p["widgets"], p["rate"], p["duration"], p["history"] = c.Clients, c.Widgets, c.Rate, c.Duration.String(), c.History
	case Rooms:
		p["rooms"], p["room_clients"], p["widgets"], p["rate"], p["duration"], p["history"] = c.Docs, c.RoomClients, c.Widgets, c.Rate, c.Duration.String(), c.History
	case Ramp:
		p["clients"], p["widgets"], p["rate"], p["factor"], p["steps"], p["step"], p["p99_bound"], p["history"] = c.Clients, c.Widgets, c.Rate, c.RampFactor, c.RampSteps, c.StepDuration.String(), c.P99Bound.String(), c.History
	case ManyDocs:
		p["docs"], p["load"] = c.Docs, c.Load
	case LargeDoc:
		p["size_mb"] = c.SizeMB
	}
	if c.Procs > 1 {
		p["procs"] = c.Procs
	}
	if c.Preload {
		p["preload"] = true
	}
	if c.Light {
		p["light"] = true
	}
	if c.Warmup > 0 && (c.Scenario == Dashboard || c.Scenario == Rooms || c.Scenario == Ramp) {
		p["warmup"] = c.Warmup.String()
	}
	if c.Writers > 0 && (c.Scenario == Dashboard || c.Scenario == Rooms || c.Scenario == Ramp) {
		p["writers"] = c.Writers
	}
	return p
}

func copyPhase(dst, src *Result) {
	dst.Clients, dst.Docs = src.Clients, src.Docs
	dst.Offered, dst.Achieved, dst.Delivered = src.Offered, src.Achieved, src.Delivered
	dst.Changes, dst.Complete, dst.Incomplete, dst.Errors = src.Changes, src.Complete, src.Incomplete, src.Errors
	dst.Latency, dst.latencies = src.Latency, src.latencies
	dst.ServerCPUSeconds, dst.ServerCPUPercent, dst.CPUPerChangeUs = src.ServerCPUSeconds, src.ServerCPUPercent, src.CPUPerChangeUs
	dst.PeakRSSBytes = max(dst.PeakRSSBytes, src.PeakRSSBytes)
	dst.ClientCPUPercent = src.ClientCPUPercent
	dst.ClientPeakRSSBytes = max(dst.ClientPeakRSSBytes, src.ClientPeakRSSBytes)
	dst.BytesSent, dst.BytesReceived = src.BytesSent, src.BytesReceived
}

// runLoad: groups of clients write at cfg.Rate for cfg.Duration (dashboard, rooms).
func runLoad(ctx context.Context, cfg *Config, url string, res *Result, sizes []int) error {
	capacity := int(math.Ceil(cfg.Rate*(cfg.Duration+cfg.Warmup).Seconds())) + 3
	rss0 := serverRSS(cfg)
	lr, err := newLoadRun(ctx, cfg, url, sizes, capacity, res)
	if err != nil {
		return err
	}
	defer lr.close()
	lr.start = time.Now()
	stopT, doneT := make(chan struct{}), make(chan struct{})
	go lr.sampleTimeline(stopT, &res.Timeline, doneT)
	if cfg.Warmup > 0 {
		// The same load, not counted: the first rounds after the clients
		// loaded the documents (long histories above all) are not the
		// steady state; the warm-up's own figures go to the notes.
		w, err := lr.runPhase(ctx, cfg.Rate, cfg.Warmup, cfg.Drain, fmt.Sprintf("warm-up %v", cfg.Warmup))
		if err != nil {
			close(stopT)
			<-doneT
			return err
		}
		res.Notes = append(res.Notes, fmt.Sprintf("warm-up %v (not counted): %d changes, fan-out p50 %.1f ms, p99 %.1f ms, max %.1f ms, %d incomplete",
			cfg.Warmup, w.Changes, w.Latency.P50, w.Latency.P99, w.Latency.Max, w.Incomplete))
	}
	ph, err := lr.runPhase(ctx, cfg.Rate, cfg.Duration, cfg.Drain, fmt.Sprintf("%s %v", cfg.Scenario, cfg.Duration))
	close(stopT)
	<-doneT
	if err != nil {
		return err
	}
	conv := lr.converge(ctx, cfg.Drain)
	res.figure("converge_s", lr.convergeSecs)
	res.figure("deliveries", float64(lr.deliveries.Load()))
	lr.noteUnreadable(ctx, res)
	copyPhase(res, ph)
	res.Converged = &conv
	perClient(cfg, res, rss0)
	return ctx.Err()
}

// noteUnreadable says how many sync messages light clients could not read
// (a version-2 message carrying changes, a bad checksum): the changes in
// them did not count.
func (lr *loadRun) noteUnreadable(ctx context.Context, res *Result) {
	if !lr.cfg.Light {
		return
	}
	if n := lr.fleet.unreadable(ctx); n > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("light clients could not read %d sync messages (version 2 with changes, or corrupt)", n))
	}
}

// serverRSS is the spawned server's resident set now (0 without one).
func serverRSS(cfg *Config) int64 {
	if cfg.Spawn == nil {
		return 0
	}
	return cfg.Spawn.Sample().RSSBytes
}

// perClient adds the server's peak memory per client above what it held
// before the clients came (rss0).
func perClient(cfg *Config, res *Result, rss0 int64) {
	if cfg.Spawn == nil || rss0 <= 0 || res.Clients == 0 || res.PeakRSSBytes <= rss0 {
		return
	}
	res.figure("server_rss_before_mb", float64(rss0)/(1<<20))
	res.figure("server_rss_per_client_kb", float64(res.PeakRSSBytes-rss0)/1024/float64(res.Clients))
}

// runRamp raises the per-client rate by RampFactor each step until a step's
// p99 exceeds P99Bound, the clients cannot make the offered rate, or changes
// stop arriving.
func runRamp(ctx context.Context, cfg *Config, url string, res *Result) error {
	capacity, r := 2+int(math.Ceil(cfg.Rate*cfg.Warmup.Seconds())), cfg.Rate
	for range cfg.RampSteps {
		capacity += int(math.Ceil(r*cfg.StepDuration.Seconds())) + 1
		r *= cfg.RampFactor
	}
	rss0 := serverRSS(cfg)
	lr, err := newLoadRun(ctx, cfg, url, []int{cfg.Clients}, capacity, res)
	if err != nil {
		return err
	}
	defer lr.close()
	lr.start = time.Now()
	stopT, doneT := make(chan struct{}), make(chan struct{})
	go lr.sampleTimeline(stopT, &res.Timeline, doneT)
	rate := cfg.Rate
	drain := min(cfg.Drain, max(5*time.Second, 4*cfg.P99Bound))
	var why string
	var failed error
	if cfg.Warmup > 0 {
		// The first step's load, not counted: a server's first seconds
		// (a JIT compiler warming up, caches filling) are not its steady
		// state, and the ramp stops at the first step over the bound.
		w, err := lr.runPhase(ctx, rate, cfg.Warmup, drain, fmt.Sprintf("warm-up %v", cfg.Warmup))
		if err != nil {
			failed = err
		} else {
			res.Notes = append(res.Notes, fmt.Sprintf("warm-up %v at the first step's rate (not counted): %d changes, fan-out p50 %.1f ms, p99 %.1f ms, max %.1f ms, %d incomplete",
				cfg.Warmup, w.Changes, w.Latency.P50, w.Latency.P99, w.Latency.Max, w.Incomplete))
		}
	}
	for step := range cfg.RampSteps {
		if failed != nil {
			break
		}
		if ctx.Err() != nil {
			break
		}
		ph, err := lr.runPhase(ctx, rate, cfg.StepDuration, drain, fmt.Sprintf("ramp step %d: %.0f changes/s", step+1, rate*float64(cfg.writersOf(cfg.Clients))))
		if err != nil {
			failed = err
			break
		}
		res.Steps = append(res.Steps, ph)
		res.PeakRSSBytes = max(res.PeakRSSBytes, ph.PeakRSSBytes)
		res.ClientPeakRSSBytes = max(res.ClientPeakRSSBytes, ph.ClientPeakRSSBytes)
		within := ph.Latency.Count > 0 && ph.Latency.P99 <= float64(cfg.P99Bound.Microseconds())/1000 && ph.Incomplete == 0
		if within {
			res.Saturation = max(res.Saturation, ph.Delivered)
		}
		switch {
		case !within && ph.Incomplete > 0:
			why = fmt.Sprintf("step %d: %d changes had not reached every client %v after the step", step+1, ph.Incomplete, drain)
		case !within:
			why = fmt.Sprintf("step %d: p99 %.1f ms over the bound %v", step+1, ph.Latency.P99, cfg.P99Bound)
		case ph.Achieved < 0.8*ph.Offered:
			why = fmt.Sprintf("step %d: clients made only %.0f of %.0f changes/s offered (client-bound)", step+1, ph.Achieved, ph.Offered)
		}
		if why != "" {
			break
		}
		rate *= cfg.RampFactor
	}
	close(stopT)
	<-doneT
	if failed != nil {
		return failed
	}
	conv := lr.converge(ctx, cfg.Drain)
	res.figure("converge_s", lr.convergeSecs)
	res.figure("deliveries", float64(lr.deliveries.Load()))
	lr.noteUnreadable(ctx, res)
	res.Converged = &conv
	if why == "" {
		why = fmt.Sprintf("no limit reached in %d steps", len(res.Steps))
	}
	res.Notes = append(res.Notes, "ramp ended: "+why)
	res.Clients, res.Docs = cfg.Clients, 1
	for _, s := range res.Steps {
		res.Changes += s.Changes
		res.Complete += s.Complete
		res.Incomplete += s.Incomplete
		res.Errors += s.Errors
		res.ServerCPUSeconds += s.ServerCPUSeconds
		res.BytesSent += s.BytesSent
		res.BytesReceived += s.BytesReceived
	}
	// The headline latency is the last step within the bound (the saturation step).
	for i := len(res.Steps) - 1; i >= 0; i-- {
		s := res.Steps[i]
		if s.Delivered == res.Saturation && res.Saturation > 0 {
			res.Latency = s.Latency
			res.Offered, res.Achieved, res.Delivered = s.Offered, s.Achieved, s.Delivered
			res.ServerCPUPercent, res.CPUPerChangeUs = s.ServerCPUPercent, s.CPUPerChangeUs
			res.ClientCPUPercent = s.ClientCPUPercent
			break
		}
	}
	res.figure("saturation_changes_per_s", res.Saturation)
	perClient(cfg, res, rss0)
	return ctx.Err()
}

// smallDoc is a many-docs document: a dashboard of 5 widgets.
func smallDoc(i int) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, `{"title":"doc %d","widgets":{`, i)
	for w := range 5 {
		if w > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"w%d":{"kind":"gauge","v":%d}`, w, w)
	}
	b.WriteString(`}}`)
	return []byte(b.String())
}

// runManyDocs creates cfg.Docs documents through one client, loads cfg.Load
// of them from a fresh client, and (with a spawned server) restarts the
// server and times the first document served.
func runManyDocs(ctx context.Context, cfg *Config, url string, res *Result) error {
	creator, err := dialPaced(ctx, url)
	if err != nil {
		return err
	}
	defer creator.close()
	ids := make([]crdt.DocumentID, cfg.Docs)
	cfg.Progress.Begin(fmt.Sprintf("create %d documents", cfg.Docs), int64(cfg.Docs))
	t0 := time.Now()
	err = forEach(ctx, cfg.Docs, cfg.Concurrency, func(i int) error {
		h, err := creator.r.CreateJSON(ctx, smallDoc(i))
		if err != nil {
			return err
		}
		ids[i] = h.ID()
		return nil
	}, func(n int) { cfg.Progress.Set(int64(n)) })
	cfg.Progress.End()
	if err != nil {
		return err
	}
	// A created document counts as unsynced until the server confirmed
	// it. (Counting the server's answers instead passed early: some
	// documents get two, and finds of the others then had to be retried.)
	if err := waitFor(ctx, 10*time.Millisecond, func() bool {
		return len(creator.r.Unsynced()) == 0
	}); err != nil {
		return fmt.Errorf("loadgen: the server did not answer for every created document: %w", err)
	}
	created := time.Since(t0)
	res.Docs = cfg.Docs
	res.figure("create_docs_per_s", float64(cfg.Docs)/created.Seconds())
	sent, recv := trafficOf([]*client{creator})
	res.BytesSent, res.BytesReceived = sent, recv

	// Load K documents from a fresh client.
	rng := rand.New(rand.NewPCG(uint64(cfg.Seed), 7))
	k := min(cfg.Load, cfg.Docs)
	pick := rng.Perm(cfg.Docs)[:k]
	fresh, err := dial(ctx, url)
	if err != nil {
		return err
	}
	lat := make([]time.Duration, k)
	var retries int
	var mu sync.Mutex
	cfg.Progress.Begin(fmt.Sprintf("load %d documents", k), int64(k))
	t1 := time.Now()
	err = forEach(ctx, k, min(cfg.Concurrency, 8), func(i int) error {
		s := time.Now()
		_, tries, err := findRetry(ctx, fresh, ids[pick[i]])
		lat[i] = time.Since(s)
		mu.Lock()
		retries += tries
		mu.Unlock()
		return err
	}, func(n int) { cfg.Progress.Set(int64(n)) })
	cfg.Progress.End()
	loadAll := time.Since(t1)
	s, r := trafficOf([]*client{fresh})
	res.BytesSent += s
	res.BytesReceived += r
	fresh.close()
	if err != nil {
		return err
	}
	l := summarize(lat)
	res.figure("load_docs_per_s", float64(k)/loadAll.Seconds())
	res.figure("load_p50_ms", l.P50)
	res.figure("load_p99_ms", l.P99)
	if retries > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("%d finds were retried (document not yet on the server)", retries))
	}
	if cfg.Spawn == nil {
		res.Notes = append(res.Notes, "cold start is measured only with --spawn")
		return nil
	}
	// Cold start: restart the server on the same data, time the first document.
	creator.close()
	res.PeakRSSBytes = cfg.Spawn.Sample().HWMBytes
	cfg.Progress.Begin("cold start", 1)
	defer cfg.Progress.End()
	if err := cfg.Spawn.Stop(ctx); err != nil {
		return err
	}
	t2 := time.Now()
	url2, err := cfg.Spawn.Start(ctx)
	if err != nil {
		return err
	}
	listening := time.Since(t2)
	c, err := dial(ctx, url2)
	if err != nil {
		return err
	}
	defer c.close()
	h, _, err := findRetry(ctx, c, ids[rng.IntN(cfg.Docs)])
	if err != nil {
		return err
	}
	first := time.Since(t2)
	if _, err := h.Get(ctx, "/title"); err != nil {
		return err
	}
	res.figure("cold_start_listen_ms", float64(listening.Microseconds())/1000)
	res.figure("cold_start_first_doc_ms", float64(first.Microseconds())/1000)
	res.figure("cold_start_rss_mb", float64(cfg.Spawn.Sample().RSSBytes)/(1<<20))
	return nil
}

// largeDoc builds a document of about mb megabytes: rows of 1 KiB strings.
func largeDoc(mb float64) ([]byte, error) {
	rows := max(1, int(mb*1024))
	d := crdt.New()
	if err := d.Set("/rows", map[string]any{}); err != nil {
		return nil, err
	}
	// Random text: Automerge compresses its columns, so repeated text would
	// make a much smaller document than asked for.
	rng := rand.New(rand.NewPCG(uint64(rows), 11))
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 "
	buf := make([]byte, 1024)
	for i := range rows {
		for j := range buf {
			buf[j] = alphabet[rng.IntN(len(alphabet))]
		}
		if err := d.Set(fmt.Sprintf("/rows/r%06d", i), string(buf)); err != nil {
			return nil, err
		}
		if i%256 == 255 {
			if _, _, err := d.Commit(""); err != nil {
				return nil, err
			}
		}
	}
	if _, _, err := d.Commit(""); err != nil {
		return nil, err
	}
	return d.Save(), nil
}

// runLargeDoc uploads a document of cfg.SizeMB and syncs it to fresh clients.
func runLargeDoc(ctx context.Context, cfg *Config, url string, res *Result) error {
	cfg.Progress.Begin(fmt.Sprintf("build a %.1f MB document", cfg.SizeMB), 1)
	data, err := largeDoc(cfg.SizeMB)
	cfg.Progress.End()
	if err != nil {
		return err
	}
	res.figure("doc_bytes", float64(len(data)))
	creator, err := dial(ctx, url)
	if err != nil {
		return err
	}
	defer creator.close()
	cfg.Progress.Begin("upload and sync to two fresh clients", 3)
	defer cfg.Progress.End()
	t0 := time.Now()
	h, err := creator.r.Import(ctx, data)
	if err != nil {
		return err
	}
	want, err := h.Heads(ctx)
	if err != nil {
		return err
	}
	cfg.Progress.Set(1)
	fetch := func() (time.Duration, int64, error) {
		c, err := dial(ctx, url)
		if err != nil {
			return 0, 0, err
		}
		defer c.close()
		s := time.Now()
		fh, _, err := findRetry(ctx, c, h.ID())
		if err != nil {
			return 0, 0, err
		}
		if err := waitFor(ctx, 5*time.Millisecond, func() bool {
			hs, err := fh.Heads(ctx)
			return err == nil && equalHeads(hs, want)
		}); err != nil {
			return 0, 0, fmt.Errorf("loadgen: large document did not arrive complete: %w", err)
		}
		return time.Since(s), c.r.Stats().BytesIn, nil
	}
	_, _, err = fetch()
	if err != nil {
		return err
	}
	upload := time.Since(t0)
	cfg.Progress.Set(2)
	down, bytesIn, err := fetch()
	if err != nil {
		return err
	}
	cfg.Progress.Set(3)
	res.figure("upload_and_first_sync_ms", float64(upload.Microseconds())/1000)
	res.figure("download_ms", float64(down.Microseconds())/1000)
	res.figure("download_mb_per_s", float64(len(data))/(1<<20)/down.Seconds())
	res.BytesSent, res.BytesReceived = creator.r.Stats().BytesOut, creator.r.Stats().BytesIn+bytesIn
	conv := true
	res.Converged = &conv
	return nil
}
