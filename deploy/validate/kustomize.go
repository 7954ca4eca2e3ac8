package validate

import (
	"fmt"

	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// Rendered is one object of a kustomize build: its kind, name and YAML.
type Rendered struct {
	APIVersion string
	Kind       string
	Name       string
	Namespace  string
	YAML       []byte
}

// ID names the object in messages, e.g. "Deployment securemsg/messaging".
func (r Rendered) ID() string { return fmt.Sprintf("%s %s/%s", r.Kind, r.Namespace, r.Name) }

// Build runs kustomize (the sigs.k8s.io/kustomize/api library, the code `kubectl kustomize`
// runs) on dir and returns every object it renders, in output order. Load restrictions stay
// at kustomize's default: a kustomization may not read files outside its own tree.
func Build(dir string) ([]Rendered, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	var out []Rendered
	for _, r := range m.Resources() {
		y, err := r.AsYAML()
		if err != nil {
			return nil, fmt.Errorf("render %s: %w", r.CurId(), err)
		}
		out = append(out, Rendered{
			APIVersion: r.GetApiVersion(),
			Kind:       r.GetKind(),
			Name:       r.GetName(),
			Namespace:  r.GetNamespace(),
			YAML:       y,
		})
	}
	return out, nil
}
