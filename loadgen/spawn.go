package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Spawner starts a sync server from a command template on a free loopback
// port, samples its CPU and memory from /proc while it runs, and stops it.
// It can restart the server on the same data directory (a cold start).
//
// The template is split into words like a shell would (single and double
// quotes group words; no other shell syntax), then {port} and {dir} are
// replaced in every word. Make the command exec the server itself (a binary,
// or node) rather than a wrapper such as `go run`, so that the process
// measured is the server; descendants are counted too.
type Spawner struct {
	// Command is the template, e.g. "tandem serve --addr 127.0.0.1:{port} --data {dir}".
	Command string
	// Dir is the data directory; empty: a temporary directory that Close removes.
	Dir string
	// Path, when set, is the URL path of the sync endpoint. Default "/sync".
	Path string
	// ReadyTimeout bounds how long the server may take to accept TCP
	// connections after it starts. Default 60s.
	ReadyTimeout time.Duration
	// Output receives the server's stdout and stderr. Default: discarded.
	Output io.Writer
	// SampleInterval is the /proc sampling period. Default 200ms.
	SampleInterval time.Duration

	mu       sync.Mutex
	cmd      *exec.Cmd
	exited   chan struct{}
	waitErr  error
	port     int
	tempDir  bool
	peakRSS  int64
	cpuBase  float64 // CPU seconds of processes that already stopped
	last     ProcSample
	stopSamp chan struct{}
	sampDone chan struct{}
}

// ErrSpawn reports that the server could not be started.
var ErrSpawn = errors.New("loadgen: server did not start")

func (s *Spawner) defaults() {
	if s.Path == "" {
		s.Path = "/sync"
	}
	if s.ReadyTimeout <= 0 {
		s.ReadyTimeout = 60 * time.Second
	}
	if s.SampleInterval <= 0 {
		s.SampleInterval = 200 * time.Millisecond
	}
	if s.Output == nil {
		s.Output = io.Discard
	}
}

// splitWords splits a command template into words, honouring quotes.
func splitWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	var quote rune
	for _, r := range s {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '\'' || r == '"':
			quote = r
			inWord = true
		case r == ' ' || r == '\t' || r == '\n':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("%w: unterminated quote in command %q", ErrConfig, s)
	}
	if inWord {
		words = append(words, cur.String())
	}
	if len(words) == 0 {
		return nil, fmt.Errorf("%w: empty spawn command", ErrConfig)
	}
	return words, nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// Start starts the server and waits until it accepts connections; it returns
// the WebSocket URL.
func (s *Spawner) Start(ctx context.Context) (string, error) {
	s.defaults()
	s.mu.Lock()
	running := s.cmd != nil
	s.mu.Unlock()
	if running {
		return "", fmt.Errorf("%w: already running", ErrSpawn)
	}
	words, err := splitWords(s.Command)
	if err != nil {
		return "", err
	}
	if !strings.Contains(s.Command, "{port}") {
		return "", fmt.Errorf("%w: spawn command must contain {port}", ErrConfig)
	}
	if s.Dir == "" {
		d, err := os.MkdirTemp("", "tandem-bench-")
		if err != nil {
			return "", err
		}
		s.Dir = d
		s.tempDir = true
	}
	port, err := freePort()
	if err != nil {
		return "", err
	}
	for i, w := range words {
		w = strings.ReplaceAll(w, "{port}", strconv.Itoa(port))
		words[i] = strings.ReplaceAll(w, "{dir}", s.Dir)
	}
	cmd := exec.Command(words[0], words[1:]...)
	cmd.Stdout = s.Output
	cmd.Stderr = s.Output
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("%w: %v", ErrSpawn, err)
	}
	exited := make(chan struct{})
	s.mu.Lock()
	s.cmd, s.exited, s.port = cmd, exited, port
	s.stopSamp, s.sampDone = make(chan struct{}), make(chan struct{})
	s.mu.Unlock()
	go func() {
		err := cmd.Wait()
		s.mu.Lock()
		s.waitErr = err
		s.mu.Unlock()
		close(exited)
	}()
	go s.sampleLoop(cmd.Process.Pid, s.stopSamp, s.sampDone)

	// Wait until the port accepts connections, the process dies, or time runs out.
	rctx, cancel := context.WithTimeout(ctx, s.ReadyTimeout)
	defer cancel()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		var d net.Dialer
		c, err := d.DialContext(rctx, "tcp", addr)
		if err == nil {
			c.Close()
			return "ws://" + addr + s.Path, nil
		}
		select {
		case <-exited:
			s.mu.Lock()
			werr := s.waitErr
			s.mu.Unlock()
			_ = s.Stop(context.Background())
			return "", fmt.Errorf("%w: %s exited: %v", ErrSpawn, words[0], werr)
		case <-rctx.Done():
			_ = s.Stop(context.Background())
			return "", fmt.Errorf("%w: %s did not listen on %s within %v", ErrSpawn, words[0], addr, s.ReadyTimeout)
		case <-tick.C:
		}
	}
}

func (s *Spawner) sampleLoop(pid int, stop, done chan struct{}) {
	defer close(done)
	t := time.NewTicker(s.SampleInterval)
	defer t.Stop()
	for {
		if ps, err := readProc(pid); err == nil {
			s.mu.Lock()
			s.last = ps
			s.peakRSS = max(s.peakRSS, ps.RSSBytes, ps.HWMBytes)
			s.mu.Unlock()
		}
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}

// PID is the running server's process id (0 when stopped).
func (s *Spawner) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Sample reads the server's counters now. CPUSeconds accumulates over
// restarts; HWMBytes is the peak resident set seen over the whole life of the
// Spawner.
func (s *Spawner) Sample() ProcSample {
	pid := s.PID()
	s.mu.Lock()
	defer s.mu.Unlock()
	if pid != 0 {
		if ps, err := readProc(pid); err == nil {
			s.last = ps
			s.peakRSS = max(s.peakRSS, ps.RSSBytes, ps.HWMBytes)
		}
	}
	out := s.last
	if pid == 0 {
		out = ProcSample{}
	}
	out.CPUSeconds += s.cpuBase
	out.HWMBytes = s.peakRSS
	return out
}

// Stop sends SIGTERM to the server's process group, waits up to 10 seconds
// (or until ctx ends) and then kills it.
func (s *Spawner) Stop(ctx context.Context) error {
	s.mu.Lock()
	cmd, exited, stop, done := s.cmd, s.exited, s.stopSamp, s.sampDone
	s.mu.Unlock()
	if cmd == nil {
		return nil
	}
	// Last reading before the process goes.
	if ps, err := readProc(cmd.Process.Pid); err == nil {
		s.mu.Lock()
		s.last = ps
		s.peakRSS = max(s.peakRSS, ps.RSSBytes, ps.HWMBytes)
		s.mu.Unlock()
	}
	pgid := cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	t := time.NewTimer(10 * time.Second)
	defer t.Stop()
	var err error
	select {
	case <-exited:
	case <-t.C:
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-exited
		err = fmt.Errorf("loadgen: server did not stop within 10s after SIGTERM; killed")
	case <-ctx.Done():
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-exited
		err = ctx.Err()
	}
	close(stop)
	<-done
	s.mu.Lock()
	cpu := s.last.CPUSeconds
	if st := cmd.ProcessState; st != nil {
		cpu = max(cpu, (st.UserTime() + st.SystemTime()).Seconds())
	}
	s.cpuBase += cpu
	s.last = ProcSample{}
	s.cmd = nil
	s.mu.Unlock()
	return err
}

// Restart stops the server and starts it again on the same data directory.
func (s *Spawner) Restart(ctx context.Context) (string, error) {
	if err := s.Stop(ctx); err != nil {
		return "", err
	}
	return s.Start(ctx)
}

// Close stops the server and removes a temporary data directory.
func (s *Spawner) Close() error {
	err := s.Stop(context.Background())
	if s.tempDir && s.Dir != "" {
		if rerr := os.RemoveAll(s.Dir); err == nil {
			err = rerr
		}
	}
	return err
}
