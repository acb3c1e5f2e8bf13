package bench

import (
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// A decoder walks one file's YAML node tree into Go values by hand, rather
// than with yaml's struct decoding, so that every error can name the file,
// the line and the field, and say what would be right.
type decoder struct {
	file string
	// lines maps each field path written in the file to the line of its
	// key (or list item), for the checks made after decoding.
	lines map[string]int
}

// A field is one key that a mapping allows.
type field struct {
	key      string
	required bool
	want     string // a right value, for messages: "v1 or v2"
	item     string // for a list, a right item
	// into is where the value goes: *string, *bool, *int, *float64,
	// *[]string, a yaml.Unmarshaler for a scalar type of this package
	// (*Duration, *BitRate, *ByteSize, *fraction), []field for a nested
	// mapping, or mappings (see listOf) for a list of mappings.
	into any
}

// mappings is the target of a list of mappings: reset replaces the list
// with n zero items and item returns the fields of item i.
type mappings struct {
	reset func(n int)
	item  func(i int) []field
}

// listOf returns the target that decodes a list of mappings into *list,
// each item into the fields that fields returns for it. fields may set
// defaults in the item before returning.
func listOf[T any](list *[]T, fields func(*T) []field) mappings {
	return mappings{
		reset: func(n int) { *list = make([]T, n) },
		item:  func(i int) []field { return fields(&(*list)[i]) },
	}
}

// parse decodes data, the contents of file, into its single document's
// root node. what names the expected contents for an empty file.
func parse(file string, data []byte, what string) (*decoder, *yaml.Node, error) {
	d := &decoder{file: file, lines: make(map[string]int)}
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	var doc yaml.Node
	err := dec.Decode(&doc)
	if errors.Is(err, io.EOF) {
		return nil, nil, d.errorf(1, "", "file is empty; want %s", what)
	}
	if err != nil {
		return nil, nil, d.syntaxError(err)
	}
	root := resolve(doc.Content[0])
	if isNull(root) {
		return nil, nil, d.errorf(doc.Line, "", "document is empty; want %s", what)
	}
	// A second document would be silently ignored by the loader; refuse it.
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case err == nil:
		return nil, nil, d.errorf(next.Line, "", "a second YAML document starts here; want one document per file")
	case !errors.Is(err, io.EOF):
		return nil, nil, d.syntaxError(err)
	}
	return d, root, nil
}

// yamlLine matches the line that yaml puts in its syntax errors.
var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// syntaxError moves the line out of a yaml syntax error into an *Error.
func (d *decoder) syntaxError(err error) error {
	msg, line := strings.TrimPrefix(err.Error(), "yaml: "), 0
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	return d.errorf(line, "", "invalid YAML: %s", msg)
}

func (d *decoder) errorf(line int, field, format string, args ...any) error {
	return &Error{File: d.file, Line: line, Field: field, Err: fmt.Errorf(format, args...)}
}

// at returns err, if not nil, as an *Error at the line where field was
// written in the file.
func (d *decoder) at(field string, err error) error {
	if err == nil {
		return nil
	}
	return &Error{File: d.file, Line: d.lines[field], Field: field, Err: err}
}

// mapping decodes the mapping n, found at path, whose key (or document)
// is on line, into fields. Keys absent from the file keep the values
// already in fields' targets: the defaults.
func (d *decoder) mapping(path string, line int, n *yaml.Node, fields []field) error {
	if n.Kind != yaml.MappingNode {
		return d.errorf(n.Line, path, "got %s, want a mapping with keys %s", describe(n), keys(fields))
	}
	seen := make(map[string]int)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], resolve(n.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			return d.errorf(k.Line, path, "got %s as a key, want one of %s", describe(k), keys(fields))
		}
		p := join(path, k.Value)
		f, ok := lookup(fields, k.Value)
		if !ok {
			return d.errorf(k.Line, p, "unknown key %q; want one of %s", k.Value, keys(fields))
		}
		if first, dup := seen[k.Value]; dup {
			return d.errorf(k.Line, p, "set again (first at line %d); want each key once", first)
		}
		seen[k.Value] = k.Line
		d.lines[p] = k.Line
		if isNull(v) {
			if f.required {
				return d.errorf(k.Line, p, "has no value; want %s", f.want)
			}
			continue // keep the default
		}
		if err := d.value(p, k.Line, v, f); err != nil {
			return err
		}
	}
	for _, f := range fields {
		if _, ok := seen[f.key]; f.required && !ok {
			return d.errorf(line, join(path, f.key), "missing; want %s", f.want)
		}
	}
	return nil
}

// value decodes the non-null node n, written at path on line, into f.
func (d *decoder) value(path string, line int, n *yaml.Node, f field) error {
	switch into := f.into.(type) {
	case *string:
		if n.Kind != yaml.ScalarNode {
			return d.errorf(n.Line, path, "got %s, want %s", describe(n), f.want)
		}
		if f.required && n.Value == "" {
			return d.errorf(n.Line, path, "is empty; want %s", f.want)
		}
		*into = n.Value
	case *bool:
		b, err := strconv.ParseBool(strings.ToLower(n.Value))
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" || err != nil {
			return d.errorf(n.Line, path, "got %s, want %s", describe(n), f.want)
		}
		*into = b
	case *int:
		// Decode reads YAML's integer forms and refuses what overflows.
		var i int
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&i) != nil {
			return d.errorf(n.Line, path, "got %s, want %s", describe(n), f.want)
		}
		*into = i
	case *float64:
		// Decode reads YAML's integer and float forms, .inf and .nan
		// among them, which no setting can use.
		var v float64
		tag := n.ShortTag()
		if n.Kind != yaml.ScalarNode || tag != "!!int" && tag != "!!float" || n.Decode(&v) != nil {
			return d.errorf(n.Line, path, "got %s, want %s", describe(n), f.want)
		}
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return d.errorf(n.Line, path, "got %s, which is not a finite number; want %s", n.Value, f.want)
		}
		*into = v
	case yaml.Unmarshaler:
		if err := into.UnmarshalYAML(n); err != nil {
			return &Error{File: d.file, Line: n.Line, Field: path, Err: err}
		}
	case *[]string:
		start := func(n int) { *into = make([]string, 0, n) }
		return d.list(path, n, f, start, func(_ int, p string, item *yaml.Node) error {
			if item.Kind != yaml.ScalarNode || isNull(item) || item.Value == "" {
				return d.errorf(item.Line, p, "got %s, want %s", describe(item), f.item)
			}
			*into = append(*into, item.Value)
			return nil
		})
	case mappings:
		return d.list(path, n, f, into.reset, func(i int, p string, item *yaml.Node) error {
			return d.mapping(p, item.Line, item, into.item(i))
		})
	case []field:
		return d.mapping(path, line, n, into)
	default:
		panic(fmt.Sprintf("bench: field %s has unsupported target %T", path, f.into))
	}
	return nil
}

// list decodes the sequence n, found at path, the value of f: start gets
// its length, then each decodes item i, found at path p.
func (d *decoder) list(path string, n *yaml.Node, f field, start func(n int), each func(i int, p string, item *yaml.Node) error) error {
	if n.Kind != yaml.SequenceNode {
		return d.errorf(n.Line, path, "got %s, want %s", describe(n), f.want)
	}
	start(len(n.Content))
	for i, item := range n.Content {
		item = resolve(item)
		p := fmt.Sprintf("%s[%d]", path, i)
		d.lines[p] = item.Line
		if err := each(i, p, item); err != nil {
			return err
		}
	}
	return nil
}

// resolve follows an alias to the node it names.
func resolve(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// describe says what n is, for "got ..., want ..." messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return "no value"
		case "!!str":
			return fmt.Sprintf("the string %q", n.Value)
		case "!!bool":
			return "the boolean " + n.Value
		case "!!int", "!!float":
			return "the number " + n.Value
		}
		return fmt.Sprintf("%s %q", n.ShortTag(), n.Value)
	}
	return "an unexpected YAML node"
}

func lookup(fields []field, key string) (field, bool) {
	for _, f := range fields {
		if f.key == key {
			return f, true
		}
	}
	return field{}, false
}

// keys lists fields' keys in their documented order.
func keys(fields []field) string {
	names := make([]string, len(fields))
	for i, f := range fields {
		names[i] = f.key
	}
	return strings.Join(names, ", ")
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}
