package storetest_test

import (
	"fmt"
	"testing"

	"github.com/tandemsync/tandem/persistence"
	"github.com/tandemsync/tandem/persistence/memory"
	"github.com/tandemsync/tandem/persistence/storetest"
)

// A Store implementation runs the suite from its own test file.
func ExampleRun() {
	_ = func(t *testing.T) { // func TestConformance(t *testing.T)
		storetest.Run(t, func(t *testing.T) persistence.Store {
			return memory.New()
		})
	}
}

func ExampleContent() {
	before := persistence.Record{Chunks: []persistence.Chunk{
		{Seq: 1, Data: []byte("a\n")}, {Seq: 2, Data: []byte("b\n")}, {Seq: 3, Data: []byte("c\n")},
	}}
	after := persistence.Record{Snapshot: []byte("a\nb\n"), Chunks: before.Chunks[2:]}
	fmt.Println(storetest.Content(before), storetest.Content(after))
	// Output: [a b c] [a b c]
}
