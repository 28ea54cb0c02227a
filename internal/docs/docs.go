// Package docs finds the examples in README.md and docs/*.md that tests
// keep true. A fenced block is an example when the line before it (blank
// lines aside) is a marker:
//
//	<!-- example: NAME -->     a test runs it, finding it by NAME
//	<!-- not run: REASON -->   a console block no test runs, and why
//
// Tests key on these markers, never on headings, so that the text around
// an example can move between pages. Every console block (a command and
// its output) carries one of the two (see TestConsoleBlocksAreMarked).
package docs

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"
)

// Block is a fenced block of a Markdown file.
type Block struct {
	File   string // relative to the repository root
	Line   int    // of the opening fence
	Info   string // the fence's info string: sh, console, yaml, ...
	Text   string // the content, each line ending in "\n"
	Marker string // the example's name, or ""
	NotRun string // the reason of a not-run marker, or ""
}

func (b Block) String() string { return fmt.Sprintf("%s:%d", b.File, b.Line) }

var (
	exampleRE = regexp.MustCompile(`^<!-- example: ([a-z0-9-]+) -->$`)
	notRunRE  = regexp.MustCompile(`^<!-- not run: (.+) -->$`)
)

// Parse returns the fenced blocks of a Markdown file, with their markers.
func Parse(file string, data []byte) ([]Block, error) {
	var (
		blocks      []Block
		cur         *Block
		text        strings.Builder
		marker, why string
		markerLine  int
		fence       string // the opening fence's backticks, which close it
		lineNo      int
	)
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		lineNo++
		line := sc.Text()
		if cur != nil {
			if strings.TrimSpace(line) == fence {
				cur.Text = text.String()
				blocks = append(blocks, *cur)
				cur = nil
				continue
			}
			text.WriteString(line + "\n")
			continue
		}
		trimmed := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(trimmed, "```"):
			fence = trimmed[:len(trimmed)-len(strings.TrimLeft(trimmed, "`"))]
			cur = &Block{File: file, Line: lineNo, Info: strings.TrimSpace(strings.TrimLeft(trimmed, "`")), Marker: marker, NotRun: why}
			text.Reset()
			marker, why = "", ""
		case exampleRE.MatchString(trimmed):
			marker, why, markerLine = exampleRE.FindStringSubmatch(trimmed)[1], "", lineNo
		case notRunRE.MatchString(trimmed):
			marker, why, markerLine = "", notRunRE.FindStringSubmatch(trimmed)[1], lineNo
		case trimmed == "":
		default:
			if marker != "" || why != "" {
				return nil, fmt.Errorf("%s:%d: the marker is not followed by a fenced block", file, markerLine)
			}
		}
	}
	if cur != nil {
		return nil, fmt.Errorf("%s:%d: a fenced block is never closed", file, cur.Line)
	}
	if marker != "" || why != "" {
		return nil, fmt.Errorf("%s:%d: the marker is not followed by a fenced block", file, markerLine)
	}
	return blocks, sc.Err()
}

// Root returns the repository root: the directory above dir (or dir)
// holding the corsauthz module's go.mod.
func Root(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(data, []byte("module github.com/corsauthz/corsauthz\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no corsauthz go.mod above the working directory")
		}
		dir = parent
	}
}

// Files returns README.md and docs/*.md, relative to root.
func Files(root string) ([]string, error) {
	pages, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		return nil, err
	}
	files := []string{"README.md"}
	for _, p := range pages {
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return nil, err
		}
		files = append(files, rel)
	}
	slices.Sort(files[1:])
	return files, nil
}

// All returns every fenced block of README.md and docs/*.md.
func All(tb testing.TB) []Block {
	tb.Helper()
	root, err := Root(".")
	if err != nil {
		tb.Fatal(err)
	}
	files, err := Files(root)
	if err != nil {
		tb.Fatal(err)
	}
	var all []Block
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			tb.Fatal(err)
		}
		blocks, err := Parse(f, data)
		if err != nil {
			tb.Fatal(err)
		}
		all = append(all, blocks...)
	}
	return all
}

// Example returns the one block marked <!-- example: name -->, failing tb
// when there is none or more than one.
func Example(tb testing.TB, name string) Block {
	tb.Helper()
	var found []Block
	for _, b := range All(tb) {
		if b.Marker == name {
			found = append(found, b)
		}
	}
	switch len(found) {
	case 0:
		tb.Fatalf("no block marked <!-- example: %s --> in README.md or docs/", name)
	case 1:
		return found[0]
	}
	tb.Fatalf("%d blocks marked <!-- example: %s -->: %v", len(found), name, found)
	return Block{}
}

// Command splits a console block into its command (after "$ ", going on
// over lines ending in a backslash and over newlines inside quotes, as a
// shell reads it) and the output after it.
func (b Block) Command() (cmd, output string, err error) {
	rest, ok := strings.CutPrefix(b.Text, "$ ")
	if !ok {
		return "", "", fmt.Errorf("%s: a console block starts with \"$ \"", b)
	}
	var c strings.Builder
	var quote byte // the open quote, or 0
	for i := 0; i < len(rest); i++ {
		ch := rest[i]
		switch {
		case quote == 0 && ch == '\\' && i+1 < len(rest) && rest[i+1] == '\n':
			c.WriteByte(' ')
			i++
		case quote == 0 && ch == '\n':
			return c.String(), rest[i+1:], nil
		case quote == 0 && (ch == '\'' || ch == '"'):
			quote = ch
			c.WriteByte(ch)
		case ch == quote:
			quote = 0
			c.WriteByte(ch)
		default:
			c.WriteByte(ch)
		}
	}
	if quote != 0 {
		return "", "", fmt.Errorf("%s: unclosed %c in the command", b, quote)
	}
	return c.String(), "", nil
}

// Fields splits a command line as a POSIX shell would split simple words:
// single quotes keep everything, double quotes everything but \" and \\.
func Fields(cmd string) ([]string, error) {
	var (
		words []string
		cur   strings.Builder
		in    bool // inside a word
	)
	for i := 0; i < len(cmd); i++ {
		c := cmd[i]
		switch {
		case c == ' ' || c == '\t':
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		case c == '\'':
			j := strings.IndexByte(cmd[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("unclosed ' in %q", cmd)
			}
			cur.WriteString(cmd[i+1 : i+1+j])
			i += j + 1
			in = true
		case c == '"':
			i++
			for ; i < len(cmd) && cmd[i] != '"'; i++ {
				if cmd[i] == '\\' && i+1 < len(cmd) && (cmd[i+1] == '"' || cmd[i+1] == '\\') {
					i++
				}
				cur.WriteByte(cmd[i])
			}
			if i >= len(cmd) {
				return nil, fmt.Errorf("unclosed \" in %q", cmd)
			}
			in = true
		default:
			cur.WriteByte(c)
			in = true
		}
	}
	if in {
		words = append(words, cur.String())
	}
	return words, nil
}

// Anchor is the anchor GitHub gives a heading: lower case, spaces to
// hyphens, punctuation other than hyphens and underscores removed.
func Anchor(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}
