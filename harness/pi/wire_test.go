package pi_test

import (
	"cmp"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"

	pb "github.com/satbench/hil/harness/pi/antarispb"
)

var update = flag.Bool("update", false, "rewrite testdata/wire.golden from the generated code")

// TestWire pins what the wire depends on — the package, every enum value,
// every message field's number, name, type and cardinality, every
// service method with its types — to testdata/wire.golden, which was
// checked by hand against the contract
// (shared/contracts/payload-interface.md). A change to antaris_api.proto
// that changes the wire fails here; `go test ./harness/pi/ -run TestWire
// -update` rewrites the golden file once the change is meant.
func TestWire(t *testing.T) {
	got := wireText(pb.File_antaris_api_proto)
	golden := filepath.Join("testdata", "wire.golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to write it)", err)
	}
	if got != string(want) {
		t.Errorf("the wire of antaris_api.proto differs from %s (-want +got):\n%s", golden, lineDiff(string(want), got))
	}
}

// wireText is a stable text form of fd's wire: sorted by name (fields by
// number), so that reordering declarations, which the wire ignores,
// changes nothing.
func wireText(fd protoreflect.FileDescriptor) string {
	var b strings.Builder
	pkg := string(fd.Package())
	fmt.Fprintf(&b, "package %s\n", pkg)
	local := func(n protoreflect.FullName) string { return strings.TrimPrefix(string(n), pkg+".") }

	var enums []protoreflect.EnumDescriptor
	for i := range fd.Enums().Len() {
		enums = append(enums, fd.Enums().Get(i))
	}
	slices.SortFunc(enums, func(x, y protoreflect.EnumDescriptor) int { return cmp.Compare(x.Name(), y.Name()) })
	for _, e := range enums {
		fmt.Fprintf(&b, "\nenum %s\n", e.Name())
		var vals []protoreflect.EnumValueDescriptor
		for i := range e.Values().Len() {
			vals = append(vals, e.Values().Get(i))
		}
		slices.SortFunc(vals, func(x, y protoreflect.EnumValueDescriptor) int {
			return cmp.Or(cmp.Compare(y.Number(), x.Number()), cmp.Compare(x.Name(), y.Name()))
		})
		for _, v := range vals {
			fmt.Fprintf(&b, "  %s = %d\n", v.Name(), v.Number())
		}
	}

	var msgs []protoreflect.MessageDescriptor
	var walk func(protoreflect.MessageDescriptors)
	walk = func(ms protoreflect.MessageDescriptors) {
		for i := range ms.Len() {
			msgs = append(msgs, ms.Get(i))
			walk(ms.Get(i).Messages())
		}
	}
	walk(fd.Messages())
	slices.SortFunc(msgs, func(x, y protoreflect.MessageDescriptor) int { return cmp.Compare(x.FullName(), y.FullName()) })
	for _, m := range msgs {
		fmt.Fprintf(&b, "\nmessage %s\n", local(m.FullName()))
		var fields []protoreflect.FieldDescriptor
		for i := range m.Fields().Len() {
			fields = append(fields, m.Fields().Get(i))
		}
		slices.SortFunc(fields, func(x, y protoreflect.FieldDescriptor) int { return cmp.Compare(x.Number(), y.Number()) })
		for _, f := range fields {
			typ := f.Kind().String()
			switch f.Kind() {
			case protoreflect.MessageKind, protoreflect.GroupKind:
				typ = local(f.Message().FullName())
			case protoreflect.EnumKind:
				typ = local(f.Enum().FullName())
			}
			card := ""
			switch {
			case f.IsMap():
				card = "map "
			case f.Cardinality() == protoreflect.Repeated:
				card = "repeated "
			case f.HasPresence() && f.ContainingOneof() != nil && f.ContainingOneof().IsSynthetic():
				card = "optional "
			case f.ContainingOneof() != nil:
				card = "oneof " + string(f.ContainingOneof().Name()) + " "
			}
			fmt.Fprintf(&b, "  #%d %s %s%s\n", f.Number(), f.Name(), card, typ)
		}
	}

	var svcs []protoreflect.ServiceDescriptor
	for i := range fd.Services().Len() {
		svcs = append(svcs, fd.Services().Get(i))
	}
	slices.SortFunc(svcs, func(x, y protoreflect.ServiceDescriptor) int { return cmp.Compare(x.Name(), y.Name()) })
	for _, s := range svcs {
		fmt.Fprintf(&b, "\nservice %s\n", s.Name())
		var ms []protoreflect.MethodDescriptor
		for i := range s.Methods().Len() {
			ms = append(ms, s.Methods().Get(i))
		}
		slices.SortFunc(ms, func(x, y protoreflect.MethodDescriptor) int { return cmp.Compare(x.Name(), y.Name()) })
		for _, m := range ms {
			stream := ""
			if m.IsStreamingClient() || m.IsStreamingServer() {
				stream = fmt.Sprintf(" (streaming client=%v server=%v)", m.IsStreamingClient(), m.IsStreamingServer())
			}
			fmt.Fprintf(&b, "  /%s/%s(%s) returns (%s)%s\n", s.FullName(), m.Name(), local(m.Input().FullName()), local(m.Output().FullName()), stream)
		}
	}
	return b.String()
}

// lineDiff lists the lines only in want (-) and only in got (+).
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	in := func(lines []string) map[string]int {
		m := map[string]int{}
		for _, l := range lines {
			m[l]++
		}
		return m
	}
	wm, gm := in(w), in(g)
	var b strings.Builder
	for _, l := range w {
		if gm[l] == 0 {
			fmt.Fprintf(&b, "- %s\n", l)
		}
	}
	for _, l := range g {
		if wm[l] == 0 {
			fmt.Fprintf(&b, "+ %s\n", l)
		}
	}
	return b.String()
}
