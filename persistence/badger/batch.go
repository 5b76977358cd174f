package badger

import (
	"context"
	"errors"
	"fmt"

	bdb "github.com/dgraph-io/badger/v4"

	"github.com/tandemsync/tandem/persistence"
)

// Group commit.
//
// Badger batches concurrent transaction commits in its write loop and, with
// SyncWrites, fsyncs the value log once per batch, but it syncs the memtable
// write-ahead log once per transaction (badger v4 db.go writeToLSM). So
// concurrent small transactions still cost one fsync each. To make
// concurrent writers share fsyncs, the small, frequent writes (Append and
// PutValue) go to one committer goroutine that applies every write waiting
// at that moment in a single Badger transaction: one commit, one WAL sync,
// durable for all of them. While that commit is on disk the next writes
// queue up and form the next batch, so batches grow with load and a lone
// writer pays no extra latency. Compact and Delete (rare, possibly large)
// commit their own transactions.

// maxBatchOps bounds the writes applied in one transaction (and the queue).
const maxBatchOps = 1024

// op is one write waiting for the committer. apply adds the write to txn;
// it may be called more than once (after a conflict or when the batch is
// split) and must then do the same thing again. It returns
// bdb.ErrTxnTooBig if the transaction is full.
type op struct {
	apply func(txn *bdb.Txn) error
	err   error
	done  chan struct{}
}

// submit hands apply to the committer and waits until it is committed (or
// failed). Once queued, the write is waited for even if ctx ends, so that
// a nil error always means durable and an error means not written. The
// caller holds s.mu shared, which keeps the committer running.
func (s *Store) submit(ctx context.Context, apply func(txn *bdb.Txn) error) error {
	o := &op{apply: apply, done: make(chan struct{})}
	select {
	case s.ops <- o:
	case <-ctx.Done():
		return ctx.Err()
	}
	<-o.done
	return o.err
}

func (s *Store) commitLoop() {
	defer close(s.done)
	batch := make([]*op, 0, maxBatchOps)
	for {
		select {
		case o := <-s.ops:
			batch = append(batch[:0], o)
		case <-s.quit:
			return
		}
	fill:
		for len(batch) < maxBatchOps {
			select {
			case o := <-s.ops:
				batch = append(batch, o)
			default:
				break fill
			}
		}
		for rest := batch; len(rest) > 0; {
			rest = s.commitSome(rest)
		}
		clear(batch)
	}
}

func finish(o *op, err error) {
	o.err = err
	close(o.done)
}

// commitSome commits a prefix of ops in one transaction, finishes those
// ops (and any that failed on their own) and returns the rest.
func (s *Store) commitSome(ops []*op) []*op {
	limit, conflicts := len(ops), 0
	for len(ops) > 0 {
		cur := ops[:min(limit, len(ops))]
		txn := s.db.NewTransaction(true)
		n, failed, err := applyAll(txn, cur)
		if failed >= 0 {
			// One write failed on its own (or alone does not fit in a
			// transaction): fail it and rebuild the transaction without
			// its partial effects.
			txn.Discard()
			if errors.Is(err, bdb.ErrTxnTooBig) {
				err = fmt.Errorf("%w: write too large for one transaction: %v", persistence.ErrInvalid, err)
			}
			finish(ops[failed], err)
			ops = append(ops[:failed:failed], ops[failed+1:]...)
			continue
		}
		if n < len(cur) {
			// The transaction is full: rebuild it with the writes that fit,
			// so it holds no partial write; the rest go in the next one.
			txn.Discard()
			limit = n
			continue
		}
		err = txn.Commit()
		txn.Discard()
		switch {
		case errors.Is(err, bdb.ErrConflict) && conflicts < maxRetries:
			conflicts++
			continue
		case errors.Is(err, bdb.ErrTxnTooBig) && len(cur) > 1:
			limit = len(cur) / 2
			continue
		}
		if err == nil {
			s.batches.Add(1)
			s.batched.Add(int64(len(cur)))
		}
		for _, o := range cur {
			finish(o, err)
		}
		return ops[len(cur):]
	}
	return nil
}

// applyAll applies ops to txn in order. It returns how many fit (n), and
// the index of an op that failed on its own (failed, -1 if none) with its
// error.
func applyAll(txn *bdb.Txn, ops []*op) (n, failed int, err error) {
	for i, o := range ops {
		err := o.apply(txn)
		switch {
		case err == nil:
		case errors.Is(err, bdb.ErrTxnTooBig) && i > 0:
			return i, -1, nil
		default:
			return i, i, err
		}
	}
	return len(ops), -1, nil
}
