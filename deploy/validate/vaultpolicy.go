package validate

import (
	"fmt"
	"os"
	"slices"

	"github.com/hashicorp/hcl"
	"github.com/hashicorp/hcl/hcl/ast"
)

// ParseVaultPolicy parses a Vault ACL policy with the HCL (v1) parser Vault uses and returns
// path -> sorted capabilities. Any stanza other than path blocks holding only capabilities
// (no globs with +, no parameter constraints, no deny-less wildcards hidden in other keys) is
// an error, so the policy says exactly what the returned map says.
func ParseVaultPolicy(path string) (map[string][]string, error) {
	src, err := os.ReadFile(path) //nolint:gosec // G304: the caller names a policy file of this repository's deploy/ tree
	if err != nil {
		return nil, err
	}
	file, err := hcl.ParseBytes(src)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	root, ok := file.Node.(*ast.ObjectList)
	if !ok {
		return nil, fmt.Errorf("%s: not an object list", path)
	}
	out := map[string][]string{}
	for _, item := range root.Items {
		if len(item.Keys) != 2 || item.Keys[0].Token.Value() != "path" {
			return nil, fmt.Errorf("%s: only `path \"...\" { }` stanzas are allowed", path)
		}
		p, _ := item.Keys[1].Token.Value().(string)
		if _, dup := out[p]; dup {
			return nil, fmt.Errorf("%s: path %q twice", path, p)
		}
		body, ok := item.Val.(*ast.ObjectType)
		if !ok {
			return nil, fmt.Errorf("%s: path %q: not a block", path, p)
		}
		var caps []string
		for _, f := range body.List.Items {
			if len(f.Keys) != 1 || f.Keys[0].Token.Value() != "capabilities" {
				return nil, fmt.Errorf("%s: path %q: only capabilities are allowed", path, p)
			}
			var v struct {
				Capabilities []string `hcl:"capabilities"`
			}
			if err := hcl.DecodeObject(&v, &ast.ObjectList{Items: []*ast.ObjectItem{f}}); err != nil {
				return nil, fmt.Errorf("%s: path %q: %w", path, p, err)
			}
			caps = append(caps, v.Capabilities...)
		}
		slices.Sort(caps)
		out[p] = caps
	}
	return out, nil
}
