package loadgen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tandemsync/tandem/persistence"
	badgerstore "github.com/tandemsync/tandem/persistence/badger"
	"github.com/tandemsync/tandem/persistence/memory"
	"github.com/tandemsync/tandem/repo"
	"github.com/tandemsync/tandem/server"
)

// TestMain doubles as a sync server for the Spawner tests: with
// LOADGEN_HELPER_SERVER=1 the test binary serves on 127.0.0.1:PORT (its last
// argument but one) until SIGTERM; and as a worker of a run over processes:
// with LOADGEN_HELPER_WORKER=1 it runs RunWorker on stdin and stdout, with
// LOADGEN_HELPER_WORKER=hang it never answers.
func TestMain(m *testing.M) {
	if os.Getenv("LOADGEN_HELPER_SERVER") == "1" {
		os.Exit(helperServer(os.Args[len(os.Args)-2]))
	}
	switch os.Getenv("LOADGEN_HELPER_WORKER") {
	case "1":
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
		err := RunWorker(ctx, os.Stdin, os.Stdout)
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	case "hang":
		select {}
	}
	os.Exit(m.Run())
}

func helperServer(port string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	ln, err := net.Listen("tcp", "127.0.0.1:"+port)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	store, err := badgerstore.Open(badgerstore.DefaultConfig(os.Args[len(os.Args)-1]))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer store.Close()
	url, closeFn, err := serve(ctx, ln, store)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("listening on", url)
	<-ctx.Done()
	closeFn()
	return 0
}

// serve runs a Tandem server on ln.
func serve(ctx context.Context, ln net.Listener, store persistence.Store) (string, func(), error) {
	r, err := repo.New(repo.Config{Store: store})
	if err != nil {
		return "", nil, err
	}
	srv, err := server.New(server.Config{Repo: r})
	if err != nil {
		return "", nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	return "ws://" + ln.Addr().String() + "/sync", func() {
		cancel()
		<-done
		_ = r.Close(context.Background())
	}, nil
}

func startServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url, closeFn, err := serve(context.Background(), ln, memory.New())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(closeFn)
	return url
}

func TestDashboard(t *testing.T) {
	url := startServer(t)
	res, err := Run(context.Background(), Config{
		Scenario: Dashboard, Server: url, Clients: 4, Widgets: 5, Rate: 20,
		Duration: time.Second, History: 50, Drain: 10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Changes < 20 || res.Complete != res.Changes || res.Incomplete != 0 {
		t.Fatalf("changes %d complete %d incomplete %d", res.Changes, res.Complete, res.Incomplete)
	}
	if res.Converged == nil || !*res.Converged {
		t.Fatal("clients did not converge")
	}
	if res.Latency.Count != int(res.Complete) || res.Latency.P50 <= 0 || res.Latency.P99 < res.Latency.P50 || res.Latency.Max < res.Latency.P99 {
		t.Fatalf("latency %+v", res.Latency)
	}
	if res.BytesSent == 0 || res.BytesReceived == 0 {
		t.Fatalf("no traffic counted: %d %d", res.BytesSent, res.BytesReceived)
	}
	if res.Offered != 80 || res.Achieved <= 0 {
		t.Fatalf("offered %v achieved %v", res.Offered, res.Achieved)
	}
	dir := t.TempDir()
	if err := res.WriteJSON(filepath.Join(dir, "r.json")); err != nil {
		t.Fatal(err)
	}
	if err := WritePlot(res, filepath.Join(dir, "r.png")); err != nil {
		t.Fatal(err)
	}
	if err := res.WriteTable(os.Stdout); err != nil {
		t.Fatal(err)
	}
}

func TestRooms(t *testing.T) {
	url := startServer(t)
	res, err := Run(context.Background(), Config{
		Scenario: Rooms, Server: url, Docs: 4, RoomClients: 3, Rate: 10, Duration: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Clients != 12 || res.Docs != 4 || res.Changes == 0 || res.Incomplete != 0 || !*res.Converged {
		t.Fatalf("%+v", res)
	}
}

func TestRamp(t *testing.T) {
	url := startServer(t)
	res, err := Run(context.Background(), Config{
		Scenario: Ramp, Server: url, Clients: 3, Rate: 10, RampFactor: 2, RampSteps: 2,
		StepDuration: 500 * time.Millisecond, P99Bound: 5 * time.Second, Warmup: 300 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Steps) != 2 || res.Saturation <= 0 || res.Steps[1].Offered != 2*res.Steps[0].Offered {
		t.Fatalf("steps %d saturation %v", len(res.Steps), res.Saturation)
	}
	if !strings.HasPrefix(res.Notes[0], "warm-up 300ms") || res.Params["warmup"] != "300ms" {
		t.Fatalf("no warm-up: notes %q params %v", res.Notes, res.Params)
	}
	if err := WritePlot(res, filepath.Join(t.TempDir(), "ramp.png")); err != nil {
		t.Fatal(err)
	}
}

func TestManyDocsAndLargeDoc(t *testing.T) {
	url := startServer(t)
	res, err := Run(context.Background(), Config{Scenario: ManyDocs, Server: url, Docs: 30, Load: 10})
	if err != nil {
		t.Fatal(err)
	}
	if res.Figures["load_docs_per_s"] <= 0 || res.Figures["create_docs_per_s"] <= 0 {
		t.Fatalf("%v", res.Figures)
	}
	res, err = Run(context.Background(), Config{Scenario: LargeDoc, Server: url, SizeMB: 0.1})
	if err != nil {
		t.Fatal(err)
	}
	if res.Figures["doc_bytes"] < 50_000 || res.Figures["download_ms"] <= 0 {
		t.Fatalf("%v", res.Figures)
	}
}

// TestSpawn starts this test binary as a server, measures it, and restarts it
// for the cold start of many-docs.
func TestSpawn(t *testing.T) {
	t.Setenv("LOADGEN_HELPER_SERVER", "1")
	sp := &Spawner{Command: strconv.Quote(os.Args[0]) + " {port} {dir}"}
	defer sp.Close()
	res, err := Run(context.Background(), Config{Scenario: ManyDocs, Spawn: sp, Docs: 20, Load: 5})
	if err != nil {
		t.Fatal(err)
	}
	if res.Figures["cold_start_first_doc_ms"] <= 0 || res.PeakRSSBytes <= 0 {
		t.Fatalf("figures %v rss %d", res.Figures, res.PeakRSSBytes)
	}
	if sp.PID() != 0 {
		t.Fatal("server still running after Run")
	}
	res, err = Run(context.Background(), Config{Scenario: Dashboard, Spawn: sp, Clients: 3, Rate: 20, Duration: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if res.ServerCPUSeconds <= 0 || res.CPUPerChangeUs <= 0 || res.PeakRSSBytes <= 0 || res.Incomplete != 0 {
		t.Fatalf("cpu %v per change %v rss %d incomplete %d", res.ServerCPUSeconds, res.CPUPerChangeUs, res.PeakRSSBytes, res.Incomplete)
	}
}

func TestSpawnFailures(t *testing.T) {
	sp := &Spawner{Command: "/nonexistent/server {port}"}
	if _, err := sp.Start(context.Background()); !errors.Is(err, ErrSpawn) {
		t.Fatalf("missing binary: %v", err)
	}
	sp = &Spawner{Command: "false {port}", ReadyTimeout: 5 * time.Second}
	if _, err := sp.Start(context.Background()); !errors.Is(err, ErrSpawn) {
		t.Fatalf("exiting server: %v", err)
	}
	sp.Close()
	for _, c := range []string{"", "tandem serve", `x "{port}`} {
		if _, err := (&Spawner{Command: c}).Start(context.Background()); !errors.Is(err, ErrConfig) {
			t.Errorf("%q: %v", c, err)
		}
	}
}

func TestConfigValidation(t *testing.T) {
	ok := Config{Scenario: Dashboard, Server: "ws://127.0.0.1:1/sync"}
	for _, tc := range []struct {
		name string
		mod  func(*Config)
	}{
		{"unknown scenario", func(c *Config) { c.Scenario = "x" }},
		{"no server", func(c *Config) { c.Server = "" }},
		{"remote server", func(c *Config) { c.Server = "ws://example.com/sync" }},
		{"remote ip", func(c *Config) { c.Server = "ws://10.0.0.1:7070/sync" }},
		{"http url", func(c *Config) { c.Server = "http://127.0.0.1:1/" }},
		{"one client", func(c *Config) { c.Clients = 1 }},
		{"negative rate", func(c *Config) { c.Rate = -1 }},
		{"NaN rate", func(c *Config) { c.Rate = nan() }},
		{"too many changes", func(c *Config) { c.Clients, c.Rate, c.Duration = 10000, 10000, time.Hour }},
		{"ramp factor", func(c *Config) { c.Scenario, c.RampFactor = Ramp, 0.5 }},
		{"negative drain", func(c *Config) { c.Drain = -time.Second }},
	} {
		c := ok
		tc.mod(&c)
		if _, err := Run(context.Background(), c); !errors.Is(err, ErrConfig) && !errors.Is(err, ErrNotLoopback) {
			t.Errorf("%s: got %v", tc.name, err)
		}
	}
	for _, u := range []string{"ws://127.0.0.1:7070/sync", "ws://localhost:1/", "ws://[::1]:7/sync", "wss://127.0.0.2/"} {
		if err := CheckLoopback(u); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
	if err := CheckLoopback("ws://192.168.1.1/"); !errors.Is(err, ErrNotLoopback) {
		t.Errorf("private address accepted: %v", err)
	}
}

func nan() float64 { z := 0.0; return z / z }

func TestProcParsing(t *testing.T) {
	cpu, err := parseStatCPU([]byte("123 (we ird) name) S 1 1 1 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0 100 1000 200"))
	if err != nil || cpu != 3 {
		t.Fatalf("cpu %v err %v", cpu, err)
	}
	for _, bad := range []string{"", "1 (x", "1 (x) S 1"} {
		if _, err := parseStatCPU([]byte(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
	if ns, ok := parseSchedstat([]byte("123456789 2000 7\n")); !ok || ns != 123456789 {
		t.Errorf("schedstat: %v %v", ns, ok)
	}
	for _, bad := range []string{"", "x 1 2", "-5 1 2"} {
		if _, ok := parseSchedstat([]byte(bad)); ok {
			t.Errorf("schedstat %q parsed", bad)
		}
	}
	// This process's CPU, precise where schedstat exists: within two ticks
	// of stat's count, and finer than a tick.
	stat, _ := os.ReadFile("/proc/self/stat")
	ticks, err := parseStatCPU(stat)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := procCPU(os.Getpid()); err != nil || got < ticks-0.05 || got > ticks+0.05 {
		t.Errorf("procCPU %v (%v), stat says %v", got, err, ticks)
	}
	rss, hwm := parseStatusMem([]byte("Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n"))
	if rss != 1<<20 || hwm != 2<<20 {
		t.Fatalf("rss %d hwm %d", rss, hwm)
	}
	ps, err := readProc(os.Getpid())
	if err != nil || ps.RSSBytes <= 0 {
		t.Fatalf("%+v %v", ps, err)
	}
}

func TestSplitWords(t *testing.T) {
	w, err := splitWords(`node 'my dir/server.mjs' "a b" {port}  {dir}`)
	if err != nil || len(w) != 5 || w[1] != "my dir/server.mjs" || w[2] != "a b" {
		t.Fatalf("%q %v", w, err)
	}
}

// TestProcs spreads the clients over worker processes (this test binary,
// see TestMain) and checks that the merged figures add up as in one process.
func TestProcs(t *testing.T) {
	t.Setenv("LOADGEN_HELPER_WORKER", "1")
	url := startServer(t)
	worker := []string{os.Args[0]}
	// Three of five clients write; the others have the document stored
	// beforehand (Preload) and only receive.
	res, err := Run(context.Background(), Config{
		Scenario: Dashboard, Server: url, Clients: 5, Writers: 3, Widgets: 5, Rate: 20, Duration: time.Second,
		Warmup: 300 * time.Millisecond, History: 30, Preload: true, Drain: 10 * time.Second, Procs: 2, WorkerCommand: worker,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Offered != 60 || res.Changes < 30 || res.Changes > 63 || res.Complete != res.Changes || res.Latency.Count != int(res.Complete) || res.Latency.P50 <= 0 {
		t.Fatalf("offered %v changes %d complete %d latency %+v", res.Offered, res.Changes, res.Complete, res.Latency)
	}
	if res.ClientCPUPercent <= 0 || res.ClientPeakRSSBytes <= 0 {
		t.Fatalf("load generator CPU %v RSS %d", res.ClientCPUPercent, res.ClientPeakRSSBytes)
	}
	if res.Converged == nil || !*res.Converged || res.BytesSent == 0 || res.BytesReceived == 0 || res.Params["procs"] != 2 {
		t.Fatalf("converged %v bytes %d/%d params %v", res.Converged, res.BytesSent, res.BytesReceived, res.Params)
	}
	if res.Figures["setup_s"] <= 0 || res.Figures["history_build_s"] <= 0 {
		t.Fatalf("figures %v", res.Figures)
	}
	res, err = Run(context.Background(), Config{
		Scenario: Rooms, Server: url, Docs: 4, RoomClients: 3, Rate: 10, Duration: time.Second, Procs: 3, WorkerCommand: worker,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Clients != 12 || res.Docs != 4 || res.Changes == 0 || res.Incomplete != 0 || !*res.Converged {
		t.Fatalf("rooms: %+v", res)
	}
	res, err = Run(context.Background(), Config{
		Scenario: Ramp, Server: url, Clients: 3, Rate: 10, RampFactor: 2, RampSteps: 2,
		StepDuration: 500 * time.Millisecond, P99Bound: 5 * time.Second, Procs: 2, WorkerCommand: worker,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Steps) != 2 || res.Saturation <= 0 || res.Steps[1].Incomplete != 0 {
		t.Fatalf("ramp: steps %d saturation %v", len(res.Steps), res.Saturation)
	}
	if kids := procChildren(os.Getpid()); len(kids) != 0 {
		t.Fatalf("worker processes left running: %v", kids)
	}
}

// TestProcsFailures: a worker that exits or never answers fails the run
// within its bounds and is not left behind.
func TestProcsFailures(t *testing.T) {
	url := startServer(t)
	cfg := Config{Scenario: Dashboard, Server: url, Clients: 4, Duration: time.Second, Procs: 2}
	c := cfg
	c.WorkerCommand = []string{"false"}
	if _, err := Run(context.Background(), c); err == nil || !strings.Contains(err.Error(), "worker") {
		t.Fatalf("exiting worker: %v", err)
	}
	t.Setenv("LOADGEN_HELPER_WORKER", "hang")
	c = cfg
	c.WorkerCommand, c.Timeout = []string{os.Args[0]}, 2*time.Second
	start := time.Now()
	if _, err := Run(context.Background(), c); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("hanging worker: %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("hanging worker held the run for %v", d)
	}
	if kids := procChildren(os.Getpid()); len(kids) != 0 {
		t.Fatalf("worker processes left running: %v", kids)
	}
	c = cfg
	c.Scenario = ManyDocs
	c.WorkerCommand = []string{os.Args[0]}
	if _, err := Run(context.Background(), c); !errors.Is(err, ErrConfig) {
		t.Fatalf("many-docs over processes: %v", err)
	}
	c = cfg
	if _, err := Run(context.Background(), c); !errors.Is(err, ErrConfig) {
		t.Fatalf("no worker command: %v", err)
	}
}

// TestWorkerBadInput: a worker answers malformed or out-of-order commands
// with errors and ends with its input.
func TestWorkerBadInput(t *testing.T) {
	in := strings.Join([]string{
		`{"op":"phase","rate":1}`,
		`{"op":"setup","url":"ws://example.com/sync"}`,
		`{"op":"setup","url":"ws://127.0.0.1:1/sync","widgets":1,"capacity":1,"concurrency":1,"groups":[{"g":0,"size":2,"members":[5]}]}`,
		`{"op":"nosuch"}`,
		`not json`,
	}, "\n")
	var out strings.Builder
	if err := RunWorker(context.Background(), strings.NewReader(in), &out); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out.String(), `"type":"error"`); n != 4 {
		t.Fatalf("want 4 errors, got:\n%s", out.String())
	}
}

// TestLight runs dashboard and ramp with light clients (Config.Light)
// against a real server: every change reaches every other client, each
// delivery is counted once, and the clients' graphs converge.
func TestLight(t *testing.T) {
	url := startServer(t)
	check := func(name string, res *Result, clients int) {
		t.Helper()
		if res.Changes == 0 || res.Complete != res.Changes || res.Incomplete != 0 || res.Errors != 0 {
			t.Fatalf("%s: changes %d complete %d incomplete %d errors %d", name, res.Changes, res.Complete, res.Incomplete, res.Errors)
		}
		if res.Converged == nil || !*res.Converged {
			t.Fatalf("%s: clients did not converge", name)
		}
		if want := float64(res.Changes * int64(clients-1)); res.Figures["deliveries"] != want {
			t.Fatalf("%s: %v deliveries counted, want %v", name, res.Figures["deliveries"], want)
		}
		if res.BytesSent == 0 || res.BytesReceived == 0 || res.Params["light"] != true {
			t.Fatalf("%s: bytes %d/%d params %v", name, res.BytesSent, res.BytesReceived, res.Params)
		}
	}
	res, err := Run(context.Background(), Config{
		Scenario: Dashboard, Server: url, Light: true, Clients: 4, Widgets: 5, Rate: 20,
		Duration: time.Second, History: 50, Drain: 10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	check("dashboard", res, 4)
	if res.Latency.Count != int(res.Complete) || res.Latency.P50 <= 0 {
		t.Fatalf("dashboard: latency %+v", res.Latency)
	}
	res, err = Run(context.Background(), Config{
		Scenario: Ramp, Server: url, Light: true, Clients: 3, Rate: 10, RampFactor: 2, RampSteps: 2,
		StepDuration: 500 * time.Millisecond, P99Bound: 5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	check("ramp", res, 3)
	if len(res.Steps) != 2 || res.Saturation <= 0 {
		t.Fatalf("ramp: steps %d saturation %v", len(res.Steps), res.Saturation)
	}
	// Over worker processes (this test binary, see TestMain), two of
	// three clients of each room writing.
	t.Setenv("LOADGEN_HELPER_WORKER", "1")
	res, err = Run(context.Background(), Config{
		Scenario: Rooms, Server: url, Light: true, Docs: 4, RoomClients: 3, Writers: 2, Rate: 10,
		Duration: time.Second, Procs: 2, WorkerCommand: []string{os.Args[0]},
	})
	if err != nil {
		t.Fatal(err)
	}
	check("rooms over processes", res, 3)
	if res.Clients != 12 || res.Offered != 80 || res.ClientCPUPercent <= 0 {
		t.Fatalf("rooms: clients %d offered %v load generator CPU %v", res.Clients, res.Offered, res.ClientCPUPercent)
	}
	if kids := procChildren(os.Getpid()); len(kids) != 0 {
		t.Fatalf("worker processes left running: %v", kids)
	}
	for _, c := range []Config{
		{Scenario: ManyDocs, Server: url, Light: true},
		{Scenario: LargeDoc, Server: url, Light: true},
		{Scenario: Dashboard, Server: url, Light: true, Preload: true},
	} {
		if _, err := Run(context.Background(), c); !errors.Is(err, ErrConfig) {
			t.Errorf("%s light preload=%v: %v", c.Scenario, c.Preload, err)
		}
	}
}
