package crdt

import (
	"fmt"
	"testing"
)

// widgetDoc returns a document of 20 widgets with history changes after
// its creation.
func widgetDoc(b *testing.B, history int) *Doc {
	widgets := make([]any, 20)
	for i := range widgets {
		widgets[i] = map[string]any{"id": fmt.Sprintf("w%d", i), "title": "Widget", "value": 0}
	}
	d := New()
	if err := d.Set("", map[string]any{"title": "Dashboard", "widgets": widgets}); err != nil {
		b.Fatal(err)
	}
	if _, _, err := d.Commit("create"); err != nil {
		b.Fatal(err)
	}
	for i := 0; i < history; i++ {
		if err := d.Set(fmt.Sprintf("/widgets/%d/value", i%20), i); err != nil {
			b.Fatal(err)
		}
		if _, _, err := d.Commit(""); err != nil {
			b.Fatal(err)
		}
	}
	return d
}

// BenchmarkSetCommit: one widget value set and commit (including the
// change's own bytes) on a 20-widget document.
func BenchmarkSetCommit(b *testing.B) {
	for _, history := range []int{100, 10000} {
		b.Run(fmt.Sprintf("history=%d", history), func(b *testing.B) {
			d := widgetDoc(b, history)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := d.Set(fmt.Sprintf("/widgets/%d/value", i%20), i); err != nil {
					b.Fatal(err)
				}
				info, ok, err := d.Commit("")
				if err != nil || !ok || len(info.Bytes) == 0 {
					b.Fatal(ok, err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "changes/s")
		})
	}
}

// BenchmarkSyncOneChange: one local change, then one Generate on the
// sender and one Receive on a peer that was in sync.
func BenchmarkSyncOneChange(b *testing.B) {
	for _, history := range []int{100, 10000} {
		b.Run(fmt.Sprintf("history=%d", history), func(b *testing.B) {
			d := widgetDoc(b, history)
			peer, err := Load(d.Save())
			if err != nil {
				b.Fatal(err)
			}
			sd, sp := NewSyncState(d), NewSyncState(peer)
			syncPair(b, sd, sp)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				_ = d.Set(fmt.Sprintf("/widgets/%d/value", i%20), -i)
				d.Commit("")
				syncPair(b, sd, sp)
			}
		})
	}
}
