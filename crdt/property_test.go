package crdt

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// TestPropertyConvergence: 3–5 replicas make random edits and exchange
// them in random orders and groupings, through pairwise sync sessions,
// Merge and ChangesSince/LoadIncremental. After a final round of syncing
// every replica has the same heads and the same JSON.
func TestPropertyConvergence(t *testing.T) {
	defer func() { commitClock = time.Now }()
	rapid.Check(t, func(rt *rapid.T) {
		// Reproducible change hashes, so that rapid can replay and shrink.
		tick := time.UnixMilli(1_700_000_000_000)
		commitClock = func() time.Time { tick = tick.Add(time.Second); return tick }
		n := rapid.IntRange(3, 5).Draw(rt, "replicas")
		docs := make([]*Doc, n)
		for i := range docs {
			d, err := NewWithActor(fmt.Sprintf("%02x%02x", i+1, i+1))
			if err != nil {
				rt.Fatal(err)
			}
			docs[i] = d
		}
		sessions := map[[2]int]*SyncState{}
		session := func(i, j int) *SyncState {
			k := [2]int{i, j}
			if sessions[k] == nil {
				sessions[k] = NewSyncState(docs[i])
			}
			return sessions[k]
		}
		syncTwo := func(i, j int) {
			a, b := session(i, j), session(j, i)
			for round := 0; ; round++ {
				if round > 30 {
					rt.Fatalf("sync %d<->%d did not go quiet", i, j)
				}
				m1, ok1 := a.Generate()
				if ok1 {
					if _, err := b.Receive(m1); err != nil {
						rt.Fatalf("receive: %v", err)
					}
				}
				m2, ok2 := b.Generate()
				if ok2 {
					if _, err := a.Receive(m2); err != nil {
						rt.Fatalf("receive: %v", err)
					}
				}
				if !ok1 && !ok2 {
					return
				}
			}
		}

		steps := rapid.IntRange(1, 25).Draw(rt, "steps")
		for s := 0; s < steps; s++ {
			i := rapid.IntRange(0, n-1).Draw(rt, "replica")
			j := rapid.IntRange(0, n-1).Draw(rt, "peer")
			switch rapid.IntRange(0, 9).Draw(rt, "action") {
			case 0, 1, 2, 3, 4:
				editAndCommit(rt, docs[i])
			case 5, 6:
				if i != j {
					syncTwo(i, j)
				}
			case 7:
				if err := docs[i].Merge(docs[j]); err != nil {
					rt.Fatal(err)
				}
			case 8:
				cs, err := docs[j].ChangesSince(docs[i].Heads())
				if err != nil {
					rt.Fatal(err)
				}
				if err := docs[i].LoadIncremental(cs); err != nil {
					rt.Fatal(err)
				}
			case 9:
				// One message in one direction only (a lost reply).
				if i != j {
					if m, ok := session(i, j).Generate(); ok {
						if _, err := session(j, i).Receive(m); err != nil {
							rt.Fatal(err)
						}
					}
				}
			}
		}

		// Gather everything into replica 0, then spread it.
		for k := 1; k < n; k++ {
			syncTwo(0, k)
		}
		for k := 1; k < n; k++ {
			syncTwo(0, k)
		}
		heads := docs[0].Heads()
		view := jsonOf(rt, docs[0], "")
		for k := 1; k < n; k++ {
			if h := docs[k].Heads(); !reflect.DeepEqual(h, heads) {
				rt.Fatalf("replica %d heads %v, replica 0 %v", k, h, heads)
			}
			if v := jsonOf(rt, docs[k], ""); v != view {
				rt.Fatalf("replica %d JSON %s, replica 0 %s", k, v, view)
			}
		}
		// And the state survives a save/load.
		d, err := Load(docs[n-1].Save())
		if err != nil {
			rt.Fatal(err)
		}
		if !reflect.DeepEqual(d.Heads(), heads) || jsonOf(rt, d, "") != view {
			rt.Fatal("save/load changed the document")
		}
	})
}

// expectedEditError reports whether err is a legitimate refusal of a
// random edit (the path may not exist in this replica's state).
func expectedEditError(err error) bool {
	return err == nil || errors.Is(err, ErrPathNotFound) || errors.Is(err, ErrInvalidPointer) || errors.Is(err, ErrTestFailed)
}

func drawValue(rt *rapid.T, depth int) any {
	kinds := 4
	if depth > 1 {
		kinds = 2
	}
	switch rapid.IntRange(0, kinds-1).Draw(rt, "kind") {
	case 0:
		return rapid.IntRange(-5, 5).Draw(rt, "int")
	case 1:
		return rapid.SampledFrom([]string{"", "x", "yy", "é✓"}).Draw(rt, "string")
	case 2:
		return map[string]any{"x": drawValue(rt, depth+1), "y": []any{drawValue(rt, depth+1)}}
	default:
		return []any{drawValue(rt, depth+1)}
	}
}

func listLen(d *Doc, ptr string) (int, bool) {
	v, err := d.Get(ptr)
	if err != nil {
		return 0, false
	}
	l, ok := v.([]any)
	return len(l), ok
}

func editAndCommit(rt *rapid.T, d *Doc) {
	beforeJSON := jsonOf(rt, d, "")
	beforeHeads := d.Heads()
	edits := rapid.IntRange(1, 4).Draw(rt, "edits")
	for e := 0; e < edits; e++ {
		var err error
		key := rapid.SampledFrom([]string{"a", "b", "c"}).Draw(rt, "key")
		switch rapid.IntRange(0, 7).Draw(rt, "edit") {
		case 0:
			err = d.Set("/"+key, drawValue(rt, 0))
		case 1:
			err = d.Delete("/" + key)
		case 2: // insert into the shared list, creating it if needed
			n, ok := listLen(d, "/l")
			if !ok {
				err = d.Set("/l", []any{})
				n = 0
			}
			if err == nil {
				err = d.Add(fmt.Sprintf("/l/%d", rapid.IntRange(0, n).Draw(rt, "at")), drawValue(rt, 1))
			}
		case 3: // replace a list element
			if n, ok := listLen(d, "/l"); ok && n > 0 {
				err = d.Set(fmt.Sprintf("/l/%d", rapid.IntRange(0, n-1).Draw(rt, "at")), drawValue(rt, 1))
			}
		case 4: // delete a list element
			if n, ok := listLen(d, "/l"); ok && n > 0 {
				err = d.Delete(fmt.Sprintf("/l/%d", rapid.IntRange(0, n-1).Draw(rt, "at")))
			}
		case 5: // write inside a nested object, if there is one
			err = d.Set("/"+key+"/x", drawValue(rt, 1))
		case 6: // a small patch
			v := rapid.IntRange(0, 9).Draw(rt, "pv")
			err = d.ApplyPatch([]PatchOp{
				{Op: "add", Path: "/p", Value: v},
				{Op: "test", Path: "/p", Value: v},
				{Op: "copy", From: "/p", Path: "/" + key},
			})
		case 7: // a patch that may fail its test: all or nothing
			v := rapid.IntRange(0, 2).Draw(rt, "tv")
			before := jsonOf(rt, d, "")
			err = d.ApplyPatch([]PatchOp{
				{Op: "replace", Path: "/" + key, Value: "patched"},
				{Op: "test", Path: "/q", Value: v},
			})
			if err != nil && jsonOf(rt, d, "") != before {
				rt.Fatalf("failed patch changed the view: %v", err)
			}
		}
		if !expectedEditError(err) {
			rt.Fatalf("edit: %v", err)
		}
	}
	if rapid.IntRange(0, 5).Draw(rt, "rollback") == 0 {
		if err := d.Rollback(); err != nil {
			rt.Fatal(err)
		}
		if d.HasUncommitted() || !reflect.DeepEqual(d.Heads(), beforeHeads) || jsonOf(rt, d, "") != beforeJSON {
			rt.Fatal("rollback did not restore the committed state")
		}
		return
	}
	if _, _, err := d.Commit("edit"); err != nil {
		rt.Fatal(err)
	}
	if d.HasUncommitted() {
		rt.Fatal("uncommitted after Commit")
	}
}
