package loadgen

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"time"
)

// Scenario names.
const (
	Dashboard = "dashboard"
	Rooms     = "rooms"
	ManyDocs  = "many-docs"
	LargeDoc  = "large-doc"
	Ramp      = "ramp"
)

// Scenarios lists every scenario Run knows.
var Scenarios = []string{Dashboard, Rooms, ManyDocs, LargeDoc, Ramp}

// Sentinel errors.
var (
	ErrConfig      = errors.New("loadgen: invalid config")
	ErrNotLoopback = errors.New("loadgen: server is not on a loopback address")
)

// Config describes one run. Zero fields take the documented defaults.
type Config struct {
	// Scenario is one of Scenarios.
	Scenario string
	// Server is the ws:// URL of a running server on a loopback address.
	// Ignored when Spawn is set.
	Server string
	// Spawn, when set, is a server Run starts (and stops at the end); its
	// CPU and memory are measured. Run does not Close it: the caller does.
	Spawn *Spawner

	// Clients on the shared document (dashboard, ramp). Default 10.
	Clients int
	// Writers: only the first Writers clients of each document change it
	// at Rate, the others only receive (a dashboard edited by a few and
	// watched by many). Default 0: every client writes.
	Writers int
	// Widgets on each document. Default 20.
	Widgets int
	// Rate is changes per second per client. Default 2.
	Rate float64
	// Duration of the measured load (dashboard, rooms). Default 10s.
	Duration time.Duration
	// Warmup runs the same load this long before the measured Duration,
	// without counting it (dashboard, rooms; ramp: the first step's load
	// before the first step). Default 0.
	Warmup time.Duration
	// History: changes committed to a document before the run (a long
	// history). Default 0.
	History int
	// Preload gives every client but the creator the initial document in
	// its own store before it opens it (a returning automerge-repo user
	// with local storage), instead of fetching it through the server.
	// Default false.
	Preload bool
	// Light makes every client of dashboard, rooms and ramp a light client:
	// it speaks the automerge-repo protocol itself and keeps the document's
	// change graph as hashes, without applying received changes into
	// Automerge, so that a client costs almost nothing per change it
	// receives and the server under test, not the load generator, is the
	// bottleneck. Each document is uploaded by a short-lived full client;
	// every member then opens it as a returning user who has the initial
	// document. Light writers make their changes on their own copy of the
	// initial document, which never takes the others' changes: each
	// writer's changes form a chain concurrent with the other writers'.
	// Default false: full clients (repo.Repo each).
	Light bool
	// Docs: rooms (default 100) or documents to create (many-docs, default 1000).
	Docs int
	// RoomClients: clients per room. Default 3.
	RoomClients int
	// Load: documents a fresh client loads in many-docs. Default 100.
	Load int
	// SizeMB: the large document's size. Default 1.
	SizeMB float64
	// RampFactor multiplies the rate at each ramp step. Default 1.5.
	RampFactor float64
	// RampSteps bounds the number of ramp steps. Default 10.
	RampSteps int
	// StepDuration is the length of one ramp step. Default 5s.
	StepDuration time.Duration
	// P99Bound ends the ramp when a step's p99 fan-out exceeds it. Default 250ms.
	P99Bound time.Duration
	// Drain is how long, after the writers stop, changes may take to reach
	// everybody and the clients to converge. Default 15s.
	Drain time.Duration
	// Timeout bounds the whole run. Default: the scenario's planned time
	// plus 2 minutes.
	Timeout time.Duration
	// Concurrency bounds parallel dials and document operations during
	// set-up (in each worker process). Default 32.
	Concurrency int
	// Procs spreads the clients of dashboard, rooms and ramp over this
	// many worker processes (WorkerCommand), so that the load is not
	// bounded by what one process can drive. Default 1: every client in
	// this process.
	Procs int
	// WorkerCommand starts one worker (a program that calls RunWorker on
	// its stdin and stdout), e.g. {"/path/to/tandem", "bench-worker"}.
	// Required when Procs > 1.
	WorkerCommand []string
	// Seed for the random choices (0: a fixed default, so runs repeat).
	Seed int64
	// Progress, when set, is told what the run is doing.
	Progress Progress
	// Logger receives the run's log. Default: discard.
	Logger *slog.Logger
}

// Progress is told about the phases of a run (a terminal progress bar).
type Progress interface {
	// Begin starts a phase of total units (description, e.g. "load 10s").
	Begin(desc string, total int64)
	// Set reports done units of the current phase.
	Set(done int64)
	// End finishes the current phase.
	End()
}

type nopProgress struct{}

func (nopProgress) Begin(string, int64) {}
func (nopProgress) Set(int64)           {}
func (nopProgress) End()                {}

func (c *Config) setDefaults() {
	def := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	def(&c.Clients, 10)
	def(&c.Widgets, 20)
	def(&c.RoomClients, 3)
	def(&c.Load, 100)
	def(&c.RampSteps, 10)
	def(&c.Concurrency, 32)
	def(&c.Procs, 1)
	if c.Docs == 0 {
		c.Docs = 100
		if c.Scenario == ManyDocs {
			c.Docs = 1000
		}
	}
	if c.Rate == 0 {
		c.Rate = 2
	}
	if c.Duration == 0 {
		c.Duration = 10 * time.Second
	}
	if c.SizeMB == 0 {
		c.SizeMB = 1
	}
	if c.RampFactor == 0 {
		c.RampFactor = 1.5
	}
	if c.StepDuration == 0 {
		c.StepDuration = 5 * time.Second
	}
	if c.P99Bound == 0 {
		c.P99Bound = 250 * time.Millisecond
	}
	if c.Drain == 0 {
		c.Drain = 15 * time.Second
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.Progress == nil {
		c.Progress = nopProgress{}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Timeout == 0 {
		planned := c.Warmup + c.Duration + 2*c.Drain
		if c.Scenario == Ramp {
			planned = c.Warmup + time.Duration(c.RampSteps)*(c.StepDuration+c.Drain)
		}
		c.Timeout = planned + 2*time.Minute
	}
}

// Limits keep a run bounded whatever the flags say.
const (
	maxClients  = 20000
	maxWidgets  = 10000
	maxRate     = 100000
	maxDuration = 24 * time.Hour
	maxHistory  = 1000000
	maxDocs     = 1000000
	maxSizeMB   = 1024
	maxSteps    = 100
	maxChanges  = 50_000_000 // planned changes in one run
	maxProcs    = 64
)

func (c *Config) validate() error {
	bad := func(f string, a ...any) error { return fmt.Errorf("%w: "+f, append([]any{ErrConfig}, a...)...) }
	known := false
	for _, s := range Scenarios {
		known = known || s == c.Scenario
	}
	switch {
	case !known:
		return bad("unknown scenario %q (want one of %s)", c.Scenario, strings.Join(Scenarios, ", "))
	case c.Spawn == nil && c.Server == "":
		return bad("no server: set Server or Spawn")
	case c.Clients < 2 || c.Clients > maxClients:
		return bad("clients %d: want 2..%d", c.Clients, maxClients)
	case c.Writers < 0 || c.Writers > maxClients:
		return bad("writers %d: want 0 (every client) or 1..%d", c.Writers, maxClients)
	case c.Widgets < 1 || c.Widgets > maxWidgets:
		return bad("widgets %d: want 1..%d", c.Widgets, maxWidgets)
	case !(c.Rate > 0 && c.Rate <= maxRate):
		return bad("rate %v: want > 0 and <= %d", c.Rate, maxRate)
	case c.Duration <= 0 || c.Duration > maxDuration:
		return bad("duration %v: want > 0 and <= %v", c.Duration, maxDuration)
	case c.Warmup < 0 || c.Warmup > maxDuration:
		return bad("warm-up %v: want 0..%v", c.Warmup, maxDuration)
	case c.History < 0 || c.History > maxHistory:
		return bad("history %d: want 0..%d", c.History, maxHistory)
	case c.Docs < 1 || c.Docs > maxDocs:
		return bad("docs %d: want 1..%d", c.Docs, maxDocs)
	case c.RoomClients < 2 || c.RoomClients > maxClients:
		return bad("room clients %d: want 2..%d", c.RoomClients, maxClients)
	case c.Scenario == Rooms && c.Docs*c.RoomClients > maxClients:
		return bad("rooms: %d clients in all: at most %d", c.Docs*c.RoomClients, maxClients)
	case c.Load < 1 || c.Load > maxDocs:
		return bad("load %d: want 1..%d", c.Load, maxDocs)
	case !(c.SizeMB > 0 && c.SizeMB <= maxSizeMB):
		return bad("size %v MB: want > 0 and <= %d", c.SizeMB, maxSizeMB)
	case !(c.RampFactor > 1 && c.RampFactor <= 100):
		return bad("ramp factor %v: want > 1 and <= 100", c.RampFactor)
	case c.RampSteps < 1 || c.RampSteps > maxSteps:
		return bad("ramp steps %d: want 1..%d", c.RampSteps, maxSteps)
	case c.StepDuration <= 0 || c.StepDuration > maxDuration:
		return bad("step duration %v", c.StepDuration)
	case c.P99Bound <= 0:
		return bad("p99 bound %v: want > 0", c.P99Bound)
	case c.Drain <= 0 || c.Drain > maxDuration:
		return bad("drain %v", c.Drain)
	case c.Timeout <= 0 || c.Timeout > 2*maxDuration:
		return bad("timeout %v", c.Timeout)
	case c.Concurrency < 1 || c.Concurrency > 4096:
		return bad("concurrency %d: want 1..4096", c.Concurrency)
	case c.Procs < 1 || c.Procs > maxProcs:
		return bad("procs %d: want 1..%d", c.Procs, maxProcs)
	case c.Procs > 1 && c.Scenario != Dashboard && c.Scenario != Rooms && c.Scenario != Ramp:
		return bad("procs: %s runs in one process (only dashboard, rooms and ramp spread over processes)", c.Scenario)
	case c.Light && c.Scenario != Dashboard && c.Scenario != Rooms && c.Scenario != Ramp:
		return bad("light clients: only dashboard, rooms and ramp (%s uses full clients)", c.Scenario)
	case c.Light && c.Preload:
		return bad("preload: light clients always start with the initial document")
	case c.Procs > 1 && len(c.WorkerCommand) == 0:
		return bad("procs %d: no worker command", c.Procs)
	}
	planned := c.plannedChanges()
	if planned > maxChanges {
		return bad("the run would make %.0f changes: at most %d", planned, maxChanges)
	}
	if c.Spawn == nil {
		if err := CheckLoopback(c.Server); err != nil {
			return err
		}
	}
	return nil
}

func (c *Config) plannedChanges() float64 {
	switch c.Scenario {
	case Dashboard:
		return float64(c.writersOf(c.Clients)) * c.Rate * (c.Warmup + c.Duration).Seconds()
	case Rooms:
		return float64(c.Docs*c.writersOf(c.RoomClients)) * c.Rate * (c.Warmup + c.Duration).Seconds()
	case Ramp:
		total, r := float64(c.writersOf(c.Clients))*c.Rate*c.Warmup.Seconds(), c.Rate
		for range c.RampSteps {
			total += float64(c.writersOf(c.Clients)) * r * c.StepDuration.Seconds()
			r *= c.RampFactor
		}
		return total
	}
	return 0
}

// writersOf is the number of writers in a document of size clients.
func (c *Config) writersOf(size int) int {
	if c.Writers <= 0 || c.Writers > size {
		return size
	}
	return c.Writers
}

// CheckLoopback accepts a ws:// or wss:// URL whose host is a loopback IP
// address or "localhost".
func CheckLoopback(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%w: server URL %q: %v", ErrConfig, raw, err)
	}
	if u.Scheme != "ws" && u.Scheme != "wss" {
		return fmt.Errorf("%w: server URL %q: want ws:// or wss://", ErrConfig, raw)
	}
	host := u.Hostname()
	if host == "" {
		return fmt.Errorf("%w: server URL %q has no host", ErrConfig, raw)
	}
	if strings.EqualFold(host, "localhost") {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%w: %q (only 127.0.0.0/8, ::1 and localhost are allowed)", ErrNotLoopback, host)
	}
	return nil
}
