package server

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/tandemsync/tandem/crdt"
	"github.com/tandemsync/tandem/repo"
)

// SchemaValidator compiles a JSON Schema and returns a repo.Validator that
// requires every document (or, with docs given, only those documents) to
// match it after every change.
func SchemaValidator(schema []byte, docs ...crdt.DocumentID) (repo.Validator, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(schema))
	if err != nil {
		return nil, fmt.Errorf("server: schema is not JSON: %w", err)
	}
	c := jsonschema.NewCompiler()
	const loc = "tandem:schema.json"
	if err := c.AddResource(loc, doc); err != nil {
		return nil, fmt.Errorf("server: schema: %w", err)
	}
	sch, err := c.Compile(loc)
	if err != nil {
		return nil, fmt.Errorf("server: schema: %w", err)
	}
	only := map[crdt.DocumentID]bool{}
	for _, d := range docs {
		only[d] = true
	}
	return func(id crdt.DocumentID, view any) error {
		if len(only) > 0 && !only[id] {
			return nil
		}
		// Round-trip through JSON: the schema library wants json.Number
		// and plain JSON types.
		b, err := json.Marshal(view)
		if err != nil {
			return err
		}
		v, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			return err
		}
		if err := sch.Validate(v); err != nil {
			return fmt.Errorf("does not match the schema: %v", err)
		}
		return nil
	}, nil
}
