package policy

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// chunkedSeeds are files the chunked reading must read as the whole-file
// reading does, or leave to it: comments, flow lists, quotes holding
// indicators, multi-line plain scalars, items at column 1, other keys
// around the list, and what splitPolicies must refuse.
var chunkedSeeds = []struct {
	desc  string
	data  string
	split bool // splitPolicies takes it
}{
	{desc: "block list", split: true, data: "policies:\n  - name: a\n    allowed_origins:\n      - https://a.example\n      - https://*.b.example\n  - name: b\n    allowed_origins: [https://b.example, \"https://*.c.example\"]\n"},
	{desc: "items at column 1, keys around", split: true, data: "default_policy: b\npolicies:\n- name: a\n  allowed_origins: [https://a.example]\n# between\n- name: b # the second\n  allowed_origins:\n  - https://b.example\n\nauthorizers: []\n"},
	{desc: "comments and quotes holding indicators", split: true, data: "# head\npolicies: # the list\n  # first\n  - name: 'a'\n    allowed_origins: [\"https://a.example\"] # '&*!|>'\n    allowed_headers: ['x-a', \"x-#b\", 'it''s']\n  - name: \"b\"\n    allowed_origins: {}\n"},
	{desc: "multi-line plain scalar", split: true, data: "policies:\n  - name: a\n    allowed_origins:\n      - https://a.example\n        https://b.example\n  - name: b\n    allowed_origins: [https://b.example]\n"},
	{desc: "errors in items", split: true, data: "policies:\n  - name: A\n    allowed_origins: [http://a.example]\n    allow_credentials: yes\n  - name: b\n    allowd_origins: [https://b.example]\n  - 3\n  -\n  - []\n"},
	{desc: "a policies key set twice", data: "policies:\n  - name: a\n    allowed_origins: [https://a.example]\npolicies:\n  - name: b\n"},
	{desc: "an anchor and an alias", data: "policies:\n  - &p\n    name: a\n    allowed_origins: [https://a.example]\n  - *p\n"},
	{desc: "a tag", data: "policies:\n  - name: !!str a\n    allowed_origins: [https://a.example]\n"},
	{desc: "a block scalar", data: "policies:\n  - name: |\n      a\n    allowed_origins: [https://a.example]\n"},
	{desc: "a flow list over two lines", data: "policies:\n  - name: a\n    allowed_origins: [https://a.example,\n      https://b.example]\n"},
	{desc: "a quoted string over two lines", data: "policies:\n  - name: \"a\n      b\"\n    allowed_origins: [https://a.example]\n"},
	{desc: "a flow list of policies", data: "policies: [{name: a, allowed_origins: [https://a.example]}]\n"},
	{desc: "a tab", data: "policies:\n  - name: a\n    allowed_origins:\t[https://a.example]\n"},
	{desc: "a document marker", data: "---\npolicies:\n  - name: a\n    allowed_origins: [https://a.example]\n"},
	{desc: "an item less indented than the first", data: "policies:\n    - name: a\n      allowed_origins: [https://a.example]\n  - name: b\n"},
	{desc: "a bad line between items", data: "policies:\n  - name: a\n    allowed_origins: [https://a.example]\n  x: 1\n  - name: b\n"},
	{desc: "an empty key", data: "policies:\n  - name: a\n    allowed_origins: [https://a.example]\n    : x\n  - name: b\n    allowed_origins: [https://b.example]\n"},
	{desc: "a mapping in a value: an item that does not parse", split: true, data: "policies:\n  - name: a\n    allowed_origins: [https://a.example]\n  - name: b: c\n    allowed_origins: [https://b.example]\n"},
	{desc: "a syntax error in the other keys", split: true, data: "default_policy: a: b\npolicies:\n  - name: a\n    allowed_origins: [https://a.example]\n"},
	{desc: "windows line ends", data: "policies:\r\n  - name: a\r\n    allowed_origins: [https://a.example]\r\n"},
}

// TestChunkedParse: reading a file one policy at a time gives what reading
// it whole gives (configuration, problems, positions), on the seeds and on
// every test file; and the files written the usual way are split.
func TestChunkedParse(t *testing.T) {
	for _, tc := range chunkedSeeds {
		t.Run(tc.desc, func(t *testing.T) {
			data := []byte(tc.data)
			if _, ok := splitPolicies(data); ok != tc.split {
				t.Errorf("splitPolicies took it: %v, want %v", ok, tc.split)
			}
			compareReadings(t, data)
		})
	}
	files, err := filepath.Glob("testdata/*.*")
	if err != nil || len(files) == 0 {
		t.Fatalf("no test files: %v", err)
	}
	files = append(files, "../deploy/corsauthz.yaml")
	split := 0
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := splitPolicies(data); ok {
			split++
		}
		t.Run(filepath.Base(name), func(t *testing.T) { compareReadings(t, data) })
	}
	if split < len(files)/2 {
		t.Errorf("only %d of %d test files are read one policy at a time", split, len(files))
	}
	// A file at the caps, as cmd/loadbench writes one.
	var b strings.Builder
	b.WriteString("policies:\n")
	for i := range MaxPolicies {
		fmt.Fprintf(&b, "  - name: p%d\n    match:\n      hosts: [svc%d.example.com, \"*.svc%d.example.com\"]\n    allowed_origins:\n", i, i, i)
		for j := range MaxOrigins / MaxPolicies {
			fmt.Fprintf(&b, "      - https://*.c%d.svc%d.example.net\n      - https://app%d.svc%d.example.com\n", j, i, j, i)
		}
	}
	if c, ok := splitPolicies([]byte(b.String())); !ok || len(c.items) != MaxPolicies {
		t.Errorf("a file at the caps is not split into its %d policies", MaxPolicies)
	}
}

// FuzzChunkedParse: on any input, reading one policy at a time (where
// splitPolicies takes the file) and reading it whole agree.
func FuzzChunkedParse(f *testing.F) {
	for _, tc := range chunkedSeeds {
		f.Add([]byte(tc.data))
	}
	files, _ := filepath.Glob("testdata/*.*")
	for _, name := range files {
		if data, err := os.ReadFile(name); err == nil {
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 1<<16 {
			return
		}
		compareReadings(t, data)
	})
}

func compareReadings(t *testing.T, data []byte) {
	t.Helper()
	chunked := parser{file: "f.yaml", pos: map[string]position{}}
	whole := parser{file: "f.yaml", pos: map[string]position{}}
	cc := chunked.parse(data)
	wc := whole.parseDocument(data, nil)
	if !reflect.DeepEqual(cc, wc) {
		t.Errorf("configuration:\n chunked %+v\n whole   %+v", cc, wc)
	}
	if got, want := fmt.Sprint(chunked.errs), fmt.Sprint(whole.errs); got != want {
		t.Errorf("problems:\n chunked %s\n whole   %s", got, want)
	}
	if !reflect.DeepEqual(chunked.pos, whole.pos) {
		t.Errorf("positions:\n chunked %v\n whole   %v", chunked.pos, whole.pos)
	}
	if !reflect.DeepEqual(chunked.lists, whole.lists) {
		t.Errorf("list positions:\n chunked %v\n whole   %v", chunked.lists, whole.lists)
	}
	if !reflect.DeepEqual(chunked.bad, whole.bad) {
		t.Errorf("bad paths:\n chunked %v\n whole   %v", chunked.bad, whole.bad)
	}
}
