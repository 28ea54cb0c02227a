package policy

import (
	"bytes"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// Reading a configuration one policy at a time.
//
// The YAML library builds the node tree of a whole document before anything
// reads it: about 300 bytes per origin, 16 MiB for a file at the caps
// (1,000 policies, 50,000 origins, 2.4 MiB of YAML), the largest part of
// the memory corsauthz ever uses (docs/performance.md, "Memory at the
// caps"). A configuration as people write it, a top-level "policies:" key
// with a block list of policies, can instead be read item by item: each
// item's lines are a YAML document of their own (a list of one item at the
// same indentation), and the rest of the file, with the items' lines
// emptied, is the document of the other keys. Lines keep their numbers
// (an item's nodes are moved down by the lines before it; columns do not
// change), so every position is the one reading the whole file gives.
//
// That holds only where no construct spans the items' boundaries or depends
// on another part of the file, so splitPolicies accepts a file only when
// each line is plain: indentation of spaces, sequence entries, keys and
// values that are plain or quoted scalars closed on the line, flow lists
// and mappings closed on the line, comments; and no tab, carriage return,
// byte order mark, directive, document marker, anchor, alias, tag, block
// scalar or explicit key anywhere, and only characters YAML accepts. Anything else, and any item whose lines
// do not parse as one list item, is read whole (parse), which reports the
// problems as before. FuzzChunkedParse checks that both readings agree.

// policyChunks is a file split by splitPolicies.
type policyChunks struct {
	// skeleton is the file with the lines of the policies list emptied
	// (their line breaks kept).
	skeleton []byte
	// items are the lines of each policy: data[items[i][0]:items[i][1]].
	items [][2]int
	data  []byte
	// lines are the 1-based line numbers of each item's first line.
	lines []int
	// indent is the column of the items' "-", less one.
	indent int
	// failed is set when an item is not one list item.
	failed bool
}

// splitPolicies splits data when every line is plain (see above) and the
// policies are a block list under a top-level "policies:" key.
func splitPolicies(data []byte) (*policyChunks, bool) {
	if !onlyPrintable(data) {
		return nil, false
	}
	c := &policyChunks{data: data, indent: -1}
	keyLine := -1    // the line of "policies:", 0-based
	blockStart := -1 // the offset of the line after it
	blockEnd := -1   // the offset of the first line after the list
	inBlock := false
	seenTop := false // a line of content was read
	line := 0
	for off := 0; off < len(data); line++ {
		end := bytes.IndexByte(data[off:], '\n')
		next := len(data)
		if end < 0 {
			end = len(data)
		} else {
			end += off
			next = end + 1
		}
		l := data[off:end]
		if !plainLine(l) {
			return nil, false
		}
		indent := len(l) - len(bytes.TrimLeft(l, " "))
		content := l[indent:]
		blank := len(content) == 0 || content[0] == '#'
		entry := len(content) > 0 && content[0] == '-' && (len(content) == 1 || content[1] == ' ')
		if !blank && !seenTop {
			// The document's top-level mapping must start at column 1:
			// an indented first line sets another indentation, and a
			// "policies:" at column 1 after it is not a top-level key.
			if indent != 0 {
				return nil, false
			}
			seenTop = true
		}
		switch {
		case blank:
		case inBlock && indent == 0 && !(c.indent <= 0 && entry):
			if entry {
				return nil, false // a list at column 1 after one indented
			}
			inBlock, blockEnd = false, off // the next top-level key
		case inBlock:
			if c.indent < 0 {
				if !entry {
					return nil, false // not a block list
				}
				c.indent = indent
			}
			switch {
			case indent < c.indent:
				return nil, false
			case indent == c.indent:
				if !entry {
					return nil, false
				}
				if n := len(c.items); n > 0 {
					c.items[n-1][1] = off
				}
				c.items = append(c.items, [2]int{off, 0})
				c.lines = append(c.lines, line+1)
			}
		}
		if !inBlock && indent == 0 && !blank && isPoliciesKey(content) {
			if keyLine >= 0 {
				return nil, false // set twice: reading it whole says so
			}
			keyLine, inBlock, blockStart = line, true, next
		}
		off = next
	}
	if inBlock {
		blockEnd = len(data)
	}
	if len(c.items) == 0 {
		return nil, false
	}
	c.items[len(c.items)-1][1] = blockEnd
	// The skeleton: the file less the list's lines, which become empty.
	c.skeleton = make([]byte, 0, len(data)-(blockEnd-blockStart)+bytes.Count(data[blockStart:blockEnd], []byte("\n")))
	c.skeleton = append(c.skeleton, data[:blockStart]...)
	c.skeleton = append(c.skeleton, bytes.Repeat([]byte("\n"), bytes.Count(data[blockStart:blockEnd], []byte("\n")))...)
	c.skeleton = append(c.skeleton, data[blockEnd:]...)
	return c, true
}

// onlyPrintable reports whether data is valid UTF-8 holding only line
// feeds and the characters YAML prints as themselves (no tab, carriage
// return, other line break, byte order mark or control character), so that
// no line emptied or left out of an item (a comment) can hold a problem.
func onlyPrintable(data []byte) bool {
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && size == 1 || r != '\n' && !yamlPrintable(r) {
			return false
		}
		i += size
	}
	return true
}

// isPoliciesKey reports whether a top-level line is "policies:" with no
// value on the line (a comment may follow).
func isPoliciesKey(content []byte) bool {
	rest, ok := bytes.CutPrefix(content, []byte("policies:"))
	if !ok {
		return false
	}
	rest = bytes.TrimLeft(rest, " ")
	return len(rest) == 0 || rest[0] == '#' && len(rest) < len(content)-len("policies:")
}

// plainLine reports whether a line holds only what splitPolicies accepts:
// at the start of each node (the line's start, after "- ", ": ", "[", "{"
// or ","), no anchor, alias, tag, block scalar, directive, reserved
// character or explicit key; quoted scalars and flow collections closed on
// the line; nothing after a node but a key's ":", a flow collection's ","
// or closing bracket, or a comment. Document markers ("---", "...") are
// refused too.
func plainLine(l []byte) bool {
	if bytes.HasPrefix(l, []byte("---")) || bytes.HasPrefix(l, []byte("...")) {
		return false
	}
	depth := 0
	start := true // at the start of a node
	for i := 0; i < len(l); {
		c := l[i]
		switch {
		case c == ' ':
			i++
			continue
		case c == '#' && (i == 0 || l[i-1] == ' '):
			return depth == 0 // a comment runs to the end of the line
		}
		if !start {
			switch {
			case c == ':' && (i+1 == len(l) || l[i+1] == ' ' || depth > 0 && bytes.IndexByte([]byte(",]}"), l[i+1]) >= 0):
				start = true
			case depth > 0 && c == ',':
				start = true
			case depth > 0 && (c == ']' || c == '}'):
				depth--
			default:
				return false
			}
			i++
			continue
		}
		switch c {
		case '&', '*', '!', '|', '>', '%', '@', '`', '?', ':', '#':
			return false
		case '-':
			if i+1 == len(l) || l[i+1] == ' ' {
				if depth > 0 {
					return false
				}
				i++ // a sequence entry: a node starts after it
				continue
			}
		case '[', '{':
			depth++
			i++
			continue
		case ']', '}':
			if depth == 0 {
				return false
			}
			depth--
			i++
			start = false
			continue
		case ',':
			if depth > 0 {
				return false // an empty entry
			}
		case '"':
			j := i + 1
			for j < len(l) && l[j] != '"' {
				if l[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(l) {
				return false // not closed on the line
			}
			i, start = j+1, false
			continue
		case '\'':
			j := i + 1
			for {
				k := bytes.IndexByte(l[j:], '\'')
				if k < 0 {
					return false
				}
				j += k + 1
				if j < len(l) && l[j] == '\'' {
					j++ // '' is a quote inside
					continue
				}
				break
			}
			i, start = j, false
			continue
		}
		// A plain scalar: to ": ", " #", the end of the line, or in a flow
		// collection its next indicator.
		j := i
		for ; j < len(l); j++ {
			d := l[j]
			if d == ':' && (j+1 == len(l) || l[j+1] == ' ' || depth > 0 && bytes.IndexByte([]byte(",[]{}"), l[j+1]) >= 0) {
				break
			}
			if d == '#' && l[j-1] == ' ' {
				break
			}
			if depth > 0 && bytes.IndexByte([]byte(",[]{}"), d) >= 0 {
				break
			}
		}
		i, start = j, false
	}
	return depth == 0
}

// parseChunked reads the skeleton, and each policy from its own lines; ok
// is false when an item does not parse as one list item at the list's
// indentation (the file is then read whole).
func (p *parser) parseChunked(c *policyChunks) (cfg *Config, ok bool) {
	cfg = p.parseDocument(c.skeleton, c)
	c.skeleton = nil
	if c.items != nil { // the policies key was not reached (a problem earlier)
		return nil, false
	}
	return cfg, !c.failed
}

// chunkedPolicies reads the policies of c, for the key at path.
func (p *parser) chunkedPolicies(c *policyChunks, path string, cfg *Config) {
	items := c.items
	c.items = nil
	p.pos[path] = position{c.lines[0], c.indent + 1}
	for i, span := range items {
		var doc yaml.Node
		if err := yaml.Unmarshal(c.data[span[0]:span[1]], &doc); err != nil || len(doc.Content) != 1 {
			c.failed = true
			return
		}
		seq := doc.Content[0]
		if seq.Kind != yaml.SequenceNode || len(seq.Content) != 1 || seq.Line != 1 || seq.Column != c.indent+1 {
			c.failed = true
			return
		}
		moveLines(seq.Content[0], c.lines[i]-1)
		p.policy(seq.Content[0], i, path, cfg)
	}
}

// moveLines adds by to the line of n and of every node under it.
func moveLines(n *yaml.Node, by int) {
	n.Line += by
	for _, c := range n.Content {
		moveLines(c, by)
	}
}
