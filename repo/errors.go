package repo

import "errors"

// Sentinel errors; every error the package returns wraps one of these or an
// error of the crdt or persistence packages.
var (
	ErrNotFound      = errors.New("repo: document not found")
	ErrClosed        = errors.New("repo: closed")
	ErrInvalidConfig = errors.New("repo: invalid config")
	ErrUnavailable   = errors.New("repo: document unavailable")
	ErrLoad          = errors.New("repo: document does not load")
	ErrTooLarge      = errors.New("repo: document too large")
)
