package bench

import (
	"context"
	"fmt"
	"testing"

	"github.com/tandemsync/tandem/persistence/memory"
	"github.com/tandemsync/tandem/repo"
	"github.com/tandemsync/tandem/server"
)

const widgetSchema = `{"type":"object","properties":{"widgets":{"type":"object",
 "additionalProperties":{"type":"object","properties":{"value":{"type":"number","maximum":1000000}}}}}}`

// BenchmarkValidatedChange: the cost of server-side validation per change
// (a 20-widget dashboard, in memory so storage does not hide it): no
// validator, and a JSON Schema checked against the whole document.
func BenchmarkValidatedChange(b *testing.B) {
	for _, withSchema := range []bool{false, true} {
		b.Run(fmt.Sprintf("schema=%v", withSchema), func(b *testing.B) {
			ctx := context.Background()
			cfg := repo.Config{Store: memory.New()}
			if withSchema {
				v, err := server.SchemaValidator([]byte(widgetSchema))
				if err != nil {
					b.Fatal(err)
				}
				cfg.Validate = v
			}
			r, err := repo.New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close(ctx)
			h, err := r.CreateJSON(ctx, dashboardJSON(20))
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := h.Set(ctx, "/widgets/w3/value", i); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/change")
		})
	}
}
