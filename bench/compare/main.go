// Command compare runs the same loadgen scenarios, with the same Go client,
// against `tandem serve` and the reference automerge-repo sync server
// (bench/reference), in alternation, and writes a markdown table of both and
// their ratios (make bench-compare).
package main

import (
	"context"
	"flag"
	"fmt"

	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/tandemsync/tandem/loadgen"
)

// scenario is one comparison: the same config run against both servers.
type scenario struct {
	name string
	cfg  loadgen.Config
}

// scenarios lists the comparisons; worker is the command of a load
// generator worker process (tandem bench-worker).
func scenarios(quick bool, worker []string) []scenario {
	d := 10 * time.Second
	if quick {
		d = 3 * time.Second
	}
	return []scenario{
		// The dashboards measure the steady state: the same load runs for
		// a warm-up first (the clients' first fetch of a long history is
		// a different cost, shown in the warm-up notes).
		{"dashboard 10 clients × 2/s", loadgen.Config{Scenario: loadgen.Dashboard, Clients: 10, Rate: 2, Duration: d, Warmup: d / 2}},
		{"dashboard 10 × 2/s, 10,000-change history", loadgen.Config{Scenario: loadgen.Dashboard, Clients: 10, Rate: 2, Duration: d, Warmup: d / 2, History: 10000}},
		// The ramp's clients run in two worker processes: in the
		// benchmark's own process they saturated before either server.
		{"ramp 10 clients in 2 processes, ×1.5 per step", loadgen.Config{Scenario: loadgen.Ramp, Clients: 10, Rate: 5, RampFactor: 1.5, RampSteps: 8, StepDuration: d / 2, P99Bound: 250 * time.Millisecond, Drain: 5 * time.Second, Procs: 2, WorkerCommand: worker}},
		// Light clients (loadgen.Config.Light) cost almost nothing per
		// change received, so that the server, not the load generator,
		// saturates; their writers' changes are concurrent chains.
		// A warm-up at the first step's rate keeps a server's first
		// seconds (Node's JIT) out of step 1.
		{"ramp 10 light clients, ×1.5 per step", loadgen.Config{Scenario: loadgen.Ramp, Light: true, Clients: 10, Rate: 5, RampFactor: 1.5, RampSteps: 14, StepDuration: d / 2, Warmup: d / 5, P99Bound: 250 * time.Millisecond, Drain: 5 * time.Second}},
		{"rooms 50 × 3 clients × 1/s", loadgen.Config{Scenario: loadgen.Rooms, Docs: 50, RoomClients: 3, Rate: 1, Duration: d}},
		{"many-docs 2,000 created, 100 loaded", loadgen.Config{Scenario: loadgen.ManyDocs, Docs: 2000, Load: 100}},
		{"large-doc 1 MB", loadgen.Config{Scenario: loadgen.LargeDoc, SizeMB: 1}},
	}
}

type server struct {
	name string
	cmd  string
}

func main() {
	tandem := flag.String("tandem", "bin/tandem", "tandem binary")
	ref := flag.String("reference", "bench/reference", "directory of the reference server (npm ci done)")
	out := flag.String("out", "bench/RESULTS.md", "markdown file to write")
	jsonDir := flag.String("json-dir", "", "also write each run's JSON here")
	quick := flag.Bool("quick", false, "short runs (a smoke test of the comparison)")
	only := flag.String("only", "", "run only the scenarios whose name contains this text (the table goes to stdout unless --out is given)")
	flag.Parse()
	if *only != "" {
		explicit := false
		flag.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "out" })
		if !explicit {
			*out = "" // a partial table must not replace bench/RESULTS.md
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *tandem, *ref, *out, *jsonDir, *quick, *only); err != nil {
		fmt.Fprintln(os.Stderr, "compare:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, tandemBin, refDir, out, jsonDir string, quick bool, only string) error {
	tb, err := filepath.Abs(tandemBin)
	if err != nil {
		return err
	}
	rs, err := filepath.Abs(filepath.Join(refDir, "server.mjs"))
	if err != nil {
		return err
	}
	servers := []server{
		{"Tandem", tb + " serve --addr 127.0.0.1:{port} --data {dir} --log-level warn"},
		{"reference", "node " + rs + " {port} {dir}"},
	}
	type row struct {
		s   scenario
		res [2]*loadgen.Result
		err [2]error
	}
	var rows []row
	for i, sc := range scenarios(quick, []string{tb, "bench-worker"}) {
		if !strings.Contains(sc.name, only) {
			continue
		}
		r := row{s: sc}
		// Alternate which server goes first.
		order := []int{0, 1}
		if i%2 == 1 {
			order = []int{1, 0}
		}
		for _, k := range order {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			fmt.Fprintf(os.Stderr, "== %s: %s\n", sc.name, servers[k].name)
			sp := &loadgen.Spawner{Command: servers[k].cmd}
			cfg := sc.cfg
			cfg.Spawn = sp
			cfg.Timeout = 4 * time.Minute
			res, err := loadgen.Run(ctx, cfg)
			_ = sp.Close()
			r.res[k], r.err[k] = res, err
			if err != nil {
				fmt.Fprintf(os.Stderr, "   failed: %v\n", err)
			}
			if res != nil {
				_ = res.WriteTable(os.Stderr)
				if jsonDir != "" {
					name := fmt.Sprintf("%s-%d-%s.json", cfg.Scenario, i, strings.ToLower(servers[k].name))
					_ = res.WriteJSON(filepath.Join(jsonDir, name))
				}
			}
		}
		rows = append(rows, r)
	}

	var b strings.Builder
	fmt.Fprintf(&b, "# Tandem against the reference sync server\n\n")
	fmt.Fprintf(&b, "Written by `make bench-compare` (bench/compare) on %s. The same load generator and Go client\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "(`loadgen`, Tandem's `repo` + `transport/ws`) drives `tandem serve` (Badger, every change fsynced\n")
	fmt.Fprintf(&b, "before fan-out) and the reference server `bench/reference/server.mjs` (automerge-repo 2.5.6 with\n")
	fmt.Fprintf(&b, "NodeFS storage and `ws`, automerge-repo's default settings), one after the other, each on a fresh data\n")
	fmt.Fprintf(&b, "directory on 127.0.0.1. The clients run in the benchmark's process (the ramp's in two worker processes,\n")
	fmt.Fprintf(&b, "`--procs 2`) on the same machine, so they share its cores with the server under test. The \"light\" ramp\n")
	fmt.Fprintf(&b, "uses light clients (`--light`: the protocol spoken directly, changes tracked as hashes, never applied into\n")
	fmt.Fprintf(&b, "Automerge; each writer's changes form a chain concurrent with the other writers'), so that the server and\n")
	fmt.Fprintf(&b, "not the load generator saturates. Server CPU and peak\n")
	fmt.Fprintf(&b, "RSS come from /proc (CPU from the threads' schedstat, in nanoseconds, where it agrees with /proc/PID/stat;\n")
	fmt.Fprintf(&b, "memory from /proc/PID/status); \"load generator CPU\" is the clients' own.\n\n")
	fmt.Fprintf(&b, "Machine: %s\n\n", machine())
	fmt.Fprintf(&b, "\"×\" is how many times better Tandem is (reference ÷ Tandem for costs and latencies, Tandem ÷ reference\n")
	fmt.Fprintf(&b, "for throughput); below 1 means the reference did better.\n\n")
	fmt.Fprintf(&b, "| scenario | metric | Tandem | reference | × |\n|---|---|---:|---:|---:|\n")
	for _, r := range rows {
		for _, m := range metrics(r.s.cfg.Scenario) {
			t, okT := m.get(r.res[0])
			f, okR := m.get(r.res[1])
			if !okT && !okR {
				continue
			}
			cell := func(v float64, ok bool, err error) string {
				if !ok {
					if err != nil {
						return "failed"
					}
					return "—"
				}
				return fmtNum(v) + m.unit
			}
			ratio := "—"
			if okT && okR && t > 0 && f > 0 && !contextOnly[m.name] {
				x := f / t
				if m.higherBetter {
					x = t / f
				}
				ratio = fmt.Sprintf("%.1f×", x)
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", r.s.name, m.name, cell(t, okT, r.err[0]), cell(f, okR, r.err[1]), ratio)
		}
		if r.s.cfg.Scenario == loadgen.Ramp {
			// The whole ramp's figures compare unequal work when one
			// server went on for more steps (its latency is its own
			// saturation step's); these compare the same step.
			if t, f, step, ok := sameLoadStep(r.res[0], r.res[1]); ok {
				if t.Latency.Count > 0 && f.Latency.Count > 0 && t.Latency.P99 > 0 {
					fmt.Fprintf(&b, "| %s | fan-out p99 at the reference's saturation (step %d, %s changes/s offered) | %s ms | %s ms | %.1f× |\n", r.s.name, step, fmtNum(f.Offered), fmtNum(t.Latency.P99), fmtNum(f.Latency.P99), f.Latency.P99/t.Latency.P99)
				}
				if t.PeakRSSBytes > 0 && f.PeakRSSBytes > 0 {
					tm, fm := float64(t.PeakRSSBytes)/(1<<20), float64(f.PeakRSSBytes)/(1<<20)
					fmt.Fprintf(&b, "| %s | server peak RSS up to the reference's saturation (step %d) | %s MB | %s MB | %.1f× |\n", r.s.name, step, fmtNum(tm), fmtNum(fm), fm/tm)
				}
			}
		}
	}
	b.WriteString("\nNotes from the runs:\n\n")
	for _, r := range rows {
		for k, name := range []string{"Tandem", "reference"} {
			if r.err[k] != nil {
				fmt.Fprintf(&b, "- %s, %s: failed: %v\n", r.s.name, name, r.err[k])
			}
			if r.res[k] == nil {
				continue
			}
			for _, n := range r.res[k].Notes {
				if strings.Contains(n, "measured only") {
					continue
				}
				fmt.Fprintf(&b, "- %s, %s: %s\n", r.s.name, name, n)
			}
		}
	}
	if out == "" {
		_, err := os.Stdout.WriteString(b.String())
		return err
	}
	return os.WriteFile(out, []byte(b.String()), 0o644)
}

type metric struct {
	name         string
	unit         string
	higherBetter bool
	get          func(*loadgen.Result) (float64, bool)
}

// contextOnly names metrics shown for context, without a ratio: they are
// not figures of merit of the server.
var contextOnly = map[string]bool{"load generator CPU": true}

func fig(k string) func(*loadgen.Result) (float64, bool) {
	return func(r *loadgen.Result) (float64, bool) {
		if r == nil {
			return 0, false
		}
		v, ok := r.Figures[k]
		return v, ok
	}
}

func field(f func(*loadgen.Result) float64) func(*loadgen.Result) (float64, bool) {
	return func(r *loadgen.Result) (float64, bool) {
		if r == nil {
			return 0, false
		}
		v := f(r)
		return v, v > 0
	}
}

func metrics(s string) []metric {
	lat := []metric{
		{"fan-out p50", " ms", false, field(func(r *loadgen.Result) float64 { return r.Latency.P50 })},
		{"fan-out p99", " ms", false, field(func(r *loadgen.Result) float64 { return r.Latency.P99 })},
		{"fan-out max", " ms", false, field(func(r *loadgen.Result) float64 { return r.Latency.Max })},
	}
	cost := []metric{
		{"server CPU per change", " µs", false, field(func(r *loadgen.Result) float64 { return r.CPUPerChangeUs })},
		{"server CPU", " % of a core", false, field(func(r *loadgen.Result) float64 { return r.ServerCPUPercent })},
		{"server peak RSS", " MB", false, field(func(r *loadgen.Result) float64 { return float64(r.PeakRSSBytes) / (1 << 20) })},
		{"load generator CPU", " % of a core", false, field(func(r *loadgen.Result) float64 { return r.ClientCPUPercent })},
	}
	incomplete := metric{"changes not delivered to all", "", false, func(r *loadgen.Result) (float64, bool) {
		if r == nil || r.Changes == 0 {
			return 0, false
		}
		return float64(r.Incomplete), true
	}}
	switch s {
	case loadgen.Dashboard, loadgen.Rooms:
		ms := []metric{{"delivered changes/s", "", true, field(func(r *loadgen.Result) float64 { return r.Delivered })}}
		return append(append(append(ms, lat...), cost...), incomplete)
	case loadgen.Ramp:
		return append([]metric{
			{"saturation (changes/s to every client, p99 ≤ 250 ms)", "", true, field(func(r *loadgen.Result) float64 { return r.Saturation })},
			{"ramp steps run", "", true, field(func(r *loadgen.Result) float64 { return float64(len(r.Steps)) })},
		}, append(lat[:2], cost...)...)
	case loadgen.ManyDocs:
		return []metric{
			{"documents created per s", "", true, fig("create_docs_per_s")},
			{"documents loaded per s (fresh client)", "", true, fig("load_docs_per_s")},
			{"load p99", " ms", false, fig("load_p99_ms")},
			{"cold start: first document served", " ms", false, fig("cold_start_first_doc_ms")},
			{"server peak RSS", " MB", false, field(func(r *loadgen.Result) float64 { return float64(r.PeakRSSBytes) / (1 << 20) })},
		}
	case loadgen.LargeDoc:
		return []metric{
			{"upload + first sync", " ms", false, fig("upload_and_first_sync_ms")},
			{"download to a fresh client", " ms", false, fig("download_ms")},
			{"server peak RSS", " MB", false, field(func(r *loadgen.Result) float64 { return float64(r.PeakRSSBytes) / (1 << 20) })},
		}
	}
	return nil
}

// sameLoadStep returns both servers' results for the ramp step at which
// the reference saturated (and its 1-based number), when both ran it: the
// same offered load. (A step's peak RSS is the peak up to its end.)
func sameLoadStep(t, f *loadgen.Result) (tStep, fStep *loadgen.Result, step int, ok bool) {
	if t == nil || f == nil || len(f.Steps) == 0 {
		return nil, nil, 0, false
	}
	k := len(f.Steps) - 1
	for i := len(f.Steps) - 1; i >= 0; i-- {
		if f.Saturation > 0 && f.Steps[i].Delivered == f.Saturation {
			k = i
			break
		}
	}
	if k >= len(t.Steps) {
		return nil, nil, 0, false
	}
	return t.Steps[k], f.Steps[k], k + 1, true
}

func fmtNum(v float64) string {
	switch a := math.Abs(v); {
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func machine() string {
	cpu := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		if _, err := fmt.Sscanf(string(b), "MemTotal: %d kB", &kb); err == nil {
			mem = fmt.Sprintf(", %.0f GB RAM", float64(kb)/(1<<20))
		}
	}
	kernel := ""
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = ", Linux " + strings.TrimSpace(string(b))
	}
	node := "node ?"
	if o, err := exec.Command("node", "--version").Output(); err == nil {
		node = "node " + strings.TrimSpace(string(o))
	}
	return fmt.Sprintf("%s, %d cores%s%s; %s, %s", cpu, runtime.NumCPU(), mem, kernel, runtime.Version(), node)
}
