package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tandemsync/tandem/crdt"
	badgerstore "github.com/tandemsync/tandem/persistence/badger"
	"github.com/tandemsync/tandem/repo"
)

var errHelp = errors.New("help shown")

const defaultData = "./tandem-data"

// parseFlags parses fs from args, allowing flags between positional
// arguments (tandem doc set URL /p 1 --data d). A lone "-" or anything that
// looks like a negative number is positional; "--" ends flags.
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, errHelp
			}
			return nil, fmt.Errorf("%w: %s: %v", errUsage, fs.Name(), err)
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if rest[0] == "--" && len(args) > 0 && args[len(args)-len(rest)] == "--" {
			return append(pos, rest[1:]...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
		// Keep values like -5 or -0.5 positional.
		for len(args) > 0 && looksNegative(args[0]) {
			pos = append(pos, args[0])
			args = args[1:]
		}
	}
}

func looksNegative(s string) bool {
	return len(s) > 1 && s[0] == '-' && (s[1] >= '0' && s[1] <= '9' || s[1] == '.')
}

func newFlagSet(name, synopsis string, stderr io.Writer) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", defaultData, "store directory")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: tandem %s\n\nFlags:\n", synopsis)
		fs.PrintDefaults()
	}
	return fs, data
}

// openRepo opens the Badger store in dir and a Repo on it. mustExist makes a
// missing directory an error instead of creating an empty store.
func openRepo(dir string, mustExist bool) (*repo.Repo, func(), error) {
	if mustExist {
		if _, err := os.Stat(dir); err != nil {
			return nil, nil, fmt.Errorf("no store at %s (create a document first, or pass --data DIR)", dir)
		}
	}
	store, err := badgerstore.Open(badgerstore.DefaultConfig(dir))
	if err != nil {
		if strings.Contains(err.Error(), "lock") {
			return nil, nil, fmt.Errorf("store %s is in use by another process (is tandem serve running on it?): %w", dir, err)
		}
		return nil, nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	r, err := repo.New(repo.Config{Store: store})
	if err != nil {
		_ = store.Close()
		return nil, nil, err
	}
	closeFn := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = r.Close(ctx)
		_ = store.Close()
	}
	return r, closeFn, nil
}

const docUsage = `Usage: tandem doc COMMAND [flags] [args]

Commands: new, get, set, del, patch, ls, history, export, import.
Every command takes --data DIR (default ./tandem-data). See 'tandem --help'.
`

func runDoc(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: doc needs a command (new, get, set, del, patch, ls, history, export, import)", errUsage)
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "-h", "--help", "help":
		fmt.Fprint(stdout, docUsage)
		return errHelp
	case "new":
		return docNew(ctx, args, stdin, stdout, stderr)
	case "get":
		return docGet(ctx, args, stdout, stderr)
	case "set":
		return docSet(ctx, args, stdout, stderr)
	case "del":
		return docDel(ctx, args, stdout, stderr)
	case "patch":
		return docPatch(ctx, args, stdin, stdout, stderr)
	case "ls":
		return docLs(ctx, args, stdout, stderr)
	case "history":
		return docHistory(ctx, args, stdout, stderr)
	case "export":
		return docExport(ctx, args, stdout, stderr)
	case "import":
		return docImport(ctx, args, stdin, stdout, stderr)
	default:
		return fmt.Errorf("%w: unknown doc command %q", errUsage, cmd)
	}
}

func wantArgs(name string, pos []string, min, max int) error {
	if len(pos) < min || len(pos) > max {
		return fmt.Errorf("%w: %s: wrong number of arguments (see tandem doc %s --help)", errUsage, name, name)
	}
	return nil
}

// readArg returns s, or the contents of FILE for "@FILE" ("@-" is stdin).
func readArg(s string, stdin io.Reader) ([]byte, error) {
	if !strings.HasPrefix(s, "@") {
		return []byte(s), nil
	}
	name := s[1:]
	if name == "-" {
		return io.ReadAll(stdin)
	}
	return os.ReadFile(name)
}

func parseURLArg(s string) (crdt.DocumentID, error) {
	id, _, err := crdt.ParseURL(s)
	if err != nil {
		return "", err
	}
	return id, nil
}

// find opens the repo and the document named by url, validating first.
func find(ctx context.Context, dir, url string) (*repo.Repo, *repo.DocHandle, func(), error) {
	id, err := parseURLArg(url)
	if err != nil {
		return nil, nil, nil, err
	}
	r, closeFn, err := openRepo(dir, true)
	if err != nil {
		return nil, nil, nil, err
	}
	h, err := r.Find(ctx, id)
	if err != nil {
		closeFn()
		if errors.Is(err, repo.ErrNotFound) {
			return nil, nil, nil, fmt.Errorf("document %s not found in %s", id.URL(), dir)
		}
		return nil, nil, nil, err
	}
	return r, h, closeFn, nil
}

func docNew(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs, data := newFlagSet("new", "doc new [--json JSON|@FILE] [--data DIR]", stderr)
	js := fs.String("json", "", "initial content: a JSON object, or @FILE")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs("new", pos, 0, 0); err != nil {
		return err
	}
	var content []byte
	if *js != "" {
		if content, err = readArg(*js, stdin); err != nil {
			return err
		}
		// Validate before touching the store.
		if _, err := crdt.FromJSON(content); err != nil {
			return err
		}
	}
	r, closeFn, err := openRepo(*data, false)
	if err != nil {
		return err
	}
	defer closeFn()
	var h *repo.DocHandle
	if content != nil {
		h, err = r.CreateJSON(ctx, content)
	} else {
		h, err = r.Create(ctx)
	}
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, h.URL())
	return nil
}

func docGet(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, data := newFlagSet("get", "doc get URL [POINTER] [--data DIR]", stderr)
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs("get", pos, 1, 2); err != nil {
		return err
	}
	ptr := ""
	if len(pos) == 2 {
		ptr = pos[1]
		if _, err := crdt.ParsePointer(ptr); err != nil {
			return err
		}
	}
	_, h, closeFn, err := find(ctx, *data, pos[0])
	if err != nil {
		return err
	}
	defer closeFn()
	b, err := h.JSON(ctx, ptr)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, string(b))
	return nil
}

func docSet(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, data := newFlagSet("set", "doc set URL POINTER JSON [--data DIR]", stderr)
	msg := fs.String("m", "", "change message")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs("set", pos, 3, 3); err != nil {
		return err
	}
	if _, err := crdt.ParsePointer(pos[1]); err != nil {
		return err
	}
	if !json.Valid([]byte(pos[2])) {
		return fmt.Errorf("%w: %q is not JSON (quote strings: '\"text\"')", crdt.ErrInvalidJSON, pos[2])
	}
	_, h, closeFn, err := find(ctx, *data, pos[0])
	if err != nil {
		return err
	}
	defer closeFn()
	_, err = h.Change(ctx, func(d *crdt.Doc) error { return d.SetJSON(pos[1], []byte(pos[2])) }, repo.WithMessage(*msg))
	return err
}

func docDel(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, data := newFlagSet("del", "doc del URL POINTER [--data DIR]", stderr)
	msg := fs.String("m", "", "change message")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs("del", pos, 2, 2); err != nil {
		return err
	}
	if _, err := crdt.ParsePointer(pos[1]); err != nil {
		return err
	}
	_, h, closeFn, err := find(ctx, *data, pos[0])
	if err != nil {
		return err
	}
	defer closeFn()
	_, err = h.Change(ctx, func(d *crdt.Doc) error { return d.Delete(pos[1]) }, repo.WithMessage(*msg))
	return err
}

func docPatch(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs, data := newFlagSet("patch", "doc patch URL PATCH|@FILE [--data DIR]", stderr)
	msg := fs.String("m", "", "change message")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs("patch", pos, 2, 2); err != nil {
		return err
	}
	raw, err := readArg(pos[1], stdin)
	if err != nil {
		return err
	}
	ops, err := crdt.ParsePatch(raw)
	if err != nil {
		return err
	}
	_, h, closeFn, err := find(ctx, *data, pos[0])
	if err != nil {
		return err
	}
	defer closeFn()
	_, err = h.Change(ctx, func(d *crdt.Doc) error { return d.ApplyPatch(ops) }, repo.WithMessage(*msg))
	return err
}

func docLs(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, data := newFlagSet("ls", "doc ls [--json] [--data DIR]", stderr)
	asJSON := fs.Bool("json", false, "print one JSON object per line")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs("ls", pos, 0, 0); err != nil {
		return err
	}
	r, closeFn, err := openRepo(*data, true)
	if err != nil {
		return err
	}
	defer closeFn()
	docs, err := r.List(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		for _, d := range docs {
			if err := enc.Encode(map[string]any{
				"url": d.URL, "size": d.Size, "created": d.Created.UTC().Format(time.RFC3339Nano),
				"updated": d.Updated.UTC().Format(time.RFC3339Nano), "heads": d.Heads,
			}); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "URL\tSIZE\tUPDATED")
	for _, d := range docs {
		fmt.Fprintf(tw, "%s\t%d\t%s\n", d.URL, d.Size, d.Updated.UTC().Format(time.RFC3339))
	}
	return tw.Flush()
}

func docHistory(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, data := newFlagSet("history", "doc history [--json] URL [--data DIR]", stderr)
	asJSON := fs.Bool("json", false, "print one JSON object per line")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs("history", pos, 1, 1); err != nil {
		return err
	}
	_, h, closeFn, err := find(ctx, *data, pos[0])
	if err != nil {
		return err
	}
	defer closeFn()
	changes, err := h.History(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		for _, c := range changes {
			deps := make([]string, len(c.Deps))
			for i, d := range c.Deps {
				deps[i] = d.String()
			}
			if err := enc.Encode(map[string]any{
				"hash": c.Hash.String(), "actor": c.Actor, "seq": c.Seq,
				"time": c.Time.UTC().Format(time.RFC3339Nano), "message": c.Message, "deps": deps,
			}); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HASH\tACTOR\tSEQ\tTIME\tMESSAGE")
	for _, c := range changes {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", c.Hash.String()[:12], short(c.Actor), c.Seq, c.Time.UTC().Format(time.RFC3339), c.Message)
	}
	return tw.Flush()
}

func short(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

func docExport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, data := newFlagSet("export", "doc export URL FILE|- [--data DIR]", stderr)
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs("export", pos, 2, 2); err != nil {
		return err
	}
	_, h, closeFn, err := find(ctx, *data, pos[0])
	if err != nil {
		return err
	}
	defer closeFn()
	b, err := h.Export(ctx)
	if err != nil {
		return err
	}
	if pos[1] == "-" {
		_, err = stdout.Write(b)
		return err
	}
	return writeFileAtomic(pos[1], b)
}

// writeFileAtomic writes via a temporary file and rename, so a failed export
// never leaves a truncated file behind.
func writeFileAtomic(name string, b []byte) error {
	tmp := name + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, name); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return nil
}

func docImport(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs, data := newFlagSet("import", "doc import FILE|- [--data DIR]", stderr)
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := wantArgs("import", pos, 1, 1); err != nil {
		return err
	}
	var b []byte
	if pos[0] == "-" {
		b, err = io.ReadAll(stdin)
	} else {
		b, err = os.ReadFile(pos[0])
	}
	if err != nil {
		return err
	}
	// Validate before touching the store.
	if _, err := crdt.Load(b); err != nil {
		return fmt.Errorf("%s is not an Automerge document: %w", pos[0], err)
	}
	r, closeFn, err := openRepo(*data, false)
	if err != nil {
		return err
	}
	defer closeFn()
	h, err := r.Import(ctx, b)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, h.URL())
	return nil
}
