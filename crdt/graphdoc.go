package crdt

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"

	"github.com/automerge/automerge-go"
)

// Graph-backed documents.
//
// A sync server mostly relays and stores changes; it reads a document's
// content only for REST reads, writes and validation. A graph-backed Doc
// (NewGraphDoc, LoadGraphDoc) keeps its committed changes in a Graph, which
// is the source of truth for heads, history, saving and sync (its
// SyncStates speak the protocol in Go, see GraphSync), and builds the
// document in the Automerge core only when something reads or writes the
// content. From then on both hold every change: every call that adds one
// (LoadIncremental, ApplyDirectly, SyncState.Receive, Commit, Merge) gives
// it to both. Dematerialize drops the core copy again.
//
// Memory: a 10,000-change dashboard costs about 260 bytes per change as a
// graph and about 2,400 in the core; 1 MB of strings about 1 MB against
// 440 MB. Save writes the changes themselves (concatenated change chunks,
// which Load and LoadGraphDoc read), not Automerge's compressed document
// format, so snapshots are larger: 1.1 MB against 21 KB for that
// dashboard.

// NewGraphDoc returns an empty graph-backed document.
func NewGraphDoc() *Doc { return &Doc{g: NewGraph()} }

// LoadGraphDoc reads what Load reads into a graph-backed document. Change
// chunks go straight into the graph; a document chunk (Automerge's saved
// format) is loaded once through the core to list its changes, and that
// copy is dropped. Bad bytes give ErrCorrupt.
func LoadGraphDoc(data []byte) (*Doc, error) {
	cs, err := checkChunks(data)
	if err != nil {
		return nil, err
	}
	if cs, err = graphChanges(data, cs); err != nil {
		return nil, err
	}
	d := NewGraphDoc()
	if _, err := d.g.addChecked(cs); err != nil {
		return nil, err
	}
	d.saved = toAMHashes(d.g.Heads())
	return d, nil
}

// graphChanges returns the changes of data (cs: checkChunks' result for
// it) as checked change chunks. A document chunk (Automerge's saved
// format) is listed through the core, once; changes the core would queue
// (missing dependencies) are kept, to wait in the graph.
func graphChanges(data []byte, cs []changeChunk) ([]changeChunk, error) {
	if onlyChanges(cs, data) {
		return cs, nil
	}
	tmp := wrapDoc(automerge.New())
	if err := tmp.LoadIncremental(data); err != nil {
		return nil, err
	}
	changes, err := tmp.ChangesSince(nil)
	if err != nil {
		return nil, err
	}
	for _, raw := range tmp.queued {
		changes = append(changes, raw...)
	}
	return checkChunks(changes)
}

// IsGraph reports whether d is graph-backed.
func (d *Doc) IsGraph() bool { return d.g != nil }

// Materialized reports whether d's document is in the Automerge core
// (always, unless d is graph-backed and nothing read or wrote it since it
// was loaded or dematerialized).
func (d *Doc) Materialized() bool { return d.am != nil }

// Dematerialize drops the core copy of a graph-backed document, keeping
// its graph; the next read or write builds it again. It does nothing (and
// reports false) for other documents or while writes are pending.
func (d *Doc) Dematerialize() bool {
	if d.g == nil || d.am == nil || d.dirty {
		return false
	}
	d.am = nil
	d.queued = nil
	d.known = nil
	return true
}

// DematerializeUnused drops the core copy of a graph-backed document if
// no read or write has needed it since the previous call, and reports
// whether it did. Called periodically, it keeps the core copy only while
// the content is in use (a REST read of a document that peers keep busy
// need not hold the core's memory until the document hibernates).
func (d *Doc) DematerializeUnused() bool {
	used := d.coreUsed
	d.coreUsed = false
	return !used && d.Dematerialize()
}

// materialize builds the core copy of a graph-backed document. Every read
// and write of the content passes here.
func (d *Doc) materialize() error {
	d.coreUsed = true
	if d.am != nil {
		return nil
	}
	if d.g == nil {
		return fmt.Errorf("%w: document has no content", ErrCorrupt)
	}
	noteForeign(64<<10 + 8*d.g.Bytes())
	actor := d.actorForCore()
	var am *automerge.Doc
	err := guard(ErrCorrupt, "materialize", func() (err error) {
		if d.g.Len() == 0 {
			am = automerge.New()
		} else if am, err = automerge.Load(concatChunks(d.g.ChangesSince(nil))); err != nil {
			return err
		}
		return am.SetActorID(actor)
	})
	if err != nil {
		return err
	}
	d.am = am
	d.changed()
	return nil
}

// actorForCore returns the actor a graph-backed document writes as,
// choosing a random one the first time (as automerge.New does).
func (d *Doc) actorForCore() string {
	if d.actor == "" {
		var b [16]byte
		_, _ = rand.Read(b[:])
		d.actor = hex.EncodeToString(b[:])
	}
	return d.actor
}

// hasQueued reports whether changes wait for missing dependencies.
func (d *Doc) hasQueued() bool {
	if d.g != nil {
		return len(d.g.queued) > 0
	}
	return len(d.queued) > 0
}

// isQueued reports whether h waits for missing dependencies.
func (d *Doc) isQueued(h automerge.ChangeHash) bool {
	if d.g != nil {
		_, ok := d.g.queued[Hash(h)]
		return ok
	}
	_, ok := d.queued[h]
	return ok
}

// graphAdd gives changes (already in the core copy, if any) to the graph.
func (d *Doc) graphAdd(data []byte) error {
	if d.g == nil || len(data) == 0 {
		return nil
	}
	_, err := d.g.Add(data)
	d.changed()
	return err
}

func concatChunks(cs [][]byte) []byte {
	n := 0
	for _, c := range cs {
		n += len(c)
	}
	out := make([]byte, 0, n)
	for _, c := range cs {
		out = append(out, c...)
	}
	return out
}

// loadIncrementalGraph is LoadIncremental for a graph-backed document:
// cs is checkChunks' result for data (already checked; pending writes
// committed).
func (d *Doc) loadIncrementalGraph(data []byte, cs []changeChunk) error {
	cs, err := graphChanges(data, cs)
	if err != nil {
		return err
	}
	return d.addToGraph(cs)
}

// addToGraph adds checked changes to the graph and the core copy, if any.
func (d *Doc) addToGraph(cs []changeChunk) error {
	before := d.g.Heads()
	if _, err := d.g.addChecked(cs); err != nil {
		return err
	}
	d.changed()
	d.catchUpCore(before)
	return nil
}

// catchUpCore gives the core copy, if any, the changes that joined the
// graph since it had heads before. The core copy holds exactly the graph's
// joined changes: changes waiting for dependencies wait in the graph only
// (which also releases them), never in the core.
func (d *Doc) catchUpCore(before []Hash) {
	if d.am == nil {
		return
	}
	news := concatChunks(d.g.ChangesSince(before))
	if len(news) == 0 {
		return
	}
	err := guard(ErrCorrupt, "load incremental", func() error { return d.am.LoadIncremental(news) })
	if err != nil {
		// The graph took the changes; the core copy is rebuilt from it
		// when next needed.
		d.am, d.queued, d.known = nil, nil, nil
	}
}
