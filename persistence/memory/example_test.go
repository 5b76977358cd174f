package memory_test

import (
	"context"
	"fmt"

	"github.com/tandemsync/tandem/persistence/memory"
)

func ExampleNew() {
	ctx := context.Background()
	s := memory.New()
	defer s.Close()

	seq, _ := s.Append(ctx, "doc-1", []byte("change bytes"), []string{"aa11"})
	fmt.Println("seq", seq)
	rec, _ := s.Load(ctx, "doc-1")
	fmt.Printf("%d chunk(s), %d bytes, heads %v\n", len(rec.Chunks), rec.Meta.Size, rec.Meta.Heads)
	// Output:
	// seq 1
	// 1 chunk(s), 12 bytes, heads [aa11]
}
