// Command tandem is Tandem's command line: a sync server (serve), document
// tools on a local store (doc), and more.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `tandem: a real-time collaborative state engine on Automerge.

Usage:
  tandem serve [--addr 127.0.0.1:7070] [--data ./tandem-data]   run the sync server
  tandem doc COMMAND [flags] [args]                              work on a local store
  tandem bench [--server URL | --spawn CMD] SCENARIO             load-test a sync server (loopback only)
  tandem token --secret-file FILE --sub NAME --doc URL|'*' --perm read|write|admin [--ttl 1h]
                                                                 print an access token for serve --auth-secret-file
  tandem sync --server ws://HOST:PORT/sync [--data DIR] [--once] [--timeout 30s] [URL...]
                                                                 sync a local store with a server

Document commands (all take --data DIR, default ./tandem-data):
  doc new [--json JSON|@FILE]        create a document, print its URL
  doc get URL [POINTER]              print the document (or the value at POINTER) as JSON
  doc set URL POINTER JSON           set the value at POINTER (JSON Pointer, RFC 6901)
  doc del URL POINTER                delete the value at POINTER
  doc patch URL PATCH|@FILE          apply a JSON Patch (RFC 6902) as one change
  doc ls [--json]                    list documents: URL, size, last change
  doc history [--json] URL           list a document's changes
  doc export URL FILE|-              write the Automerge binary
  doc import FILE|-                  store an Automerge binary as a new document, print its URL

Run 'tandem COMMAND --help' for a command's flags.
`

// exit codes
const (
	exitOK    = 0
	exitErr   = 1
	exitUsage = 2
)

// errUsage marks errors that are the caller's wrong invocation.
var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes one command line; it is main without the process around it.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	var err error
	switch args[0] {
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return exitOK
	case "doc":
		err = runDoc(ctx, args[1:], stdin, stdout, stderr)
	case "serve":
		err = runServe(ctx, args[1:], stdout, stderr)
	case "bench":
		err = runBench(ctx, args[1:], stdout, stderr)
	case benchWorkerCmd:
		err = runBenchWorker(ctx, args[1:], stdin, stdout)
	case "token":
		err = runToken(ctx, args[1:], stdout, stderr)
	case "sync":
		err = runSync(ctx, args[1:], stdout, stderr)
	default:
		err = fmt.Errorf("%w: unknown command %q (see tandem --help)", errUsage, args[0])
	}
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errHelp):
		return exitOK
	case errors.Is(err, errUsage):
		fmt.Fprintln(stderr, "tandem:", trimUsage(err))
		return exitUsage
	default:
		fmt.Fprintln(stderr, "tandem:", err)
		return exitErr
	}
}

func trimUsage(err error) string {
	s := err.Error()
	const p = "usage: "
	if len(s) > len(p) && s[:len(p)] == p {
		return s[len(p):]
	}
	return s
}
