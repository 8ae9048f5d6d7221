package api

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

func readDoc(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("../../docs/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// typeConstants returns the Type… string constants of this package's source,
// whoever added them.
func typeConstants(t *testing.T) map[string]string {
	t.Helper()
	fset := token.NewFileSet()
	names, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, name := range names {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, n := range vs.Names {
					if !strings.HasPrefix(n.Name, "Type") || i >= len(vs.Values) {
						continue
					}
					lit, ok := vs.Values[i].(*ast.BasicLit)
					if !ok || lit.Kind != token.STRING {
						continue
					}
					v, _ := strconv.Unquote(lit.Value)
					out[n.Name] = v
				}
			}
		}
	}
	if len(out) < 10 {
		t.Fatalf("found only %d Type constants", len(out))
	}
	return out
}

func TestEventsDocListsEveryType(t *testing.T) {
	doc := readDoc(t, "events.md")
	for name, typ := range typeConstants(t) {
		want := "`" + typ + "`"
		if strings.HasSuffix(typ, ".") {
			want = "`" + typ // a prefix: worker.NAME
		}
		if !strings.Contains(doc, want) {
			t.Errorf("docs/events.md does not list %s (%s)", typ, name)
		}
	}
}

// docRow returns the table row of docs/events.md for event type typ.
func docRow(doc, typ string) string {
	if strings.HasPrefix(typ, TypeWorkerPrefix) && typ != TypeWorkerEvent {
		typ = TypeWorkerPrefix + "NAME"
	}
	for _, l := range strings.Split(doc, "\n") {
		if strings.HasPrefix(l, "| `"+typ+"` |") {
			return l
		}
	}
	return ""
}

// jsonFields returns the JSON names of t's fields, those of embedded
// structs included.
func jsonFields(t reflect.Type) []string {
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Anonymous && f.Type.Kind() == reflect.Struct {
			out = append(out, jsonFields(f.Type)...)
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name != "-" && name != "" {
			out = append(out, name)
		}
	}
	return out
}

func TestEventsDocListsEveryField(t *testing.T) {
	doc := readDoc(t, "events.md")
	for _, d := range everyData() {
		row := docRow(doc, d.EventType())
		if row == "" {
			t.Errorf("docs/events.md has no row for %s", d.EventType())
			continue
		}
		goType := reflect.TypeOf(d).Name()
		if !strings.Contains(row, "`"+goType+"`") {
			t.Errorf("docs/events.md: the row of %s does not name its Go type %s", d.EventType(), goType)
		}
		for _, f := range jsonFields(reflect.TypeOf(d)) {
			if !strings.Contains(row, "`"+f+"`") {
				t.Errorf("docs/events.md: the row of %s does not list data field %s", d.EventType(), f)
			}
		}
	}
}

func TestAPIDocListsEveryRoute(t *testing.T) {
	doc := readDoc(t, "api.md")
	for _, r := range Routes() {
		if !strings.Contains(doc, "| `"+r.Method+" "+r.Path+"` |") {
			t.Errorf("docs/api.md has no row for %s %s", r.Method, r.Path)
		}
		if r.Request != "" && !strings.Contains(doc, r.Request) {
			t.Errorf("docs/api.md does not name %s, the body of %s %s", r.Request, r.Method, r.Path)
		}
	}
	for _, f := range jsonFields(reflect.TypeOf(UnitStatus{})) {
		if !strings.Contains(doc, "| `"+f+"` |") {
			t.Errorf("docs/api.md: UnitStatus field %s is not listed", f)
		}
	}
	for _, f := range jsonFields(reflect.TypeOf(Error{})) {
		if !strings.Contains(doc, `"`+f+`"`) && !strings.Contains(doc, "`"+f+"`") {
			t.Errorf("docs/api.md: error field %s is not shown", f)
		}
	}
}
