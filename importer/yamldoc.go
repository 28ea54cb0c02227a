package importer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// doc is one object of an input: a YAML document, or an item of a
// "kind: List" as kubectl get -o yaml writes several objects.
type doc struct {
	file       string
	root       *yaml.Node // a mapping
	apiVersion string
	kind       string
	name       string
	namespace  string
}

// ref names the object for comments and findings: "VirtualService ns/name".
func (d *doc) ref() string {
	n := d.name
	if d.namespace != "" {
		n = d.namespace + "/" + n
	}
	if n == "" {
		return d.kind
	}
	return d.kind + " " + n
}

func (d *doc) pos(n *yaml.Node) Pos {
	if n == nil {
		n = d.root
	}
	return Pos{File: d.file, Line: n.Line, Column: n.Column}
}

// at returns the position of the value at path (keys and indexes), or of
// the deepest part of it that exists.
func (d *doc) at(path ...any) Pos { return d.pos(lookup(d.root, path...)) }

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): `)

// maxDocs bounds the documents (and List items) read from one input.
const maxDocs = 10000

// readDocs splits an input into objects.
func readDocs(in Input) ([]*doc, error) {
	dec := yaml.NewDecoder(bytes.NewReader(in.Data))
	var docs []*doc
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			pe := &ParseError{Pos: Pos{File: in.Name, Line: 1, Column: 1}, Message: "invalid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}
			if m := yamlLineRE.FindStringSubmatch(err.Error()); m != nil {
				pe.Line, _ = strconv.Atoi(m[1])
				pe.Message = "invalid YAML: " + err.Error()[len(m[0]):]
			}
			return nil, pe
		}
		if len(n.Content) == 0 {
			continue // an empty document
		}
		root := resolve(n.Content[0])
		if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
			continue
		}
		if root.Kind != yaml.MappingNode {
			return nil, &ParseError{Pos: Pos{in.Name, root.Line, root.Column}, Message: "a document must be a mapping (an object with apiVersion and kind, or a gateway configuration)"}
		}
		d := newDoc(in.Name, root)
		if d.kind == "List" || strings.HasSuffix(d.kind, "List") && lookupExact(root, "items") != nil {
			items := lookupExact(root, "items")
			if items != nil && items.Kind == yaml.SequenceNode {
				for _, it := range items.Content {
					it = resolve(it)
					if it.Kind == yaml.MappingNode {
						docs = append(docs, newDoc(in.Name, it))
					}
				}
			}
		} else {
			docs = append(docs, d)
		}
		if len(docs) > maxDocs {
			return nil, &ParseError{Pos: Pos{in.Name, root.Line, root.Column}, Message: fmt.Sprintf("more than %d objects in one file", maxDocs)}
		}
	}
	return docs, nil
}

func newDoc(file string, root *yaml.Node) *doc {
	d := &doc{file: file, root: root}
	d.apiVersion = scalar(lookupExact(root, "apiVersion"))
	d.kind = scalar(lookupExact(root, "kind"))
	if md := lookupExact(root, "metadata"); md != nil {
		d.name = scalar(lookupExact(md, "name"))
		d.namespace = scalar(lookupExact(md, "namespace"))
	}
	return d
}

func scalar(n *yaml.Node) string {
	if n == nil || n.Kind != yaml.ScalarNode {
		return ""
	}
	return n.Value
}

func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && n.Alias != nil && i < 100; i++ {
		n = n.Alias
	}
	return n
}

// keyEq compares mapping keys the way protojson and Kubernetes spellings
// differ: allow_origins, allowOrigins and AllowOrigins are one key.
func keyEq(a, b string) bool {
	return strings.EqualFold(strings.ReplaceAll(a, "_", ""), strings.ReplaceAll(b, "_", ""))
}

func lookupExact(n *yaml.Node, key string) *yaml.Node {
	n = resolve(n)
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return resolve(n.Content[i+1])
		}
	}
	return nil
}

// child returns the value of key (compared with keyEq) or item i.
func child(n *yaml.Node, step any) *yaml.Node {
	n = resolve(n)
	if n == nil {
		return nil
	}
	switch s := step.(type) {
	case string:
		if n.Kind != yaml.MappingNode {
			return nil
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			if keyEq(n.Content[i].Value, s) {
				return resolve(n.Content[i+1])
			}
		}
	case int:
		if n.Kind == yaml.SequenceNode && s >= 0 && s < len(n.Content) {
			return resolve(n.Content[s])
		}
	}
	return nil
}

// lookup follows path from n and returns the node reached, or the deepest
// node on the way.
func lookup(n *yaml.Node, path ...any) *yaml.Node {
	for _, step := range path {
		c := child(n, step)
		if c == nil {
			return n
		}
		n = c
	}
	return n
}

// decodeNode decodes a node into v through JSON, so that the projects'
// own Go types (which carry JSON tags) do the decoding.
func decodeNode(n *yaml.Node, v any) error {
	js, err := nodeJSON(n)
	if err != nil {
		return err
	}
	return json.Unmarshal(js, v)
}

func nodeJSON(n *yaml.Node) ([]byte, error) {
	var raw any
	if err := n.Decode(&raw); err != nil {
		return nil, err
	}
	js, err := json.Marshal(jsonable(raw))
	if err != nil {
		return nil, err
	}
	return js, nil
}

// jsonable turns what yaml.v3 decodes into what encoding/json encodes:
// mappings with non-string keys get string keys.
func jsonable(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			t[k] = jsonable(e)
		}
		return t
	case map[any]any:
		m := make(map[string]any, len(t))
		for k, e := range t {
			m[fmt.Sprint(k)] = jsonable(e)
		}
		return m
	case []any:
		for i, e := range t {
			t[i] = jsonable(e)
		}
		return t
	}
	return v
}
