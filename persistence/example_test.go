package persistence_test

import (
	"errors"
	"fmt"

	"github.com/tandemsync/tandem/persistence"
)

func ExampleCheckID() {
	for _, id := range []string{"3yGVF1Kc2fPZ8W2pQB8nGhV1nKmh", "", "a\x00b"} {
		err := persistence.CheckID(id)
		fmt.Printf("%q valid=%v invalid=%v\n", id, err == nil, errors.Is(err, persistence.ErrInvalid))
	}
	// Output:
	// "3yGVF1Kc2fPZ8W2pQB8nGhV1nKmh" valid=true invalid=false
	// "" valid=false invalid=true
	// "a\x00b" valid=false invalid=true
}

func ExampleCheckKey() {
	fmt.Println(persistence.CheckKey("sync-state/peer-1") == nil)
	fmt.Println(persistence.CheckKey(""))
	// Output:
	// true
	// persistence: invalid argument: empty value key
}
