// Package templates ships the default alert templates as files, one per kind, channel, locale
// and part: <kind>.<channel>.<locale>.<subject|body>.tmpl. Administrators override them through
// UpdateTemplate; a shipped file that fails the lint stops the service at start and fails CI
// (TestShippedTemplatesPassLint).
package templates

import (
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strings"

	"github.com/securemsg/securemsg/services/notification/internal/domain"
)

//go:embed *.tmpl
var files embed.FS

// Defaults parses the shipped templates. It fails on a malformed file name or a template that
// does not pass domain.LintTemplate.
func Defaults() ([]domain.Template, error) {
	return Load(files)
}

// Load parses the templates in fsys (the shipped set, or a folder in tests).
func Load(fsys fs.FS) ([]domain.Template, error) {
	names, err := fs.Glob(fsys, "*.tmpl")
	if err != nil {
		return nil, err
	}
	byKey := map[string]*domain.Template{}
	for _, name := range names {
		parts := strings.Split(strings.TrimSuffix(name, ".tmpl"), ".")
		if len(parts) != 4 {
			return nil, fmt.Errorf("template file %s: want <kind>.<channel>.<locale>.<subject|body>.tmpl", name)
		}
		kind, ok1 := domain.ParseKind(parts[0])
		ch, ok2 := domain.ParseChannel(parts[1])
		if !ok1 || !ok2 || (parts[3] != "subject" && parts[3] != "body") {
			return nil, fmt.Errorf("template file %s: unknown kind, channel or part", name)
		}
		text, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, err
		}
		key := parts[0] + "." + parts[1] + "." + parts[2]
		t := byKey[key]
		if t == nil {
			t = &domain.Template{Kind: kind, Channel: ch, Locale: parts[2], Default: true}
			byKey[key] = t
		}
		if parts[3] == "subject" {
			t.Subject = strings.TrimRight(string(text), "\n")
		} else {
			t.Body = string(text)
		}
	}
	out := make([]domain.Template, 0, len(byKey))
	var errs []string
	for _, t := range byKey {
		if err := domain.LintTemplate(*t); err != nil {
			errs = append(errs, t.Key()+": "+err.Error())
		}
		out = append(out, *t)
	}
	if len(errs) > 0 {
		sort.Strings(errs)
		return nil, fmt.Errorf("shipped templates: %s", strings.Join(errs, "; "))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key() < out[j].Key() })
	return out, nil
}
