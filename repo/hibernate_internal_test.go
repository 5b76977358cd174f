package repo

import (
	"testing"
	"time"
)

// TestHibernateQuiet: small documents hibernate after Config.HibernateAfter;
// documents that are slow to load wait about 200 times their load time.
func TestHibernateQuiet(t *testing.T) {
	for _, c := range []struct {
		name     string
		stored   int64
		lastLoad time.Duration
		want     time.Duration
	}{
		{"small", 2 << 10, 0, 10 * time.Second},
		{"10k changes", 37 << 10, 0, 200 * (37 << 10) * loadCostPerByte},
		{"measured load is slower than the estimate", 2 << 10, 500 * time.Millisecond, 100 * time.Second},
		{"nothing stored", 0, 0, 10 * time.Second},
	} {
		if got := hibernateQuiet(10*time.Second, c.stored, c.lastLoad); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}
