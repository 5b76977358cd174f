package memory_test

import (
	"testing"

	"github.com/tandemsync/tandem/persistence"
	"github.com/tandemsync/tandem/persistence/memory"
	"github.com/tandemsync/tandem/persistence/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) persistence.Store { return memory.New() })
}
