package loadgen

import (
	"context"
	"fmt"
	"os"
	"time"
)

// fleet is where the clients of a load run live: in this process
// (localFleet) or spread over worker processes (procFleet). The loadRun
// that owns it counts changes and deliveries either way.
type fleet interface {
	// setup connects the clients, creates each group's document, opens it
	// on the other members and starts the receivers.
	setup(ctx context.Context) error
	// lead is how far ahead of now a phase must start so that every
	// client can begin on time.
	lead() time.Duration
	// write runs every client's writer from start until end at rate and
	// returns once every change made is recorded in the run.
	write(ctx context.Context, phase int32, ps *phaseStats, rate float64, start, end time.Time) error
	// traffic is the clients' payload bytes so far.
	traffic(ctx context.Context) (sent, recv int64)
	// unreadable counts the sync messages light clients could not read.
	unreadable(ctx context.Context) int64
	// converged tells whether every member of every group has the same heads.
	converged(ctx context.Context) (bool, error)
	// cpuSeconds is the CPU time the clients' processes used so far.
	cpuSeconds() float64
	// peakRSS sums the peak resident sets of the clients' processes.
	peakRSS() int64
	// close stops the receivers and closes the clients (and the workers).
	close()
}

// newLoadRun lays out groups of sizes clients, each writer with room for
// capacity changes, and sets them up on cfg's fleet: cfg.Procs worker
// processes, or this one.
func newLoadRun(ctx context.Context, cfg *Config, url string, sizes []int, capacity int, res *Result) (*loadRun, error) {
	lr := &loadRun{cfg: cfg, url: url, capacity: capacity, stop: make(chan struct{})}
	inProcess := cfg.Procs <= 1
	base := 0
	for i, s := range sizes {
		lr.groups = append(lr.groups, newGroup(i, s, cfg.writersOf(s), base, capacity, func(int) bool { return inProcess }, true))
		base += s
	}
	t0 := time.Now()
	if cfg.History > 0 {
		cfg.Progress.Begin(fmt.Sprintf("build a document of %d changes", cfg.History+1), 1)
	}
	tmpls, err := buildTemplates(ctx, cfg, lr.groups)
	if cfg.History > 0 {
		cfg.Progress.End()
	}
	if err != nil {
		return nil, err
	}
	if cfg.History > 0 {
		res.figure("history_build_s", time.Since(t0).Seconds())
		res.figure("history_doc_bytes", float64(len(tmpls[lr.groups[0].writers].Data)))
	}
	for _, g := range lr.groups {
		g.tmpl = tmpls[g.writers]
	}
	if inProcess {
		lr.fleet = &localFleet{lr: lr}
	} else {
		lr.fleet = &procFleet{lr: lr}
	}
	t1 := time.Now()
	if err := lr.fleet.setup(ctx); err != nil {
		lr.fleet.close()
		return nil, err
	}
	res.figure("setup_s", time.Since(t1).Seconds())
	return lr, nil
}

// localFleet runs every client in this process.
type localFleet struct{ lr *loadRun }

func (f *localFleet) setup(ctx context.Context) error {
	lr, cfg := f.lr, f.lr.cfg
	total := lr.clientCount()
	cfg.Progress.Begin(fmt.Sprintf("connect %d clients", total), int64(total))
	err := lr.connect(ctx, func(n int) { cfg.Progress.Set(int64(n)) })
	cfg.Progress.End()
	if err != nil {
		return err
	}
	cfg.Progress.Begin(fmt.Sprintf("create %d documents", len(lr.groups)), int64(len(lr.groups)))
	err = lr.createDocs(ctx, func(n int) { cfg.Progress.Set(int64(n)) })
	cfg.Progress.End()
	if err != nil {
		return err
	}
	others := lr.opening()
	cfg.Progress.Begin(fmt.Sprintf("open the documents on %d clients", others), int64(others))
	err = lr.openDocs(ctx, func(n int) { cfg.Progress.Set(int64(n)) })
	cfg.Progress.End()
	if err != nil {
		return err
	}
	return lr.startReceivers(ctx)
}

func (f *localFleet) lead() time.Duration { return 0 }

func (f *localFleet) write(ctx context.Context, phase int32, ps *phaseStats, rate float64, start, end time.Time) error {
	f.lr.writeLocal(ctx, phase, ps, rate, start, end)
	return nil
}

func (f *localFleet) traffic(context.Context) (int64, int64) { return f.lr.traffic() }

func (f *localFleet) unreadable(context.Context) int64 { return f.lr.unreadable() }

func (f *localFleet) converged(ctx context.Context) (bool, error) {
	heads := f.lr.localHeads(ctx)
	if len(heads) != len(f.lr.groups) {
		return false, ctx.Err()
	}
	for _, hs := range heads {
		if hs == nil {
			return false, ctx.Err()
		}
	}
	return true, nil
}

func (f *localFleet) cpuSeconds() float64 {
	s, _ := procCPU(os.Getpid())
	return s
}

func (f *localFleet) peakRSS() int64 {
	_, hwm := procMem(os.Getpid())
	return hwm
}

func (f *localFleet) close() {
	f.lr.stopReceivers()
	f.lr.closeClients()
}
