package omaha

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"strings"
)

// node is one element of a parsed document: the minimum FUE's XPath
// lookups need (local name, attributes in order, element children).
type node struct {
	name     xml.Name
	attrs    []xml.Attr
	children []*node
}

// maxDepth bounds nesting so hostile input cannot build deep trees.
const maxDepth = 64

// parseTree parses a whole document like libxml2's xmlParseMemory: one
// root element, only whitespace, comments and processing instructions
// around it, no duplicate attributes. Errors wrap ErrXMLParse and say
// where the input broke.
func parseTree(body []byte) (*node, error) {
	d := xml.NewDecoder(bytes.NewReader(body))
	d.Strict = true
	d.CharsetReader = func(charset string, r io.Reader) (io.Reader, error) {
		switch strings.ToLower(charset) {
		case "utf-8", "utf8", "us-ascii", "ascii":
			return r, nil
		}
		return nil, fmt.Errorf("unsupported charset %q", charset)
	}
	var root *node
	var stack []*node
	for {
		off := d.InputOffset()
		tok, err := d.RawToken()
		if err == io.EOF {
			if root == nil || len(stack) > 0 {
				return nil, fmt.Errorf("%w: unexpected end at byte %d", ErrXMLParse, off)
			}
			return root, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrXMLParse, err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if len(stack) == 0 && root != nil {
				return nil, fmt.Errorf("%w: extra content at byte %d", ErrXMLParse, off)
			}
			if len(stack) >= maxDepth {
				return nil, fmt.Errorf("%w: nesting deeper than %d at byte %d", ErrXMLParse, maxDepth, off)
			}
			seen := make(map[xml.Name]bool, len(t.Attr))
			for _, a := range t.Attr {
				if seen[a.Name] {
					return nil, fmt.Errorf("%w: duplicate attribute %q at byte %d", ErrXMLParse, a.Name.Local, off)
				}
				seen[a.Name] = true
			}
			n := &node{name: t.Name, attrs: t.Copy().Attr}
			if len(stack) == 0 {
				root = n
			} else {
				p := stack[len(stack)-1]
				p.children = append(p.children, n)
			}
			stack = append(stack, n)
		case xml.EndElement:
			// RawToken does not match end tags; do it here.
			if len(stack) == 0 {
				return nil, fmt.Errorf("%w: unexpected end tag at byte %d", ErrXMLParse, off)
			}
			top := stack[len(stack)-1]
			if top.name != t.Name {
				return nil, fmt.Errorf("%w: end tag </%s> does not match <%s> at byte %d", ErrXMLParse, t.Name.Local, top.name.Local, off)
			}
			stack = stack[:len(stack)-1]
		case xml.CharData:
			if len(stack) == 0 && len(bytes.TrimSpace(t)) > 0 {
				return nil, fmt.Errorf("%w: text outside the root element at byte %d", ErrXMLParse, off)
			}
		case xml.Directive:
			if root != nil {
				return nil, fmt.Errorf("%w: directive after the root element at byte %d", ErrXMLParse, off)
			}
		}
	}
}

// attr returns the attribute's value and whether it is present
// (FUE's xmlHasProp / XmlGetProperty; names are case-sensitive).
func (n *node) attr(name string) (string, bool) {
	for _, a := range n.attrs {
		if a.Name.Local == name && a.Name.Space == "" {
			return a.Value, true
		}
	}
	return "", false
}

// get returns the attribute's value or "".
func (n *node) get(name string) string {
	v, _ := n.attr(name)
	return v
}

// xpath returns, in document order, every element reached from the root by
// the absolute path /p0/p1/…, like libxml2 XPath for a path without
// predicates (un-namespaced names only).
func (n *node) xpath(path ...string) []*node {
	if n == nil || len(path) == 0 || n.name.Local != path[0] || n.name.Space != "" {
		return nil
	}
	cur := []*node{n}
	for _, p := range path[1:] {
		var next []*node
		for _, c := range cur {
			for _, k := range c.children {
				if k.name.Local == p && k.name.Space == "" {
					next = append(next, k)
				}
			}
		}
		cur = next
	}
	return cur
}
