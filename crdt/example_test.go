package crdt_test

import (
	"errors"
	"fmt"

	"github.com/tandemsync/tandem/crdt"
)

func ExampleFromJSON() {
	doc, err := crdt.FromJSON([]byte(`{"title":"Ops","widgets":[{"id":"cpu","value":42,"ratio":0.5}]}`))
	if err != nil {
		panic(err)
	}
	out, _ := doc.JSON("")
	fmt.Println(string(out))
	v, _ := doc.Get("/widgets/0/value")
	fmt.Printf("%T %v\n", v, v)
	hist, _ := doc.History()
	fmt.Println(len(hist), hist[0].Message)
	// Output:
	// {"title":"Ops","widgets":[{"id":"cpu","ratio":0.5,"value":42}]}
	// int64 42
	// 1 create
}

func ExampleDoc_Set() {
	doc := crdt.New()
	_ = doc.Set("/title", "Ops")
	_ = doc.Set("/widgets", []any{})
	_ = doc.Add("/widgets/-", map[string]any{"id": "cpu", "value": 42})
	_ = doc.Set("/widgets/0/value", 43)
	info, changed, err := doc.Commit("add cpu widget")
	if err != nil {
		panic(err)
	}
	out, _ := doc.JSON("")
	fmt.Println(string(out))
	fmt.Println(changed, info.Paths)

	err = doc.Set("/missing/value", 1)
	fmt.Println(errors.Is(err, crdt.ErrPathNotFound))
	// Output:
	// {"title":"Ops","widgets":[{"id":"cpu","value":43}]}
	// true [/title /widgets /widgets/0 /widgets/0/value]
	// true
}

func ExampleDoc_ApplyPatch() {
	doc, _ := crdt.FromJSON([]byte(`{"widgets":[{"id":"cpu","value":42}]}`))
	patch, err := crdt.ParsePatch([]byte(`[
		{"op":"test","path":"/widgets/0/value","value":42},
		{"op":"replace","path":"/widgets/0/value","value":43},
		{"op":"add","path":"/widgets/-","value":{"id":"mem","value":7}}
	]`))
	if err != nil {
		panic(err)
	}
	if err := doc.ApplyPatch(patch); err != nil {
		panic(err)
	}
	_, _, _ = doc.Commit("patch")
	out, _ := doc.JSON("")
	fmt.Println(string(out))

	// A patch whose test fails changes nothing.
	stale, _ := crdt.ParsePatch([]byte(`[
		{"op":"replace","path":"/widgets/0/value","value":0},
		{"op":"test","path":"/widgets/0/value","value":42}
	]`))
	err = doc.ApplyPatch(stale)
	fmt.Println(errors.Is(err, crdt.ErrTestFailed), doc.HasUncommitted())
	// Output:
	// {"widgets":[{"id":"cpu","value":43},{"id":"mem","value":7}]}
	// true false
}

func ExampleParseURL() {
	id, heads, err := crdt.ParseURL("automerge:3ybZCR5J6TswAfXnMg85CH9kGuZB#2cQ2FEPnhyS2Hnb8ubWiu7RaSMmV21dzdwdCwVNpaCNZhTYRUS")
	if err != nil {
		panic(err)
	}
	fmt.Println(id)
	fmt.Printf("%x\n", id.Bytes())
	fmt.Println(heads[0])
	fmt.Println(id.URL())

	_, _, err = crdt.ParseURL("automerge:3ybZCR5J6TswAfXnMg85CH9kGuZC")
	fmt.Println(errors.Is(err, crdt.ErrInvalidURL), errors.Is(err, crdt.ErrInvalidDocumentID))
	// Output:
	// 3ybZCR5J6TswAfXnMg85CH9kGuZB
	// d59946260838467a90447ba8cfd4c181
	// d411b2f269545deb0cdc6ea714110eff3e53083a219542ca2b5fbd3869900698
	// automerge:3ybZCR5J6TswAfXnMg85CH9kGuZB
	// true true
}

func ExampleSyncState() {
	server, _ := crdt.FromJSON([]byte(`{"count":1}`))
	client := crdt.New()
	s, c := crdt.NewSyncState(server), crdt.NewSyncState(client)
	for {
		m1, ok1 := s.Generate()
		if ok1 {
			_, _ = c.Receive(m1)
		}
		m2, ok2 := c.Generate()
		if ok2 {
			_, _ = s.Receive(m2)
		}
		if !ok1 && !ok2 {
			break
		}
	}
	out, _ := client.JSON("")
	fmt.Println(string(out))
	// Output:
	// {"count":1}
}

// A server-side document kept as a change graph: it syncs with an ordinary
// document through the Go sync session and is built in the Automerge core
// only when its content is read.
func ExampleNewGraphDoc() {
	client, _ := crdt.FromJSON([]byte(`{"cpu":42}`))
	server := crdt.NewGraphDoc()
	cs, ss := crdt.NewSyncState(client), crdt.NewSyncState(server)
	for range 10 { // a few round trips settle it
		m1, ok1 := cs.Generate()
		if ok1 {
			_, _ = ss.Receive(m1)
		}
		m2, ok2 := ss.Generate()
		if ok2 {
			_, _ = cs.Receive(m2)
		}
		if !ok1 && !ok2 {
			break
		}
	}
	fmt.Println(server.IsGraph(), server.Materialized(), len(server.Heads()))
	out, _ := server.JSON("")
	fmt.Println(string(out), server.Materialized())
	// Output:
	// true false 1
	// {"cpu":42} true
}
