package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/tandemsync/tandem/loadgen"
)

const benchSynopsis = `bench [--server ws://127.0.0.1:7070/sync | --spawn 'CMD {port} {dir}'] [flags] SCENARIO

Scenarios: dashboard, rooms, many-docs, large-doc, ramp (see loadgen's package doc).
--procs P runs the clients of dashboard, rooms and ramp in P worker processes
(this binary again), so that the load generator is not the bottleneck.
--light makes those clients light: they speak the protocol themselves and keep
only change hashes, never applying received changes into Automerge, so each
costs almost nothing per change; writers' changes then form concurrent chains.
Only loopback servers are accepted. --spawn starts the server itself on a free
loopback port ({port}) and a fresh data directory ({dir}), measures its CPU and
memory, and stops it at the end, e.g.
  tandem bench --spawn 'tandem serve --addr 127.0.0.1:{port} --data {dir}' dashboard`

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, _ := newFlagSet("bench", benchSynopsis, stderr)
	server := fs.String("server", "", "URL of a running sync server on a loopback address")
	spawn := fs.String("spawn", "", "command template that starts a server: {port} and {dir} are filled in")
	spawnDir := fs.String("spawn-dir", "", "data directory for --spawn (default: a temporary directory, removed at the end)")
	serverLog := fs.String("server-log", "", "file for the spawned server's output (default: discarded)")
	clients := fs.Int("clients", 10, "clients on the shared document (dashboard, ramp)")
	writers := fs.Int("writers", 0, "only the first N clients of each document write, the others only receive (default: all write)")
	widgets := fs.Int("widgets", 20, "widgets per document")
	rate := fs.Float64("rate", 2, "changes per second per client (ramp: the first step)")
	duration := fs.Duration("duration", 10*time.Second, "load duration (dashboard, rooms)")
	warmup := fs.Duration("warmup", 0, "run the load this long first, without counting it (dashboard, rooms; ramp: at the first step's rate)")
	history := fs.Int("history", 0, "changes in each document's history before the run")
	preload := fs.Bool("preload", false, "clients start with the document in their own store (returning users) instead of fetching it through the server")
	light := fs.Bool("light", false, "light clients (dashboard, rooms, ramp): track change hashes instead of applying changes, so the server, not the clients, is the bottleneck; writers' changes are concurrent chains")
	docs := fs.Int("docs", 0, "rooms (default 100), or documents to create for many-docs (default 1000)")
	roomClients := fs.Int("room-clients", 3, "clients per room (rooms)")
	load := fs.Int("load", 100, "documents a fresh client loads (many-docs)")
	size := fs.Float64("size-mb", 1, "size of the large document in MB (large-doc)")
	factor := fs.Float64("ramp-factor", 1.5, "rate multiplier per ramp step")
	steps := fs.Int("ramp-steps", 10, "most ramp steps")
	step := fs.Duration("step", 5*time.Second, "duration of one ramp step")
	bound := fs.Duration("p99-bound", 250*time.Millisecond, "the ramp stops when a step's p99 fan-out latency exceeds this")
	drain := fs.Duration("drain", 15*time.Second, "time allowed after the load for changes to arrive and clients to converge")
	timeout := fs.Duration("timeout", 0, "bound on the whole run (default: planned time + 2m)")
	seed := fs.Int64("seed", 1, "seed of the random choices")
	procs := fs.Int("procs", 1, "spread the clients over this many worker processes (dashboard, rooms, ramp)")
	conc := fs.Int("concurrency", 32, "parallel connects and document opens during set-up (per process)")
	jsonOut := fs.String("json", "", "write the results as JSON to FILE")
	plotOut := fs.String("plot", "", "write a latency and throughput picture to FILE.png")
	quiet := fs.Bool("quiet", false, "no progress bar")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("%w: bench: name one scenario (%s)", errUsage, strings.Join(loadgen.Scenarios, ", "))
	}
	if !slices.Contains(loadgen.Scenarios, pos[0]) {
		return fmt.Errorf("%w: bench: unknown scenario %q (want %s)", errUsage, pos[0], strings.Join(loadgen.Scenarios, ", "))
	}
	if (*server == "") == (*spawn == "") {
		return fmt.Errorf("%w: bench: give exactly one of --server and --spawn", errUsage)
	}
	if *server != "" {
		if err := loadgen.CheckLoopback(*server); err != nil {
			return fmt.Errorf("%w: bench: --server: %v", errUsage, err)
		}
	}
	if *plotOut != "" && !strings.HasSuffix(strings.ToLower(*plotOut), ".png") {
		return fmt.Errorf("%w: bench: --plot wants a .png file name", errUsage)
	}
	cfg := loadgen.Config{
		Scenario: pos[0], Server: *server,
		Clients: *clients, Writers: *writers, Widgets: *widgets, Rate: *rate, Duration: *duration, Warmup: *warmup, History: *history, Preload: *preload, Light: *light,
		Docs: *docs, RoomClients: *roomClients, Load: *load, SizeMB: *size,
		RampFactor: *factor, RampSteps: *steps, StepDuration: *step, P99Bound: *bound,
		Drain: *drain, Timeout: *timeout, Seed: *seed, Procs: *procs, Concurrency: *conc,
	}
	if *procs > 1 {
		// The workers are this binary again, as the hidden bench-worker command.
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("bench: --procs: find this program: %w", err)
		}
		cfg.WorkerCommand = []string{exe, benchWorkerCmd}
	}
	if !*quiet {
		cfg.Progress = &barProgress{w: stderr}
	}
	if *spawn != "" {
		sp := &loadgen.Spawner{Command: *spawn, Dir: *spawnDir}
		if *serverLog != "" {
			f, err := os.Create(*serverLog)
			if err != nil {
				return err
			}
			defer f.Close()
			sp.Output = f
		}
		defer sp.Close()
		cfg.Spawn = sp
	}
	res, err := loadgen.Run(ctx, cfg)
	if err != nil {
		if errors.Is(err, loadgen.ErrConfig) || errors.Is(err, loadgen.ErrNotLoopback) {
			return fmt.Errorf("%w: bench: %v", errUsage, err)
		}
		if res == nil {
			return err
		}
		// Show what was measured before the failure.
		res.Notes = append(res.Notes, "run failed: "+err.Error())
	}
	if werr := res.WriteTable(stdout); werr != nil && err == nil {
		err = werr
	}
	if *jsonOut != "" {
		if werr := res.WriteJSON(*jsonOut); werr != nil && err == nil {
			err = werr
		}
	}
	if *plotOut != "" {
		if werr := loadgen.WritePlot(res, *plotOut); werr != nil && err == nil {
			err = werr
		}
	}
	return err
}

// benchWorkerCmd is the hidden command a worker of `bench --procs` runs:
// commands on stdin, reports on stdout (loadgen.RunWorker).
const benchWorkerCmd = "bench-worker"

func runBenchWorker(ctx context.Context, args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) != 0 {
		return fmt.Errorf("%w: %s takes no arguments (it is started by bench --procs)", errUsage, benchWorkerCmd)
	}
	if stdin == nil {
		stdin = strings.NewReader("")
	}
	return loadgen.RunWorker(ctx, stdin, stdout)
}

// barProgress shows loadgen's phases as progress bars on the terminal.
type barProgress struct {
	w   io.Writer
	mu  sync.Mutex
	bar *progressbar.ProgressBar
}

func (p *barProgress) Begin(desc string, total int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.bar = progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(p.w),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionSetWidth(30),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionSetPredictTime(false),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(p.w) }),
	)
}

func (p *barProgress) Set(done int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil {
		_ = p.bar.Set64(done)
	}
}

func (p *barProgress) End() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil {
		_ = p.bar.Finish()
		p.bar = nil
	}
}
