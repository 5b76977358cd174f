package loadgen

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Latency summarises fan-out latencies in milliseconds.
type Latency struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50_ms"`
	P95   float64 `json:"p95_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
	Mean  float64 `json:"mean_ms"`
}

func summarize(ds []time.Duration) Latency {
	if len(ds) == 0 {
		return Latency{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	at := func(p float64) float64 {
		i := int(p*float64(len(s))+0.999999) - 1
		i = min(max(i, 0), len(s)-1)
		return ms(s[i])
	}
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	return Latency{Count: len(s), P50: at(0.50), P95: at(0.95), P99: at(0.99), Max: ms(s[len(s)-1]), Mean: ms(sum / time.Duration(len(s)))}
}

// Sample is one point of a run's timeline.
type Sample struct {
	T         float64 `json:"t_s"`             // seconds since the run started
	Made      float64 `json:"made_per_s"`      // changes made per second over the interval
	Delivered float64 `json:"delivered_per_s"` // changes that reached every peer, per second
	P99       float64 `json:"p99_ms,omitempty"`
	CPU       float64 `json:"server_cpu_pct,omitempty"`
	RSS       int64   `json:"server_rss_bytes,omitempty"`
}

// Result is what a run measured. Fields that do not apply are zero.
type Result struct {
	Scenario string         `json:"scenario"`
	Server   string         `json:"server"`
	Started  time.Time      `json:"started"`
	Elapsed  float64        `json:"elapsed_s"`
	Params   map[string]any `json:"params"`

	Clients   int     `json:"clients,omitempty"`
	Docs      int     `json:"docs,omitempty"`
	Offered   float64 `json:"offered_changes_per_s,omitempty"`
	Achieved  float64 `json:"achieved_changes_per_s,omitempty"`
	Delivered float64 `json:"delivered_changes_per_s,omitempty"`
	Changes   int64   `json:"changes,omitempty"`
	// Complete counts changes that reached every other client of their
	// document; Incomplete those that had not when the drain ended.
	Complete   int64   `json:"complete,omitempty"`
	Incomplete int64   `json:"incomplete,omitempty"`
	Errors     int64   `json:"errors,omitempty"`
	Latency    Latency `json:"fanout_latency"`
	Converged  *bool   `json:"converged,omitempty"`

	// Server process figures (only when loadgen spawned the server).
	ServerCPUSeconds float64 `json:"server_cpu_s,omitempty"`
	ServerCPUPercent float64 `json:"server_cpu_pct,omitempty"`
	CPUPerChangeUs   float64 `json:"server_cpu_us_per_change,omitempty"`
	PeakRSSBytes     int64   `json:"server_peak_rss_bytes,omitempty"`
	// ClientCPUPercent is the load generator's own CPU during the load (this
	// process and its workers), in % of a core: near the machine's cores,
	// the clients rather than the server limit the run.
	ClientCPUPercent float64 `json:"client_cpu_pct,omitempty"`
	// ClientPeakRSSBytes sums the peak resident set of the load
	// generator's processes (this one and its workers).
	ClientPeakRSSBytes int64 `json:"client_peak_rss_bytes,omitempty"`

	// Payload bytes (sync and ephemeral messages) counted by the clients.
	BytesSent     int64 `json:"bytes_sent,omitempty"`
	BytesReceived int64 `json:"bytes_received,omitempty"`

	// Scenario-specific figures (many-docs, large-doc, ramp), e.g. cold_start_first_doc_ms.
	Figures map[string]float64 `json:"figures,omitempty"`

	Timeline []Sample `json:"timeline,omitempty"`
	// Steps of a ramp; Saturation is the highest delivered changes/s of a
	// step whose p99 stayed within the bound.
	Steps      []*Result `json:"steps,omitempty"`
	Saturation float64   `json:"saturation_changes_per_s,omitempty"`
	Notes      []string  `json:"notes,omitempty"`

	latencies []time.Duration // every complete change's fan-out latency, for plots
}

// Latencies returns every recorded fan-out latency (for plots).
func (r *Result) Latencies() []time.Duration {
	out := slices.Clone(r.latencies)
	for _, s := range r.Steps {
		out = append(out, s.latencies...)
	}
	return out
}

func (r *Result) figure(k string, v float64) {
	if r.Figures == nil {
		r.Figures = map[string]float64{}
	}
	r.Figures[k] = v
}

// WriteJSON writes r, indented, to path.
func (r *Result) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func mb(b int64) string {
	if b < 1<<20 {
		return fmt.Sprintf("%.1f KB", float64(b)/(1<<10))
	}
	return fmt.Sprintf("%.1f MB", float64(b)/(1<<20))
}

// WriteTable prints r as an aligned two-column table (and a table of the
// steps of a ramp).
func (r *Result) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, f string, a ...any) { fmt.Fprintf(tw, "%s\t"+f+"\n", append([]any{k}, a...)...) }
	row("scenario", "%s", r.Scenario)
	row("server", "%s", r.Server)
	keys := make([]string, 0, len(r.Params))
	for k := range r.Params {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var ps []string
	for _, k := range keys {
		ps = append(ps, fmt.Sprintf("%s=%v", k, r.Params[k]))
	}
	row("params", "%s", strings.Join(ps, " "))
	row("elapsed", "%.1f s", r.Elapsed)
	if r.Clients > 0 {
		row("clients / docs", "%d / %d", r.Clients, r.Docs)
	}
	if r.Offered > 0 {
		row("offered changes/s", "%.1f", r.Offered)
		row("achieved changes/s", "%.1f", r.Achieved)
		row("delivered changes/s", "%.1f (to every peer)", r.Delivered)
		row("changes", "%d made, %d complete, %d incomplete, %d errors", r.Changes, r.Complete, r.Incomplete, r.Errors)
	}
	if r.Latency.Count > 0 {
		l := r.Latency
		row("fan-out latency", "p50 %.1f ms  p95 %.1f ms  p99 %.1f ms  max %.1f ms  (n=%d)", l.P50, l.P95, l.P99, l.Max, l.Count)
	}
	if r.Converged != nil {
		row("converged", "%v", *r.Converged)
	}
	if r.ServerCPUSeconds > 0 || r.PeakRSSBytes > 0 {
		row("server CPU", "%.2f s (%.0f%% of a core), %.0f µs per change", r.ServerCPUSeconds, r.ServerCPUPercent, r.CPUPerChangeUs)
		row("server peak RSS", "%s", mb(r.PeakRSSBytes))
	}
	if r.ClientCPUPercent > 0 {
		row("load generator CPU", "%.0f%% of a core, peak RSS %s", r.ClientCPUPercent, mb(r.ClientPeakRSSBytes))
	}
	if r.BytesSent > 0 || r.BytesReceived > 0 {
		row("bytes on the wire", "%s sent, %s received (client payloads)", mb(r.BytesSent), mb(r.BytesReceived))
	}
	fk := make([]string, 0, len(r.Figures))
	for k := range r.Figures {
		fk = append(fk, k)
	}
	slices.Sort(fk)
	for _, k := range fk {
		row(k, "%.2f", r.Figures[k])
	}
	if r.Saturation > 0 {
		row("saturation", "%.1f changes/s delivered to every peer", r.Saturation)
	}
	for _, n := range r.Notes {
		row("note", "%s", n)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(r.Steps) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "step\toffered/s\tachieved/s\tdelivered/s\tp50 ms\tp99 ms\tmax ms\tincomplete\tserver CPU %\tclients CPU %\t")
		for i, s := range r.Steps {
			fmt.Fprintf(tw, "%d\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%d\t%.0f\t%.0f\t\n", i+1, s.Offered, s.Achieved, s.Delivered, s.Latency.P50, s.Latency.P99, s.Latency.Max, s.Incomplete, s.ServerCPUPercent, s.ClientCPUPercent)
		}
		return tw.Flush()
	}
	return nil
}
