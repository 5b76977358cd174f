package badger

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	bdb "github.com/dgraph-io/badger/v4"

	"github.com/tandemsync/tandem/persistence"
)

// Defaults used for zero Config sizes. They suit a server with a few cores
// and some GiB of memory and keep a store's resident memory moderate
// (roughly NumMemtables×MemTableSize + BlockCacheSize at most), so that a
// test binary can open many stores.
const (
	DefaultMemTableSize     = 32 << 20  // 32 MiB; a transaction may hold 15% of it
	DefaultValueLogFileSize = 256 << 20 // 256 MiB
	DefaultBlockCacheSize   = 64 << 20  // 64 MiB
)

// Tuning that is not exposed in Config.
const (
	numMemtables = 3
	// numCompactors: Badger needs 0 or at least 2.
	numCompactors = 2
	// valueThreshold: values of at least this size (snapshots, large
	// chunks) go to the value log, so the LSM tree (metas, small chunks)
	// stays small and List/Stat stay fast. Reclaim value-log space with
	// Store.RunGC.
	valueThreshold = 64 << 10
)

// Config configures a Store. Start from DefaultConfig: the zero value of
// SyncWrites is false, which is not durable.
type Config struct {
	// Dir is the directory holding the database; it is created if missing.
	// Required unless InMemory.
	Dir string
	// InMemory keeps everything in memory and writes nothing to disk (Dir
	// must be empty). For tests only.
	InMemory bool
	// SyncWrites makes every write durable (fsynced) before it returns.
	// DefaultConfig sets it; turn it off only for data you can lose.
	// Concurrent writes share fsyncs (group commit) either way.
	SyncWrites bool
	// Logger receives Badger's errors (level Error), warnings (Warn) and
	// informational messages (Debug). Nil discards them.
	Logger *slog.Logger
	// MemTableSize is the size of one memtable in bytes (0 means
	// DefaultMemTableSize; at least 1 MiB, at most 1 GiB). It also bounds
	// the size of one transaction (15% of it): a Compact whose deletions
	// do not fit runs in several transactions.
	MemTableSize int64
	// ValueLogFileSize is the size of one value-log file in bytes (0 means
	// DefaultValueLogFileSize; at least 1 MiB, less than 2 GiB).
	ValueLogFileSize int64
	// BlockCacheSize is the size of the block cache in bytes (0 means
	// DefaultBlockCacheSize; at least 1 MiB).
	BlockCacheSize int64

	// hooks is for this package's tests only (fault injection).
	hooks *testHooks
}

// testHooks lets tests interrupt multi-step operations.
type testHooks struct {
	// compact is called at named stages of Compact; a non-nil error makes
	// Compact return it at once, as if the process had crashed there.
	// Stages: "snapshot-written" (split compaction: snapshot and coverage
	// committed, covered chunks not yet deleted) and "chunks-deleted"
	// (after each deletion transaction).
	compact func(stage string) error
	// forceSplit makes Compact take the multi-transaction path.
	forceSplit bool
	// deleteBatch bounds the chunk keys deleted per transaction (0: as many
	// as fit).
	deleteBatch int
}

// DefaultConfig returns the recommended configuration for a durable store
// in dir: SyncWrites on and default sizes.
func DefaultConfig(dir string) Config {
	return Config{Dir: dir, SyncWrites: true}
}

const (
	mib = 1 << 20
	gib = 1 << 30
)

// validate reports the first problem with c; the error wraps
// persistence.ErrInvalid.
func (c Config) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: badger config: %s", persistence.ErrInvalid, fmt.Sprintf(format, args...))
	}
	switch {
	case c.InMemory && c.Dir != "":
		return bad("Dir must be empty with InMemory (got %q)", c.Dir)
	case !c.InMemory && strings.TrimSpace(c.Dir) == "":
		return bad("Dir is required")
	case c.MemTableSize != 0 && (c.MemTableSize < mib || c.MemTableSize > gib):
		return bad("MemTableSize %d out of range [1 MiB, 1 GiB]", c.MemTableSize)
	case c.ValueLogFileSize != 0 && (c.ValueLogFileSize < mib || c.ValueLogFileSize >= 2*gib):
		return bad("ValueLogFileSize %d out of range [1 MiB, 2 GiB)", c.ValueLogFileSize)
	case c.BlockCacheSize != 0 && c.BlockCacheSize < mib:
		return bad("BlockCacheSize %d below 1 MiB", c.BlockCacheSize)
	case c.hooks != nil && c.hooks.deleteBatch < 0:
		return bad("negative delete batch")
	}
	return nil
}

// withDefaults returns c with zero sizes replaced by the defaults.
func (c Config) withDefaults() Config {
	if c.MemTableSize == 0 {
		c.MemTableSize = DefaultMemTableSize
	}
	if c.ValueLogFileSize == 0 {
		c.ValueLogFileSize = DefaultValueLogFileSize
	}
	if c.BlockCacheSize == 0 {
		c.BlockCacheSize = DefaultBlockCacheSize
	}
	return c
}

// options translates a validated Config (with defaults applied) into
// Badger's options.
func (c Config) options() bdb.Options {
	var logger bdb.Logger
	if c.Logger != nil {
		logger = slogAdapter{c.Logger}
	}
	return bdb.DefaultOptions(c.Dir).
		WithInMemory(c.InMemory).
		WithSyncWrites(c.SyncWrites).
		WithLogger(logger).
		WithMemTableSize(c.MemTableSize).
		WithValueLogFileSize(c.ValueLogFileSize).
		WithBlockCacheSize(c.BlockCacheSize).
		WithNumMemtables(numMemtables).
		WithNumCompactors(numCompactors).
		WithValueThreshold(valueThreshold).
		WithMetricsEnabled(false).
		WithDetectConflicts(true)
}

// slogAdapter is a bdb.Logger writing to a slog.Logger.
type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) log(level slog.Level, format string, args []any) {
	ctx := context.Background()
	if !a.l.Enabled(ctx, level) {
		return
	}
	a.l.Log(ctx, level, strings.TrimSpace(fmt.Sprintf(format, args...)), "component", "badger")
}

func (a slogAdapter) Errorf(format string, args ...any)   { a.log(slog.LevelError, format, args) }
func (a slogAdapter) Warningf(format string, args ...any) { a.log(slog.LevelWarn, format, args) }
func (a slogAdapter) Infof(format string, args ...any)    { a.log(slog.LevelDebug, format, args) }
func (a slogAdapter) Debugf(string, ...any)               {}
